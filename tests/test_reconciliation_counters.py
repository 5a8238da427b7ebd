"""Envelope counters move by what each reconciliation changed (not a recount of the envelope), exactly, also when two
statements' transactions change the same disbursement at the same time."""

from __future__ import annotations

import threading
from decimal import Decimal

import psycopg

from bridge_pipelines.reconciliation.writeback import RECON_MATCH_TABLE_SQL, REVERSAL_UPSERT_SQL, reverse
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
        FROM bridge.disbursement_status WHERE disbursement_envelope_id = 'ENV-1'""").fetchone()


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
        # another statement's transaction reconciles D1 and D2 (records their remittances) and moves the counters,
        # not committed yet
        other.execute("BEGIN")
        other.execute("""INSERT INTO bridge.disbursement_recon (disbursement_id, disbursement_envelope_id,
                             remittance_reference_number, remittance_statement_id, remittance_page,
                             remittance_entry_sequence)
                         SELECT disbursement_id, disbursement_envelope_id, bank_reference, 'S1', 0,
                                row_number() OVER (ORDER BY disbursement_id)
                         FROM bridge.disbursement WHERE disbursement_id IN ('D1', 'D2')""")
        other.execute("UPDATE bridge.disbursement_envelope_batch_status SET number_of_disbursements_reconciled = 2, "
                      "total_disbursement_amount_reconciled = 30.00 WHERE disbursement_envelope_id = 'ENV-1'")
        # this statement reverses D1: recording the reversal waits for the other transaction's row of D1; it was
        # not remitted by this statement
        reverser.execute("BEGIN")
        reverser.execute(RECON_MATCH_TABLE_SQL)
        reverser.execute("""INSERT INTO recon_match (disbursement_id, disbursement_envelope_id, match_kind,
                                statement_id, page, entry_sequence, reference, reason)
                            SELECT 'D1', 'ENV-1', 'REVERSAL', 'S2', 0, 1, bank_reference, 'AC04 closed'
                            FROM bridge.disbursement WHERE disbursement_id = 'D1'""")
        reverser.execute("CREATE TEMP TABLE recon_reversed (disbursement_id text, from_states text[], "
                         "remitted_in_step boolean) ON COMMIT DROP")
        reverser.execute("INSERT INTO recon_reversed VALUES ('D1', '{SHIPPED}', false)")
        moved: list[int] = []

        def record_and_reverse() -> None:
            reverser.execute(REVERSAL_UPSERT_SQL)
            moved.append(reverse(reverser, "statement S2"))

        worker = threading.Thread(target=record_and_reverse)
        worker.start()
        _wait_until_blocked(db, reverser.info.backend_pid)
        other.execute("COMMIT")
        worker.join(timeout=60)
        reverser.execute("COMMIT")
    assert moved == [1]
    stored = dict(db.execute("SELECT disbursement_id, disbursement_status FROM bridge.disbursement").fetchall())
    assert stored == {"D1": "REVERSED", "D2": "SHIPPED"}, "a reconciled disbursement is stored SHIPPED"
    shown = dict(db.execute("SELECT disbursement_id, disbursement_status FROM bridge.disbursement_status").fetchall())
    assert shown == {"D1": "REVERSED", "D2": "RECONCILED"}
    assert _counters(db) == _recount(db) == (1, Decimal("20.00"), 1, Decimal("10.00"))
    event = db.execute("SELECT from_status, to_status FROM bridge.disbursement_event WHERE disbursement_id = 'D1' "
                       "AND to_status = 'REVERSED'").fetchall()
    assert event == [("RECONCILED", "REVERSED")], "the event says the state the reversal really left"
