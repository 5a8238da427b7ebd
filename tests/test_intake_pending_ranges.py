"""Pending staged rows are found through the ranges of staging ids their INSERTs recorded (migration 0017): every
row that can be PENDING lies in a range, a run deletes only the ranges it has seen and taken, and writing a row's
result back is an update in place (HOT)."""

from __future__ import annotations

import psycopg

from bridge_pipelines.intake.service import (MAX_RANGES, _forget_ranges, _pending_predicate, merged_ranges_sql,
                                             run_intake)
from bridge_pipelines.intake.staging import copy_rows
from tests.intake_helpers import (BUSINESS_DATE, assert_accepted, count_rows, disbursement, envelope, intake, program,
                                  result)

N = 2_000


def _ranges(db: psycopg.Connection, table: str = "disbursement") -> list[tuple[int, int, int]]:
    return db.execute("SELECT first_staging_id, last_staging_id, staged_rows FROM staging.pending_range "
                      "WHERE staging_table = %s ORDER BY first_staging_id", (table,)).fetchall()


def _rows(count: int, prefix: str = "D") -> list[tuple]:
    return [(f"{prefix}{i:05d}", "ENV-1", f"MIS-{i}", f"account:{i}@EXAMPLE", f"Person {i}", "1.00", "December")
            for i in range(count)]


def _received(db: psycopg.Connection, count: int = N) -> None:
    program(db)
    envelope(db, number_of_beneficiaries=count, number_of_disbursements=count, total_disbursement_amount=count)
    intake(db)


def test_a_copy_records_one_range_and_the_run_takes_it_and_forgets_it(db):
    _received(db)
    assert _ranges(db) == []
    copy_rows(db, "disbursement", _rows(N))
    [(first, last, rows)] = _ranges(db)
    assert (last - first + 1, rows) == (N, N)
    assert intake(db).accepted == {"disbursement": N}
    assert _ranges(db) == [] and count_rows(db, "staging.pending_range") == 0
    assert count_rows(db, "staging.disbursement", "intake_status = 'PENDING'") == 0


def test_writing_the_results_back_updates_the_staged_rows_in_place(db):
    _received(db)
    copy_rows(db, "disbursement", _rows(N))
    db.execute("SELECT pg_stat_force_next_flush()")
    before = db.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                        "WHERE relid = 'staging.disbursement'::regclass").fetchone()
    intake(db)
    db.execute("SELECT pg_stat_force_next_flush()")
    updated, hot = (after - earlier for after, earlier in zip(db.execute(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'staging.disbursement'::regclass"
    ).fetchone(), before))
    assert updated == N
    # with the partial index of PENDING rows, none was: the index's predicate names the column the write-back sets
    assert hot >= 0.8 * N, f"{hot} of {updated} written back in place"


def test_a_row_with_a_lower_id_committed_late_and_a_row_set_back_to_pending_are_taken(db):
    _received(db, 4)
    db.execute("SELECT setval('staging.disbursement_staging_id_seq', 1000)")
    accepted = disbursement(db, "D-1", amount="1.00")
    intake(db)
    assert_accepted(db, "disbursement", accepted)
    late = 7  # its transaction took the id early and committed after the run
    db.execute("INSERT INTO staging.disbursement (staging_id, disbursement_id, disbursement_envelope_id, "
               "mis_reference_number, beneficiary_id, beneficiary_name, disbursement_amount, narrative) "
               "VALUES (%s, 'LATE', 'ENV-1', 'MIS', 'account:7@EXAMPLE', 'Late Row', 1, 'late')", (late,))
    assert [r[:2] for r in _ranges(db)] == [(late, late)]
    rejected = disbursement(db, "D-2", amount="-1")
    intake(db)
    assert result(db, "disbursement", late)[0] == "ACCEPTED"
    assert result(db, "disbursement", rejected) == ("REJECTED", "INVALID_DISBURSEMENT_AMOUNT")
    # an operator sets a rejected row back to PENDING: it gets a range of its own and the next run takes it again
    db.execute("UPDATE staging.disbursement SET intake_status = 'PENDING', intake_error_code = NULL "
               "WHERE staging_id = %s", (rejected,))
    assert [r[:2] for r in _ranges(db)] == [(rejected, rejected)]
    intake(db)
    assert result(db, "disbursement", rejected) == ("REJECTED", "INVALID_DISBURSEMENT_AMOUNT")
    assert _ranges(db) == []


def test_ranges_recorded_after_the_runs_snapshot_are_kept(db, database_url):
    _received(db)
    with psycopg.connect(database_url) as run:
        run.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        run.execute("SELECT 1")  # the run's snapshot
        copy_rows(db, "disbursement", _rows(3))  # PBMS commits meanwhile
        _forget_ranges(run, "disbursement", every_row_taken=True)
        run.commit()
    assert [r[2] for r in _ranges(db)] == [3]
    assert intake(db).accepted == {"disbursement": 3}


def test_a_run_of_some_staging_ids_keeps_the_ranges_with_rows_left(db):
    _received(db)
    first = disbursement(db, "D-1")
    disbursement(db, "D-2")
    summary = run_intake(db, BUSINESS_DATE, 0, {"disbursement": [first]})
    assert summary.accepted == {"disbursement": 1}
    assert [r[2] for r in _ranges(db)] == [1]  # D-2's range; D-1's is taken
    assert intake(db).accepted == {"disbursement": 1}
    assert _ranges(db) == []


def test_overlapping_and_adjacent_ranges_are_merged(db):
    for first, last in ((1, 10), (5, 20), (21, 30), (40, 50), (45, 46)):
        db.execute("INSERT INTO staging.pending_range (staging_table, first_staging_id, last_staging_id, "
                   "staged_rows) VALUES ('disbursement', %s, %s, 1)", (first, last))
    assert db.execute(merged_ranges_sql("disbursement") + " ORDER BY 1").fetchall() == [(1, 30), (40, 50)]
    predicate = _pending_predicate(db, "disbursement").as_string(db)
    assert "BETWEEN 1 AND 30 OR" in predicate and "BETWEEN 40 AND 50" in predicate
    assert _pending_predicate(db, "envelope_cancellation") is None
    for n in range(MAX_RANGES + 1):  # too many separate ranges: read as one, from the first to the last
        db.execute("INSERT INTO staging.pending_range (staging_table, first_staging_id, last_staging_id, "
                   "staged_rows) VALUES ('benefit_program', %s, %s, 1)", (100 * n, 100 * n))
    assert (_pending_predicate(db, "benefit_program").as_string(db)
            == f"s.intake_status = 'PENDING' AND (s.staging_id BETWEEN 0 AND {100 * MAX_RANGES})")


def test_pbms_rows_inserted_and_taken_leave_nothing_behind_across_tables(db):
    _received(db)
    copy_rows(db, "disbursement", _rows(5))
    envelope(db, "ENV-2", number_of_disbursements=1)
    summary = intake(db)
    assert summary.processed == {"disbursement": 5, "disbursement_envelope": 1}
    assert count_rows(db, "staging.pending_range") == 0
