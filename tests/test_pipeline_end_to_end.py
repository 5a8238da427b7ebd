"""The whole cycle against real parts: staged rows -> intake -> resolution -> funds -> payments at the example bank ->
end-of-day MT940 in the inbox -> import -> reconciliation. Every disbursement ends exactly once in the bank's ledger
and in exactly one visible state."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import psycopg
import pytest

from tests.bank_fixtures import *  # noqa: F403
from tests.pipeline_helpers import assert_each_debited_once, envelope_row, fund, ledger_debits, run_process, stage, states

TODAY = date(2026, 12, 1)
DUE = TODAY + timedelta(days=1)


@pytest.fixture
def business_day(monkeypatch: pytest.MonkeyPatch):
    def set_day(day: date) -> None:
        monkeypatch.setenv("BRIDGE_BUSINESS_DATE", day.isoformat())
    set_day(TODAY)
    return set_day


def test_full_cycle_without_mapper(bridge_env, db: psycopg.Connection, make_example_bank, business_day) -> None:
    bank = make_example_bank(bank_failure_rate=0.1, bank_statement_page_size=40)
    staged = stage(db.info.dsn, 120, DUE)
    fund(bank, staged["sponsor_account"], "1000000.00")
    with dg.DagsterInstance.ephemeral() as instance:
        report = run_process(instance)
        assert report.success, report.runs
        assert [r.job_name for r in report.runs] == ["intake_job"]  # accepted, not yet due
        assert envelope_row(db, staged["envelope"])["number_of_disbursements_received"] == 120

        business_day(DUE)
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]
        assert [r.job_name for r in report.runs] == ["disbursement_job"]
        row = envelope_row(db, staged["envelope"])
        assert row["funds_available_with_bank"] == "FUNDS_AVAILABLE"
        assert row["funds_blocked_with_bank"] == "FUNDS_BLOCK_SUCCESS"
        assert row["shipment_status"] == "COMPLETED"
        assert row["number_of_disbursements_shipped"] == 120
        assert states(db, staged["envelope"]) == {"SHIPPED": 120}
        assert_each_debited_once(db, 120)

        with bank.client() as client:
            client.close_day(DUE)
        assert list(bank.inbox.glob("*")), "the bank wrote a statement into the inbox"
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]
        assert {r.job_name for r in report.runs} == {"statement_job"}
        final = states(db, staged["envelope"])
        assert final.get("RECONCILED", 0) + final.get("REVERSED", 0) == 120
        assert final.get("REVERSED", 0) > 0, "the bank fails ~10% of accounts; they come back as reversals"
        row = envelope_row(db, staged["envelope"])
        assert row["number_of_disbursements_reconciled"] == final.get("RECONCILED", 0)
        assert row["number_of_disbursements_reversed"] == final.get("REVERSED", 0)
        assert row["number_of_disbursements_unreconciled"] == 0
        reasons = {r for (r,) in db.execute("SELECT DISTINCT reversal_reason FROM bridge.disbursement_recon "
                                            "WHERE reversal_found")}
        assert reasons and all(reason for reason in reasons)
        assert db.execute("SELECT count(*) FROM bridge.disbursement_error_recon").fetchone()[0] == 0
        unrelated = db.execute("SELECT count(*) FROM bridge.statement_unrelated_line").fetchone()[0]
        assert unrelated >= 1  # the account top-up and the bank fee are not ours
        # a second pass finds nothing to do
        assert run_process(instance).runs == []

        from bridge_pipelines.definitions import defs
        report = defs.resolve_job_def("reports_job").execute_in_process(instance=instance)
        assert report.success
        metadata = instance.get_latest_materialization_event(
            dg.AssetKey("daily_reconciliation_report")).asset_materialization.metadata
        assert metadata["shipped"].value == 120
        assert metadata["reversed"].value == final.get("REVERSED", 0)
        assert metadata["unreconciled"].value == 0
        stored = db.execute("SELECT report FROM bridge.reconciliation_report WHERE benefit_program_mnemonic = %s",
                            (staged["program"],)).fetchone()[0]
        assert stored["reconciled"] == final.get("RECONCILED", 0)


def test_mapper_resolution_and_cancelled_disbursements_never_reach_the_bank(
        bridge_env, db: psycopg.Connection, make_example_bank, make_example_mapper, business_day) -> None:
    bank = make_example_bank(bank_failure_rate=0.0)
    make_example_mapper(mapper_failure_rate=0.0)
    staged = stage(db.info.dsn, 30, DUE, mapper=True, program="MAPPED")
    fund(bank, staged["sponsor_account"], "1000000.00")
    # an unresolvable beneficiary and a cancelled disbursement
    db.execute("UPDATE staging.disbursement SET beneficiary_id = 'UNRESOLVABLE-1' WHERE disbursement_id = %s",
               (f"{staged['envelope']}-00000000",))
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_process(instance).success
        cancelled_id = f"{staged['envelope']}-00000001"
        db.execute("INSERT INTO staging.disbursement_cancellation (disbursement_id) VALUES (%s)", (cancelled_id,))
        assert run_process(instance).success
        row = envelope_row(db, staged["envelope"])
        assert row["number_of_disbursements_received"] == 29  # the cancellation gave its count back
        # PBMS sends a replacement so the envelope is complete again
        db.execute("""INSERT INTO staging.disbursement (disbursement_id, disbursement_envelope_id, mis_reference_number,
                      beneficiary_id, beneficiary_name, disbursement_amount, narrative)
                      SELECT disbursement_id || '-R', disbursement_envelope_id, mis_reference_number, 'BEN-REPLACEMENT',
                             beneficiary_name, disbursement_amount, narrative
                      FROM staging.disbursement WHERE disbursement_id = %s""", (cancelled_id,))
        business_day(DUE)
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]
    final = states(db, staged["envelope"])
    assert final == {"SHIPPED": 29, "RESOLUTION_FAILED": 1, "CANCELLED": 1}  # 30 - 1 cancelled + 1 replacement
    failed = db.execute("SELECT status_reason_code FROM bridge.disbursement WHERE disbursement_status = "
                        "'RESOLUTION_FAILED'").fetchone()[0]
    assert failed
    references = {r for (r,) in db.execute(
        "SELECT payment_reference FROM example_bank.payment_request")}
    cancelled_ref = db.execute("SELECT bank_reference FROM bridge.disbursement WHERE disbursement_id = %s",
                               (cancelled_id,)).fetchone()[0]
    assert cancelled_ref not in references
    assert len(ledger_debits(db)) == 29


def test_insufficient_funds_then_topped_up(bridge_env, db: psycopg.Connection, make_example_bank, business_day,
                                           monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_FUNDS_RETRY_SECONDS", "0")
    bank = make_example_bank(bank_failure_rate=0.0)
    business_day(TODAY)
    staged = stage(db.info.dsn, 10, DUE)
    fund(bank, staged["sponsor_account"], "5.00")
    with dg.DagsterInstance.ephemeral() as instance:
        run_process(instance)
        business_day(DUE)
        report = run_process(instance)
        assert not report.success
        assert "Top up the account" in (report.runs[0].error or "")
        row = envelope_row(db, staged["envelope"])
        assert row["funds_available_with_bank"] == "FUNDS_NOT_AVAILABLE"
        assert db.execute("SELECT count(*) FROM example_bank.payment_request").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM bridge.run_failure").fetchone()[0] >= 1
        fund(bank, staged["sponsor_account"], "100000.00")
        report = run_process(instance)
        assert report.runs and report.runs[-1].success, [r.error for r in report.runs]
    assert states(db, staged["envelope"]) == {"SHIPPED": 10}


def test_full_cycle_with_camt053_statements(bridge_env, db: psycopg.Connection, make_example_bank,
                                            business_day) -> None:
    bank = make_example_bank(bank_failure_rate=0.1, bank_statement_format="CAMT053")
    staged = stage(db.info.dsn, 60, DUE)
    fund(bank, staged["sponsor_account"], "1000000.00")
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_process(instance).success
        business_day(DUE)
        assert run_process(instance).success
        with bank.client() as client:
            client.close_day(DUE)
        files = [p for p in bank.inbox.iterdir() if p.is_file()]
        assert files and files[0].read_bytes().lstrip().startswith(b"<?xml")
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]
    assert db.execute("SELECT DISTINCT statement_format FROM bridge.account_statement").fetchall() == [("CAMT053",)]
    final = states(db, staged["envelope"])
    assert final.get("RECONCILED", 0) + final.get("REVERSED", 0) == 60
    assert final.get("REVERSED", 0) > 0
    assert db.execute("SELECT count(*) FROM bridge.disbursement_error_recon").fetchone()[0] == 0
