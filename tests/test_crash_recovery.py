"""Kill `bridge process` (SIGKILL, via BRIDGE_FAULT) at the dangerous points of shipping and reconciliation, run it
again, and check nobody was paid twice, nothing was lost, and the end state equals a crash-free run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.bank_fixtures import *  # noqa: F403
from tests.pipeline_helpers import assert_each_debited_once, envelope_row, fund, ledger_debits, stage, states

TODAY = date(2026, 12, 1)
DUE = TODAY + timedelta(days=1)
BRIDGE = str(Path(sys.executable).parent / "bridge")


def bridge_process(fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("BRIDGE_FAULT", None)
    if fault:
        env["BRIDGE_FAULT"] = fault
    return subprocess.run([BRIDGE, "process"], env=env, capture_output=True, text=True, timeout=300)


def received_and_due(db: psycopg.Connection, make_example_bank, monkeypatch) -> tuple:
    """100 disbursements taken in (batches of 25, the bank never fails a payment), and the schedule date reached."""
    monkeypatch.setenv("BRIDGE_PAYMENT_BATCH_SIZE", "25")
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", TODAY.isoformat())
    bank = make_example_bank(bank_failure_rate=0.0)
    staged = stage(db.info.dsn, 100, DUE)
    fund(bank, staged["sponsor_account"], "1000000.00")
    assert bridge_process().returncode == 0
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", DUE.isoformat())
    return bank, staged


@pytest.mark.parametrize("fault", ["after_batch_recorded", "after_bank_call", "between_steps"])
def test_crash_while_shipping_then_process_again(fault: str, bridge_env, db: psycopg.Connection,
                                                  dagster_database_url: str, make_example_bank, monkeypatch) -> None:
    bank, staged = received_and_due(db, make_example_bank, monkeypatch)

    crashed = bridge_process(fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    assert states(db, staged["envelope"]).get("SHIPPED", 0) < 100

    again = bridge_process()
    assert again.returncode == 0, again.stdout + again.stderr
    assert states(db, staged["envelope"]) == {"SHIPPED": 100}
    assert_each_debited_once(db, 100, "every disbursement debited exactly once")
    row = envelope_row(db, staged["envelope"])
    assert row["number_of_disbursements_shipped"] == 100 and row["shipment_status"] == "COMPLETED"
    batches = db.execute("SELECT count(*), count(*) FILTER (WHERE disbursement_payment_status = 'ACKNOWLEDGED') "
                         "FROM bridge.bank_disbursement_batch_status").fetchone()
    assert batches == (4, 4)
    if fault == "after_bank_call":
        with bank.client() as client:
            stats = client.stats()
        assert "duplicate" in str(stats).lower()  # the re-sent batch was seen and de-duplicated by the bank


def test_envelope_cancelled_after_a_crash_keeps_the_payments_the_bank_made(
        bridge_env, db: psycopg.Connection, dagster_database_url: str, make_example_bank, monkeypatch) -> None:
    """The bank booked a batch, the bridge died before recording its answer, then PBMS cancelled the envelope. The
    bank's answer for that batch (and for any other it got) is recorded: those payments were made and stay SHIPPED.
    Batches the bank never got are cancelled and never sent; the rest of the block is released."""
    bank, staged = received_and_due(db, make_example_bank, monkeypatch)
    crashed = bridge_process("after_bank_call")
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    paid = len(ledger_debits(db))
    assert paid in (25, 50), "the bank booked the first batch (and maybe the one in flight beside it)"
    assert states(db, staged["envelope"]) == {"RECEIVED": 100}, "no answer was recorded"

    db.execute("INSERT INTO staging.envelope_cancellation (disbursement_envelope_id) VALUES (%s)", (staged["envelope"],))
    again = bridge_process()
    assert again.returncode == 0, again.stdout + again.stderr
    assert states(db, staged["envelope"]) == {"SHIPPED": paid, "CANCELLED": 100 - paid}
    assert_each_debited_once(db, paid, "nothing more was sent after the cancellation")
    shipped_references = {row[0] for row in db.execute(
        "SELECT bank_reference FROM bridge.disbursement WHERE disbursement_status = 'SHIPPED'")}
    assert shipped_references == set(ledger_debits(db)), "SHIPPED are exactly the payments the bank made"
    batches = db.execute("SELECT disbursement_payment_status, count(*) FROM bridge.bank_disbursement_batch_status "
                         "GROUP BY 1").fetchall()
    assert dict(batches) == {"ACKNOWLEDGED": paid // 25, "CANCELLED": 4 - paid // 25}
    assert db.execute("SELECT from_status, reason_code, count(*) FROM bridge.disbursement_event "
                      "WHERE to_status = 'CANCELLED' GROUP BY 1, 2").fetchall() == [
        ("RECEIVED", "ENVELOPE_CANCELLED", 100 - paid)]
    row = envelope_row(db, staged["envelope"])
    assert row["number_of_disbursements_shipped"] == paid
    with bank.client() as client:
        account = client.get_account(staged["sponsor_account"])
    assert str(account["blocked"]) in ("0", "0.00", "0.000000"), "the unspent block is released"


def test_crash_before_reconciliation_commit_then_again(bridge_env, db: psycopg.Connection, dagster_database_url: str,
                                                        make_example_bank, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", TODAY.isoformat())
    bank = make_example_bank(bank_failure_rate=0.2)
    staged = stage(db.info.dsn, 50, DUE)
    fund(bank, staged["sponsor_account"], "1000000.00")
    assert bridge_process().returncode == 0
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", DUE.isoformat())
    assert bridge_process().returncode == 0
    with bank.client() as client:
        closed = client.close_day(DUE)
    assert closed["files"], closed
    crashed = bridge_process("reconciliation_before_commit")
    assert crashed.returncode == -signal.SIGKILL
    assert states(db, staged["envelope"]) == {"SHIPPED": 50}, "nothing half-applied"
    assert db.execute("SELECT count(*) FROM bridge.disbursement_recon").fetchone()[0] == 0
    # the statement run died (its lock is free): the next pass runs the statement again
    again = bridge_process()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "statement_job" in again.stdout
    final = states(db, staged["envelope"])
    assert final.get("RECONCILED", 0) + final.get("REVERSED", 0) == 50


def test_crash_before_intake_commits_leaves_nothing_half_applied(bridge_env, db: psycopg.Connection,
                                                                  dagster_database_url: str, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", TODAY.isoformat())
    staged = stage(db.info.dsn, 40, DUE)
    crashed = bridge_process("intake_before_commit")
    assert crashed.returncode == -signal.SIGKILL
    assert db.execute("SELECT count(*) FROM staging.disbursement WHERE intake_status = 'PENDING'").fetchone()[0] == 40
    assert db.execute("SELECT count(*) FROM bridge.disbursement").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM bridge.disbursement_envelope").fetchone()[0] == 0
    # the killed run is still marked started, but nobody holds the intake lock: the sensor runs the rows again
    again = bridge_process()
    assert again.returncode == 0, again.stdout + again.stderr
    assert db.execute("SELECT count(*) FROM staging.disbursement WHERE intake_status = 'ACCEPTED'").fetchone()[0] == 40
    assert envelope_row(db, staged["envelope"])["number_of_disbursements_received"] == 40


def test_two_bridge_process_at_once_do_the_work_once(bridge_env, db: psycopg.Connection, dagster_database_url: str,
                                                     make_example_bank, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", TODAY.isoformat())
    bank = make_example_bank(bank_failure_rate=0.0)
    staged = stage(db.info.dsn, 80, DUE)
    fund(bank, staged["sponsor_account"], "1000000.00")
    assert bridge_process().returncode == 0
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", DUE.isoformat())
    env = dict(os.environ)
    first = subprocess.Popen([BRIDGE, "process"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen([BRIDGE, "process"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    ran = sum(out.count("disbursement_job") for out, _err in outputs)
    assert ran == 1, outputs  # one did the work, the other waited and found nothing to do
    assert_each_debited_once(db, 80)
