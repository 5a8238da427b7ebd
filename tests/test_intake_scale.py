"""A run of 100,000 staged disbursements (issue "Foundation and PBMS intake": done means). Timings are printed, not
asserted (run with -s to see them)."""

from __future__ import annotations

import time
from decimal import Decimal

from bridge_pipelines.intake.staging import copy_rows
from tests.intake_helpers import envelope, intake, program, received, recount

N = 100_000
AMOUNT = Decimal("12.34")


def staged_rows():
    for i in range(N):
        yield (f"D{i:06d}", "ENV-1", f"MIS-{i}", f"account:{i:010d}@EXAMPLE", f"Beneficiary {i}",
               AMOUNT + (i % 7) - 3, "December cash transfer")


def expected_total() -> Decimal:
    return sum((AMOUNT + (i % 7) - 3 for i in range(N)), Decimal(0))


def statuses(conn) -> dict:
    return {(status, code, detail): count for status, code, detail, count in conn.execute(
        "SELECT intake_status, intake_error_code, intake_error_detail, count(*) FROM staging.disbursement "
        "GROUP BY 1, 2, 3")}


def test_100k_disbursements_in_one_envelope_then_identical_restaging(db):
    total = expected_total()
    program(db)
    envelope(db, number_of_beneficiaries=N, number_of_disbursements=N, total_disbursement_amount=total)
    intake(db)
    timings = {}

    started = time.perf_counter()
    assert copy_rows(db, "disbursement", staged_rows()) == N
    timings["copy 100k"] = time.perf_counter() - started

    started = time.perf_counter()
    summary = intake(db)
    timings["intake 100k new"] = time.perf_counter() - started
    assert summary.accepted == {"disbursement": N} and summary.rejected == {}
    assert statuses(db) == {("ACCEPTED", None, "disbursement accepted"): N}
    assert received(db) == (N, total) == recount(db)
    assert db.execute("SELECT count(*), count(DISTINCT bank_reference) FROM bridge.disbursement").fetchone() == (N, N)
    assert db.execute("SELECT all_disbursements_received FROM bridge.envelope_status").fetchone() == (True,)
    bridge_rows = db.execute("SELECT md5(string_agg(d::text, ',' ORDER BY disbursement_id)) "
                             "FROM bridge.disbursement d").fetchone()

    started = time.perf_counter()
    copy_rows(db, "disbursement", staged_rows())
    timings["copy 100k again"] = time.perf_counter() - started

    started = time.perf_counter()
    summary = intake(db)
    timings["intake 100k identical re-staging"] = time.perf_counter() - started
    assert summary.accepted == {"disbursement": N} and summary.rejected == {}
    assert statuses(db) == {("ACCEPTED", None, "disbursement accepted"): N,
                            ("ACCEPTED", None, "identical to an accepted disbursement: duplicate ignored"): N}
    assert received(db) == (N, total) == recount(db)
    assert db.execute("SELECT md5(string_agg(d::text, ',' ORDER BY disbursement_id)) "
                      "FROM bridge.disbursement d").fetchone() == bridge_rows
    assert db.execute("SELECT count(*) FROM bridge.intake_run").fetchone() == (3,)

    print()
    for name, seconds in timings.items():
        print(f"{name:>34}: {seconds:6.2f} s ({N / seconds:,.0f} rows/s)")


def test_the_write_back_finds_room_in_the_staging_key(db):
    """Each staged row's result is written back as a new version with a new primary key entry (not a HOT update: the
    pending index names intake_status). The key leaves half of each page free (migration 0019), so those entries fit
    beside the old ones instead of splitting every page of the key."""
    rows = 20_000
    program(db)
    envelope(db, number_of_beneficiaries=rows, number_of_disbursements=rows,
             total_disbursement_amount=AMOUNT * rows)
    intake(db)
    copy_rows(db, "disbursement", ((f"D{i:06d}", "ENV-1", f"MIS-{i}", f"account:{i:010d}@EXAMPLE",
                                    f"Beneficiary {i}", AMOUNT, "December cash transfer") for i in range(rows)))
    key_size = "SELECT pg_relation_size('staging.disbursement_pkey')"
    before = db.execute(key_size).fetchone()[0]
    assert intake(db).accepted == {"disbursement": rows}
    after = db.execute(key_size).fetchone()[0]
    assert after <= before * 1.1, (before, after)  # about twice as large with the default fillfactor of 90
