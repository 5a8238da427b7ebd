"""Envelope counters move by what each reconciliation changed (not a recount of the envelope), exactly, also when two
statements' transactions change the same disbursement at the same time."""

from __future__ import annotations

import threading
from decimal import Decimal

import psycopg

from bridge_pipelines.reconciliation.writeback import reverse
from tests.intake_helpers import disbursement, intake, ready_envelope, start_disbursing

COUNTERS = ("number_of_disbursements_reconciled", "total_disbursement_amount_reconciled",
            "number_of_disbursements_reversed", "total_disbursement_amount_reversed")


def _counters(conn: psycopg.Connection) -> tuple:
    return conn.execute(f"SELECT {', '.join(COUNTERS)} FROM bridge.disbursement_envelope_batch_status "
                        "WHERE disbursement_envelope_id = 'ENV-1'").fetchone()


def _recount(conn: psycopg.Connection) -> tuple:
    return conn.execute("""
        SELECT count(*) FILTER (WHERE disbursement_status = 'RECONCILED'),
               coalesce(sum(disbursement_amount) FILTER (WHERE disbursement_status = 'RECONCILED'), 0),
               count(*) FILTER (WHERE disbursement_status = 'REVERSED'),
               coalesce(sum(disbursement_amount) FILTER (WHERE disbursement_status = 'REVERSED'), 0)
        FROM bridge.disbursement WHERE disbursement_envelope_id = 'ENV-1'""").fetchone()


def _wait_until_blocked(observer: psycopg.Connection, pid: int) -> None:
    for _ in range(500):
        waiting = observer.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                                   (pid,)).fetchone()[0]
        if waiting:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the reversal never waited for the disbursement's row lock")


def test_a_reversal_waiting_on_a_concurrent_reconciliation_counts_the_state_it_really_left(db, database_url):
    ready_envelope(db, number_of_beneficiaries=2, number_of_disbursements=2,
                   total_disbursement_amount=Decimal("30.00"))
    disbursement(db, "D1", amount="10.00")
    disbursement(db, "D2", amount="20.00")
    intake(db)
    start_disbursing(db)
    db.execute("UPDATE bridge.disbursement SET disbursement_status = 'SHIPPED', shipped_at = now()")
    with psycopg.connect(database_url, autocommit=True) as other, \
            psycopg.connect(database_url, autocommit=True) as reverser:
        # another statement's transaction reconciles D1 and D2 and moves the counters, not committed yet
        other.execute("BEGIN")
        other.execute("UPDATE bridge.disbursement SET disbursement_status = 'RECONCILED' "
                      "WHERE disbursement_id IN ('D1', 'D2')")
        other.execute("UPDATE bridge.disbursement_envelope_batch_status SET number_of_disbursements_reconciled = 2, "
                      "total_disbursement_amount_reconciled = 30.00 WHERE disbursement_envelope_id = 'ENV-1'")
        # this statement reverses D1: it reads D1 as SHIPPED, then waits for the other transaction's row lock
        reverser.execute("BEGIN")
        reverser.execute("CREATE TEMP TABLE recon_reversed (disbursement_id text, from_states text[]) ON COMMIT DROP")
        reverser.execute("INSERT INTO recon_reversed VALUES ('D1', '{SHIPPED,RECONCILED}')")
        moved: list[int] = []
        worker = threading.Thread(target=lambda: moved.append(reverse(reverser, "statement S2")))
        worker.start()
        _wait_until_blocked(db, reverser.info.backend_pid)
        other.execute("COMMIT")
        worker.join(timeout=60)
        reverser.execute("COMMIT")
    assert moved == [1]
    states = dict(db.execute("SELECT disbursement_id, disbursement_status FROM bridge.disbursement").fetchall())
    assert states == {"D1": "REVERSED", "D2": "RECONCILED"}
    assert _counters(db) == _recount(db) == (1, Decimal("20.00"), 1, Decimal("10.00"))
    event = db.execute("SELECT from_status, to_status FROM bridge.disbursement_event WHERE disbursement_id = 'D1' "
                       "AND to_status = 'REVERSED'").fetchall()
    assert event == [("RECONCILED", "REVERSED")], "the event says the state the reversal really left"
