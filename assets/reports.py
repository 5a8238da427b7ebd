"""Operator reports: the daily reconciliation report per program and the statement-completeness check."""

import dagster as dg

from assets.metadata import table
from bridge_pipelines.reporting.daily import daily_report, missing_statements
from resources import BridgeDatabase, BridgeSettings

REPORT_COLUMNS = ["program", "shipped", "shipped_amount", "reconciled", "reversed", "reversed_by_reason",
                  "unreconciled", "older_than_1_day", "older_than_3_days", "older_than_7_days", "unmatched_lines"]


@dg.asset(group_name="reconciliation", kinds={"postgres"}, owners=["team:bridge-operations"],
          description="Daily reconciliation report per program: shipped, reconciled, reversed by reason, unmatched "
                      "statement lines, and the ageing of shipped-but-unreconciled payments (> 1, 3, 7 days).")
def daily_reconciliation_report(context: dg.AssetExecutionContext, database: BridgeDatabase,
                                bridge_settings: BridgeSettings) -> dg.MaterializeResult:
    day = bridge_settings.current_business_date()
    with database.connect() as conn:
        rows = daily_report(conn, day)
    return dg.MaterializeResult(metadata={
        "business_date": day.isoformat(),
        "programs": len(rows),
        "shipped": sum(r["shipped"] for r in rows),
        "reconciled": sum(r["reconciled"] for r in rows),
        "reversed": sum(r["reversed"] for r in rows),
        "unreconciled": sum(r["unreconciled"] for r in rows),
        "unreconciled_older_than_3_days": sum(r["older_than_3_days"] for r in rows),
        "unmatched_lines": sum(r["unmatched_lines"] for r in rows),
        "report": table(rows, REPORT_COLUMNS),
    })


@dg.asset_check(asset=daily_reconciliation_report,
                description="Every program account with shipped payments has a statement for the previous business "
                            "day; a missing or late one is flagged.")
def statements_complete(context: dg.AssetCheckExecutionContext, database: BridgeDatabase,
                        bridge_settings: BridgeSettings) -> dg.AssetCheckResult:
    with database.connect() as conn:
        missing = missing_statements(conn, bridge_settings.current_business_date())
    return dg.AssetCheckResult(passed=not missing, severity=dg.AssetCheckSeverity.WARN, metadata={
        "accounts_missing_a_statement": len(missing),
        "missing": table(missing, ["account_number", "programs", "last_shipment", "last_statement_date"]),
    })


reports_job = dg.define_asset_job("reports_job", selection=dg.AssetSelection.assets(daily_reconciliation_report),
                                  description="Daily reconciliation report and statement completeness.")
daily_report_schedule = dg.ScheduleDefinition(job=reports_job, cron_schedule="0 6 * * *",
                                              default_status=dg.DefaultScheduleStatus.RUNNING,
                                              description="Every day at 06:00 UTC.")
