"""The one Definitions object of the bridge's code location."""

from __future__ import annotations

import dagster as dg

from assets.disbursement import (account_resolution, envelope_funds, envelope_payments, received_equals_declared,
                                 shipment_adds_up)
from assets.intake import pbms_intake
from assets.reports import daily_reconciliation_report, daily_report_schedule, reports_job, statements_complete
from assets.statements import reconciliation_adds_up, statement_balances_close, statement_lines, statement_reconciliation
from bridge_pipelines.jobs import disbursement_job, intake_job, statement_job
from resources import BridgeDatabase, BridgeSettings, IdMapper, SponsorBank, StatementInbox
from sensors.envelope_ready import envelope_ready_sensor
from sensors.intake import intake_sensor
from sensors.run_failure import run_failure_sensor
from sensors.statement_file import statement_sensor

defs = dg.Definitions(
    assets=[pbms_intake, account_resolution, envelope_funds, envelope_payments, statement_lines,
            statement_reconciliation, daily_reconciliation_report],
    asset_checks=[received_equals_declared, shipment_adds_up, statement_balances_close, reconciliation_adds_up,
                  statements_complete],
    jobs=[intake_job, disbursement_job, statement_job, reports_job],
    schedules=[daily_report_schedule],
    sensors=[intake_sensor, envelope_ready_sensor, statement_sensor, run_failure_sensor],
    resources={
        "database": BridgeDatabase(),
        "bridge_settings": BridgeSettings(),
        "sponsor_bank": SponsorBank(),
        "id_mapper": IdMapper(),
        "inbox": StatementInbox(),
    },
)
