"""Bank faults: 5xx, timeouts after the bank accepted, exhausted attempts (visible ERROR, then operator retry), and
an envelope cancelled after its funds were blocked (the block is released, unsent batches never leave)."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import psycopg
import pytest

from bridge_pipelines.disbursement.retry_envelope import retry_step
from tests.bank_fixtures import *  # noqa: F403
from tests.pipeline_helpers import assert_each_debited_once, envelope_row, fund, ledger_debits, run_process, stage, states

TODAY = date(2026, 12, 1)
DUE = TODAY + timedelta(days=1)


@pytest.fixture
def shipped_setup(bridge_env, db: psycopg.Connection, make_example_bank, monkeypatch):
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", TODAY.isoformat())
    monkeypatch.setenv("BRIDGE_PAYMENT_BATCH_SIZE", "20")
    bank = make_example_bank(bank_failure_rate=0.0)
    staged = stage(db.info.dsn, 60, DUE)
    fund(bank, staged["sponsor_account"], "1000000.00")
    instance = dg.DagsterInstance.ephemeral()
    assert run_process(instance).success
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", DUE.isoformat())
    yield bank, staged, instance
    instance.dispose()


def test_5xx_on_payments_is_retried_and_nobody_is_paid_twice(shipped_setup, db) -> None:
    bank, staged, instance = shipped_setup
    with bank.client() as client:
        client.add_fault("/payments/batches", "error", count=2, status=503)
    report = run_process(instance)
    assert report.success, [r.error for r in report.runs]
    assert states(db, staged["envelope"]) == {"SHIPPED": 60}
    assert_each_debited_once(db, 60)
    attempts = db.execute("SELECT max(attempts) FROM bridge.bank_disbursement_batch_status").fetchone()[0]
    assert attempts >= 1


def test_timeout_after_the_bank_accepted_resends_the_same_batch(shipped_setup, db, monkeypatch) -> None:
    bank, staged, instance = shipped_setup
    monkeypatch.setenv("BRIDGE_BANK_TIMEOUT_SECONDS", "1")
    with bank.client() as client:
        client.add_fault("/payments/batches", "process_then_hang", count=1, seconds=3)
    report = run_process(instance)
    assert report.success, [r.error for r in report.runs]
    assert states(db, staged["envelope"]) == {"SHIPPED": 60}
    assert_each_debited_once(db, 60, "the re-sent batch was not debited again")
    with bank.client() as client:
        stats = client.stats()
    assert stats, "the bank saw the batch twice and de-duplicated it"


def test_exhausted_attempts_end_in_visible_error_then_operator_retry(shipped_setup, db) -> None:
    bank, staged, instance = shipped_setup
    with bank.client() as client:
        client.add_fault("/funds/check", "error", count=50, status=500)
    report = run_process(instance)
    assert not report.success
    assert "bridge retry" in (report.runs[0].error or "")
    row = envelope_row(db, staged["envelope"])
    assert row["funds_available_with_bank"] == "ERROR"
    assert row["funds_available_attempts"] >= 3 and row["funds_available_latest_error_code"]
    assert run_process(instance).runs == [], "an ERROR waits for an operator, it is not retried silently"
    with bank.client() as client:
        client.reset_faults()
    assert retry_step(db, staged["envelope"], "funds")
    report = run_process(instance)
    assert report.success, [r.error for r in report.runs]
    assert states(db, staged["envelope"]) == {"SHIPPED": 60}


def test_cancelled_envelope_after_block_releases_the_block_and_sends_nothing_more(shipped_setup, db) -> None:
    bank, staged, instance = shipped_setup
    with bank.client() as client:
        client.add_fault("/payments/batches", "error", count=1000, status=500)
    report = run_process(instance)
    assert not report.success
    row = envelope_row(db, staged["envelope"])
    assert row["funds_blocked_with_bank"] == "FUNDS_BLOCK_SUCCESS" and row["shipment_status"] == "ERROR"
    with bank.client() as client:
        client.reset_faults()
        blocked_before = client.get_account(staged["sponsor_account"])["blocked"]
    assert str(blocked_before) not in ("0", "0.00")
    db.execute("INSERT INTO staging.envelope_cancellation (disbursement_envelope_id) VALUES (%s)", (staged["envelope"],))
    report = run_process(instance)
    assert report.success, [r.error for r in report.runs]
    assert states(db, staged["envelope"]) == {"CANCELLED": 60}
    # every member of a batch that never reached the bank, cancelled from the state it waited in (no ID mapper)
    assert db.execute("SELECT from_status, reason_code, count(*) FROM bridge.disbursement_event "
                      "WHERE to_status = 'CANCELLED' GROUP BY 1, 2").fetchall() == [
        ("RECEIVED", "ENVELOPE_CANCELLED", 60)]
    assert ledger_debits(db) == {}
    row = envelope_row(db, staged["envelope"])
    assert row["funds_released_amount"] == row["funds_blocked_amount"]
    with bank.client() as client:
        account = client.get_account(staged["sponsor_account"])
    assert str(account["blocked"]) in ("0", "0.00", "0.000000")


def test_a_refused_batch_still_records_the_answer_for_the_batch_already_at_the_bank(shipped_setup, db) -> None:
    """Shipping keeps one bank call in flight beside the database work: when the bank refuses batch 1, batch 2 has
    already been sent. Its answer is recorded before the run fails, batch 3 is never sent, and after the operator's
    retry every disbursement is paid exactly once."""
    bank, staged, instance = shipped_setup
    with bank.client() as client:
        client.add_fault("/payments/batches", "error", count=1, status=422)
    report = run_process(instance)
    assert not report.success
    batches = db.execute("SELECT batch_sequence, disbursement_payment_status, number_accepted "
                         "FROM bridge.bank_disbursement_batch_status ORDER BY batch_sequence").fetchall()
    assert batches == [(1, "ERROR", None), (2, "ACKNOWLEDGED", 20), (3, "PENDING", None)]
    assert states(db, staged["envelope"]) == {"RECEIVED": 40, "SHIPPED": 20}  # no ID mapper: shipped from RECEIVED
    assert len(ledger_debits(db)) == 20
    assert envelope_row(db, staged["envelope"])["shipment_status"] == "ERROR"

    assert retry_step(db, staged["envelope"], "shipment")
    report = run_process(instance)
    assert report.success, [r.error for r in report.runs]
    assert states(db, staged["envelope"]) == {"SHIPPED": 60}
    assert_each_debited_once(db, 60)
