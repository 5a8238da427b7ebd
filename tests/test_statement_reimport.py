"""A statement quarantined for a cause the operator can fix (an account not yet configured) is imported when the same
file is dropped again after the fix; an identical file that was imported fine stays a duplicate."""

from __future__ import annotations

import dagster as dg
import psycopg

from bridge_pipelines.intake.service import run_intake
from bridge_pipelines.statements.inbox import copy_into_inbox
from tests.intake_helpers import BUSINESS_DATE, program
from tests.pipeline_helpers import run_process
from tests.statement_builders import credit, fee, mt940


def test_quarantined_statement_is_reimported_after_the_fix(bridge_env, db: psycopg.Connection) -> None:
    inbox = bridge_env / "inbox"
    data = mt940("ACC-LATE", [credit("500.00"), fee("1.00")])
    with dg.DagsterInstance.ephemeral() as instance:
        copy_into_inbox(inbox, "late.sta", data)
        assert run_process(instance).success
        status, code = db.execute("SELECT statement_process_status, statement_process_error_code "
                                  "FROM bridge.account_statement").fetchone()
        assert (status, code) == ("ERROR", "INVALID_ACCOUNT_NUMBER")
        assert (inbox / "quarantine" / "late.sta").exists()

        program(db, mnemonic="LATE")  # the operator configures the program whose account this is
        run_intake(db, BUSINESS_DATE)
        copy_into_inbox(inbox, "late-again.sta", data)
        report = run_process(instance)
        assert report.success and [r.job_name for r in report.runs] == ["statement_job"]
        rows = db.execute("SELECT statement_process_status, number_of_lines_unrelated FROM bridge.account_statement"
                          ).fetchall()
        assert rows == [("RECONCILED", 2)]
        assert (inbox / "late-again.sta").exists(), "an imported file stays in the inbox"

        copy_into_inbox(inbox, "late-third.sta", data)
        report = run_process(instance)
        assert report.runs == []
        detail = db.execute("SELECT inbox_status, detail FROM bridge.inbox_file WHERE file_name = 'late-third.sta'"
                            ).fetchone()
        assert detail[0] == "DUPLICATE" and "already imported" in detail[1]
