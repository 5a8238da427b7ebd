"""PBMS intake rules, against the real PostgreSQL: every code of the contract (issue "Foundation and PBMS intake"),
accepted and rejected, rule order, re-staging, running caps, amendments, cancellations, currencies, wrong types,
atomicity and concurrency.

Each test gets a fresh migrated database (`db`, autocommit). Business date 2026-12-01, SLA 0 days unless a test says
otherwise; the default envelope ENV-1 of program CASH declares 3 beneficiaries, 3 disbursements, 300.00 USD.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from bridge_pipelines.intake.service import run_intake
from bridge_pipelines.intake.staging import copy_rows
from tests.intake_helpers import (
    BUSINESS_DATE, SCHEDULE_DATE, amendment, assert_accepted, assert_all_final, assert_rejected, assert_results,
    cancel_disbursement,
    cancel_envelope, count_rows, disbursement, envelope, full_result, intake, program, ready_envelope, received,
    recount, result, staged_data, start_disbursing,
)

ENV = "disbursement_envelope"
DISB = "disbursement"
AMD = "envelope_amendment"
PROG = "benefit_program"
ECAN = "envelope_cancellation"
DCAN = "disbursement_cancellation"

SQL_TEXT = "'); DROP TABLE bridge.disbursement; --"
UNICODE_TEXT = "محمد 👩‍👩‍👧 Ñandú ‏שלום‎ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"


def envelope_row(conn, envelope_id):
    return conn.execute("SELECT * FROM bridge.disbursement_envelope WHERE disbursement_envelope_id = %s",
                        (envelope_id,)).fetchone()


def envelope_field(conn, envelope_id, column):
    return conn.execute(f"SELECT {column} FROM bridge.disbursement_envelope WHERE disbursement_envelope_id = %s",
                        (envelope_id,)).fetchone()[0]


def disbursement_field(conn, disbursement_id, column):
    return conn.execute(f"SELECT {column} FROM bridge.disbursement WHERE disbursement_id = %s",
                        (disbursement_id,)).fetchone()[0]


# ================================================================================================================
# Envelopes: rules 1-10
# ================================================================================================================

def test_envelope_accepted_creates_envelope_and_batch_status(db):
    program(db)
    sid = envelope(db, disbursement_frequency="Monthly")
    summary = intake(db)
    assert_accepted(db, ENV, sid, "accepted")
    row = db.execute(
        "SELECT benefit_program_mnemonic, disbursement_frequency, cycle_code_mnemonic, number_of_beneficiaries, "
        "number_of_disbursements, total_disbursement_amount, disbursement_currency_code, disbursement_schedule_date, "
        "cancellation_status, source_staging_id FROM bridge.disbursement_envelope").fetchall()
    assert row == [("CASH", "Monthly", "2026-12", 3, 3, Decimal("300.00"), "USD", SCHEDULE_DATE, "NOT_CANCELLED", sid)]
    assert received(db) == (0, 0)
    assert db.execute("SELECT funds_available_with_bank, funds_blocked_with_bank, id_mapper_resolution_status "
                      "FROM bridge.disbursement_envelope_batch_status").fetchone() == (
        "PENDING_CHECK", "PENDING_CHECK", "NOT_APPLICABLE")
    assert summary.accepted == {PROG: 1, ENV: 1}
    assert summary.rejected == {}


def test_envelope_rule1_envelope_id(db):
    program(db)
    cases = {repr(v): (envelope(db, v), "INVALID_DISBURSEMENT_ENVELOPE_ID") for v in (None, "", "   ", "E" * 65)}
    cases["64 characters"] = (envelope(db, "E" * 64), None)
    intake(db)
    assert_results(db, ENV, cases)
    assert count_rows(db, "bridge.disbursement_envelope") == 1


def test_envelope_rule2_program_mnemonic(db):
    program(db, "CASH")
    program(db, "BAD", benefit_program_name=None)  # rejected in the same batch: INVALID_PROGRAM_NAME
    cases = {repr(m): (envelope(db, f"ENV-{n}", mnemonic=m), "INVALID_PROGRAM_MNEMONIC")
             for n, m in enumerate((None, "", "NOPE", "cash", " CASH", "BAD"))}
    cases["CASH"] = (envelope(db, "ENV-OK", "CASH"), None)
    intake(db)
    assert_results(db, ENV, cases)
    assert_rejected(db, ENV, cases["'BAD'"][0], "INVALID_PROGRAM_MNEMONIC", "BAD")


FREQUENCIES = [
    ("Monthly", "Monthly"), ("monthly", "Monthly"), ("MONTHLY", "Monthly"), (" weekly ", "Weekly"),
    ("daily", "Daily"), ("FORTNIGHTLY", "Fortnightly"), ("bimonthly", "BiMonthly"), ("quarterly", "Quarterly"),
    ("semiannually", "SemiAnnually"), ("aNNually", "Annually"), ("ondemand", "OnDemand"),
]


def test_envelope_rule3_frequency_case_insensitive_stored_canonical(db):
    program(db)
    cases = {staged: (envelope(db, f"ENV-{n}", disbursement_frequency=staged), None)
             for n, (staged, _) in enumerate(FREQUENCIES)}
    for n, bad in enumerate((None, "", "Hourly", "Month ly", "On Demand", "Bi-Monthly", "Monthly\n")):
        cases[repr(bad)] = (envelope(db, f"BAD-{n}", disbursement_frequency=bad), "INVALID_DISBURSEMENT_FREQUENCY")
    intake(db)
    assert_results(db, ENV, cases)
    for n, (_, canonical) in enumerate(FREQUENCIES):
        assert envelope_field(db, f"ENV-{n}", "disbursement_frequency") == canonical


def test_envelope_rule4_cycle_code(db):
    program(db)
    cases = {repr(c): (envelope(db, f"ENV-{n}", cycle_code_mnemonic=c), "INVALID_CYCLE_CODE_MNEMONIC")
             for n, c in enumerate((None, "", "   "))}
    cases["ok"] = (envelope(db, "ENV-OK", cycle_code_mnemonic="C"), None)
    intake(db)
    assert_results(db, ENV, cases)


def test_envelope_rule5_number_of_beneficiaries(db):
    program(db)
    cases = {repr(b): (envelope(db, f"ENV-{n}", number_of_beneficiaries=b), "INVALID_NO_OF_BENEFICIARIES")
             for n, b in enumerate((None, 0, -1, -9_223_372_036_854_775_808))}
    cases["1"] = (envelope(db, "ENV-OK", number_of_beneficiaries=1), None)
    intake(db)
    assert_results(db, ENV, cases)


def test_envelope_rule6_number_of_disbursements(db):
    program(db)
    cases = {}
    for n, (beneficiaries, disbursements, ok) in enumerate([
        (1, 1, True), (3, 3, True), (3, 4, True), (3, 2, False), (3, None, False), (1, 0, False), (1, -5, False),
    ]):
        cases[(beneficiaries, disbursements)] = (
            envelope(db, f"ENV-{n}", number_of_beneficiaries=beneficiaries, number_of_disbursements=disbursements),
            None if ok else "INVALID_NO_OF_DISBURSEMENTS")
    intake(db)
    assert_results(db, ENV, cases)


def test_envelope_rule7_total_amount(db):
    program(db)
    bad = [None, "0", "0.00", "-0.01", "-300", "1e18", "1000000000000000000.00", "1e30", "0.001", "300.001", "NaN",
           "Infinity", "-Infinity", "1e-1000"]
    good = ["0.01", "300", "300.5", "300.50", "300.500000", "999999999999999999.99"]
    cases = {}
    for n, total in enumerate(bad + good):
        cases[total] = (envelope(db, f"ENV-{n}", total_disbursement_amount=None if total is None else Decimal(total)),
                        "INVALID_TOTAL_DISBURSEMENT_AMOUNT" if total in bad else None)
    intake(db)
    assert_results(db, ENV, cases)
    for n, total in enumerate(bad + good):
        if total in good:
            assert envelope_field(db, f"ENV-{n}", "total_disbursement_amount") == Decimal(total)


def test_envelope_rule8_currency_must_be_the_programs(db):
    program(db, currency="USD")
    cases = {repr(c): (envelope(db, f"ENV-{n}", disbursement_currency_code=c), "INVALID_DISBURSEMENT_CURRENCY_CODE")
             for n, c in enumerate((None, "", "EUR", "XXX", "US", "USDX", "JPY"))}
    for n, c in enumerate(("USD", "usd", " USD ")):
        cases[repr(c)] = (envelope(db, f"OK-{n}", disbursement_currency_code=c), None)
    intake(db)
    assert_results(db, ENV, cases)
    assert {r[0] for r in db.execute("SELECT disbursement_currency_code FROM bridge.disbursement_envelope")} == {"USD"}


@pytest.mark.parametrize("sla_days", [0, 3])
def test_envelope_rule9_schedule_date_after_business_date_plus_sla(db, sla_days):
    """The schedule date must be strictly after business date + SLA days: equal is rejected, +1 accepted."""
    program(db)
    cases = {}
    for offset, ok in ((-30, False), (-1, False), (0, False), (1, True), (400, True)):
        cases[offset] = (envelope(db, f"ENV{offset}",
                                  disbursement_schedule_date=BUSINESS_DATE + timedelta(days=sla_days + offset)),
                         None if ok else "INVALID_DISBURSEMENT_SCHEDULE_DATE")
    cases[None] = (envelope(db, "ENV-NONE", disbursement_schedule_date=None), "INVALID_DISBURSEMENT_SCHEDULE_DATE")
    # PostgreSQL dates include ±infinity: not a schedule date (an envelope that never falls due).
    for name in ("infinity", "-infinity"):
        cases[name] = (envelope(db, f"ENV-{name}", disbursement_schedule_date=name),
                       "INVALID_DISBURSEMENT_SCHEDULE_DATE")
    run_intake(db, BUSINESS_DATE, sla_days)
    assert_results(db, ENV, cases)
    assert_rejected(db, ENV, cases[0][0], "INVALID_DISBURSEMENT_SCHEDULE_DATE", str(BUSINESS_DATE))


def test_envelope_rule10_conflicting_restaging_is_duplicate(db):
    program(db, "CASH")
    program(db, "OTHER")
    first = envelope(db)
    intake(db)
    assert_accepted(db, ENV, first)
    before = envelope_row(db, "ENV-1")
    changes = [
        dict(mnemonic="OTHER"), dict(disbursement_frequency="Weekly"), dict(cycle_code_mnemonic="2027-01"),
        dict(number_of_beneficiaries=2), dict(number_of_disbursements=4),
        dict(total_disbursement_amount=Decimal("300.01")),
        dict(disbursement_schedule_date=SCHEDULE_DATE + timedelta(days=1)),
    ]
    cases = {repr(c): (envelope(db, **c), "DUPLICATE_DISBURSEMENT_ENVELOPE_ID") for c in changes}
    summary = intake(db)
    assert_results(db, ENV, cases)
    assert_rejected(db, ENV, cases[repr(changes[0])][0], "DUPLICATE_DISBURSEMENT_ENVELOPE_ID", "ENV-1")
    assert envelope_row(db, "ENV-1") == before
    assert summary.rejected_by_code == {"DUPLICATE_DISBURSEMENT_ENVELOPE_ID": len(changes)}


def test_envelope_identical_restaging_is_accepted_noop(db):
    program(db)
    first = envelope(db)
    intake(db)
    before = envelope_row(db, "ENV-1")
    # Identical content, spelled differently where the bridge canonicalises (frequency, currency, amount scale).
    again = envelope(db)
    spelled = envelope(db, disbursement_frequency="MONTHLY", disbursement_currency_code="usd",
                       total_disbursement_amount=Decimal("300.0"))
    intake(db)
    assert_accepted(db, ENV, first, "accepted")
    assert_accepted(db, ENV, again, "duplicate")
    assert_accepted(db, ENV, spelled, "duplicate")
    assert envelope_row(db, "ENV-1") == before
    assert count_rows(db, "bridge.disbursement_envelope") == 1
    assert count_rows(db, "bridge.disbursement_envelope_batch_status") == 1


def test_envelope_identical_restaging_accepted_even_when_rules_would_now_reject(db):
    """Idempotent retries: an identical re-staging is a no-op even after its schedule date passed."""
    program(db)
    envelope(db)
    intake(db)
    again = envelope(db)
    run_intake(db, SCHEDULE_DATE + timedelta(days=5), 0)
    assert_accepted(db, ENV, again, "duplicate")


def test_envelope_same_id_twice_in_one_batch(db):
    """Rows sharing an id in one batch are taken one by one: identical → no-op, different → duplicate."""
    program(db)
    first = envelope(db)
    identical = envelope(db)
    different = envelope(db, cycle_code_mnemonic="2027-01")
    intake(db)
    assert_accepted(db, ENV, first, "accepted")
    assert_accepted(db, ENV, identical, "duplicate")
    assert_rejected(db, ENV, different, "DUPLICATE_DISBURSEMENT_ENVELOPE_ID")
    assert envelope_field(db, "ENV-1", "cycle_code_mnemonic") == "2026-12"


def test_envelope_rejected_then_corrected_in_same_batch(db):
    program(db)
    bad = envelope(db, cycle_code_mnemonic=None)
    good = envelope(db)
    intake(db)
    assert_rejected(db, ENV, bad, "INVALID_CYCLE_CODE_MNEMONIC")
    assert_accepted(db, ENV, good, "accepted")


# Breakers: per rule, overrides that break that rule only (rule 10 needs ENV-DUP accepted beforehand).
ENVELOPE_BREAKERS = {
    1: ("INVALID_DISBURSEMENT_ENVELOPE_ID", dict(envelope_id=None)),
    2: ("INVALID_PROGRAM_MNEMONIC", dict(mnemonic="NOPE")),
    3: ("INVALID_DISBURSEMENT_FREQUENCY", dict(disbursement_frequency="Hourly")),
    4: ("INVALID_CYCLE_CODE_MNEMONIC", dict(cycle_code_mnemonic=" ")),
    5: ("INVALID_NO_OF_BENEFICIARIES", dict(number_of_beneficiaries=0)),
    6: ("INVALID_NO_OF_DISBURSEMENTS", dict(number_of_disbursements=-1)),
    7: ("INVALID_TOTAL_DISBURSEMENT_AMOUNT", dict(total_disbursement_amount=Decimal("-5"))),
    8: ("INVALID_DISBURSEMENT_CURRENCY_CODE", dict(disbursement_currency_code="EUR")),
    9: ("INVALID_DISBURSEMENT_SCHEDULE_DATE", dict(disbursement_schedule_date=BUSINESS_DATE)),
    10: ("DUPLICATE_DISBURSEMENT_ENVELOPE_ID", dict(envelope_id="ENV-DUP")),
}


def test_envelope_first_broken_rule_wins(db):
    """For every pair of rules i < j, a row breaking both gets rule i's code; a row breaking all gets rule 1's."""
    program(db)
    envelope(db, "ENV-DUP", cycle_code_mnemonic="original")
    intake(db)
    expected = {}
    for i in ENVELOPE_BREAKERS:
        for j in ENVELOPE_BREAKERS:
            if i >= j or {i, j} == {1, 10}:
                continue
            values = dict(envelope_id=f"ENV-{i}-{j}")
            values.update(ENVELOPE_BREAKERS[i][1])
            values.update(ENVELOPE_BREAKERS[j][1])
            expected[(i, j)] = (envelope(db, **values), ENVELOPE_BREAKERS[i][0])
        # Each rule alone, in the same batch.
        values = dict(envelope_id=f"ENV-{i}")
        values.update(ENVELOPE_BREAKERS[i][1])
        expected[(i,)] = (envelope(db, **values), ENVELOPE_BREAKERS[i][0])
    everything = {}
    for _, overrides in ENVELOPE_BREAKERS.values():
        everything.update(overrides)
    everything["envelope_id"] = None
    expected["all"] = (envelope(db, **everything), "INVALID_DISBURSEMENT_ENVELOPE_ID")
    intake(db)
    wrong = {k: (result(db, ENV, sid), code) for k, (sid, code) in expected.items()
             if result(db, ENV, sid) != ("REJECTED", code)}
    assert not wrong, wrong
    assert count_rows(db, "bridge.disbursement_envelope") == 1
    assert_all_final(db)


# ================================================================================================================
# Disbursements: rules 1-8
# ================================================================================================================

def test_disbursement_accepted(db):
    ready_envelope(db)
    sid = disbursement(db, "D1", amount="100.00")
    summary = intake(db)
    assert_accepted(db, DISB, sid, "accepted")
    row = db.execute(
        "SELECT disbursement_envelope_id, mis_reference_number, beneficiary_id, beneficiary_name, disbursement_amount, "
        "narrative, disbursement_status, source_staging_id FROM bridge.disbursement").fetchall()
    assert row == [("ENV-1", "MIS-D1", "account:D1@EXAMPLE", "Beneficiary D1", Decimal("100.00"),
                    "December cash transfer", "RECEIVED", sid)]
    assert received(db) == (1, Decimal("100.00"))
    assert summary.accepted == {DISB: 1}


def test_disbursement_rule1_disbursement_id(db):
    ready_envelope(db)
    cases = {repr(v): (disbursement(db, v), "INVALID_DISBURSEMENT_ID") for v in (None, "", "  ", "D" * 65)}
    cases["64 characters"] = (disbursement(db, "D" * 64), None)
    intake(db)
    assert_results(db, DISB, cases)
    assert received(db) == (1, Decimal("100.00"))


def test_disbursement_rule2_envelope_not_found(db):
    ready_envelope(db)
    envelope(db, "ENV-REJECTED", cycle_code_mnemonic=None)
    intake(db)
    cases = {repr(e): (disbursement(db, f"D{n}", e), "DISBURSEMENT_ENVELOPE_NOT_FOUND")
             for n, e in enumerate((None, "", "NOPE", "env-1", "ENV-1 ", "ENV-REJECTED"))}
    intake(db)
    assert_results(db, DISB, cases)
    assert count_rows(db, "bridge.disbursement") == 0


def test_disbursement_rule2_envelope_cancelled(db):
    ready_envelope(db)
    cancel_envelope(db)
    intake(db)
    sid = disbursement(db, "D1")
    intake(db)
    assert_rejected(db, DISB, sid, "DISBURSEMENT_ENVELOPE_ALREADY_CANCELED", "ENV-1")
    assert count_rows(db, "bridge.disbursement") == 0


def test_disbursement_rule3_envelope_already_being_disbursed(db):
    ready_envelope(db)
    accepted = disbursement(db, "D1")
    intake(db)
    start_disbursing(db)
    late = disbursement(db, "D2")
    intake(db)
    assert_accepted(db, DISB, accepted)
    assert_rejected(db, DISB, late, "DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED", "ENV-1")
    assert received(db) == (1, Decimal("100.00"))


RULE4 = [("beneficiary_id", "INVALID_BENEFICIARY_ID"), ("beneficiary_name", "INVALID_BENEFICIARY_NAME"),
         ("narrative", "INVALID_NARRATIVE")]


@pytest.mark.parametrize("field, code", RULE4, ids=[f for f, _ in RULE4])
def test_disbursement_rule4_beneficiary_and_narrative(db, field, code):
    """Present (not blank) and at most 256 characters (characters, not bytes)."""
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=100)
    cases = {repr(v)[:20]: (disbursement(db, f"D{n}", amount="1.00", **{field: v}), code)
             for n, v in enumerate((None, "", "   ", "x" * 257, "é" * 257))}
    longest = "🙂" * 256  # 256 characters, 1024 bytes
    cases["256 emoji"] = (disbursement(db, "OK-256", amount="1.00", **{field: longest}), None)
    cases["1 character"] = (disbursement(db, "OK-1", amount="1.00", **{field: "x"}), None)
    intake(db)
    assert_results(db, DISB, cases)
    assert disbursement_field(db, "OK-256", field) == longest


def test_disbursement_rule4_order_beneficiary_id_name_narrative(db):
    ready_envelope(db)
    all_three = disbursement(db, "D1", beneficiary_id=None, beneficiary_name=None, narrative=None)
    name_narrative = disbursement(db, "D2", beneficiary_name="", narrative="")
    intake(db)
    assert_rejected(db, DISB, all_three, "INVALID_BENEFICIARY_ID")
    assert_rejected(db, DISB, name_narrative, "INVALID_BENEFICIARY_NAME")


def test_disbursement_rule5_amount(db):
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=100,
                   total_disbursement_amount=Decimal("1e17"))
    bad = [None, "0", "0.00", "-0.01", "-100", "1e18", "1e30", "100.001", "NaN", "Infinity", "-Infinity", "1e-30"]
    cases = {a: (disbursement(db, f"D{n}", disbursement_amount=None if a is None else Decimal(a)),
                 "INVALID_DISBURSEMENT_AMOUNT") for n, a in enumerate(bad)}
    cases["0.01"] = (disbursement(db, "OK-1", amount="0.01"), None)
    cases["just under 1e17"] = (disbursement(db, "OK-2", amount="99999999999999999.99"), None)
    intake(db)
    assert_results(db, DISB, cases)
    assert received(db) == (2, Decimal("1e17")) == recount(db)


def test_disbursement_rule6_conflicting_restaging_is_duplicate(db):
    ready_envelope(db)
    ready_envelope(db, "ENV-2")
    first = disbursement(db, "D1")
    intake(db)
    before = db.execute("SELECT * FROM bridge.disbursement").fetchall()
    changes = [
        ("disbursement_envelope_id", "ENV-2"), ("mis_reference_number", "MIS-OTHER"), ("mis_reference_number", None),
        ("beneficiary_id", "account:other@EXAMPLE"), ("beneficiary_name", "Someone Else"),
        ("disbursement_amount", Decimal("100.01")), ("narrative", "January cash transfer"),
        ("narrative", "December cash transfer "),
    ]
    cases = {f"{f}={v!r}": (disbursement(db, "D1", **{f: v}), "DUPLICATE_DISBURSEMENT_ID") for f, v in changes}
    summary = intake(db)
    assert_accepted(db, DISB, first)
    assert_results(db, DISB, cases)
    assert_rejected(db, DISB, cases["narrative='January cash transfer'"][0], "DUPLICATE_DISBURSEMENT_ID", "D1")
    assert db.execute("SELECT * FROM bridge.disbursement").fetchall() == before
    assert received(db, "ENV-1") == (1, Decimal("100.00"))
    assert received(db, "ENV-2") == (0, 0)
    assert summary.rejected_by_code == {"DUPLICATE_DISBURSEMENT_ID": len(changes)}


def test_disbursement_identical_restaging_is_accepted_noop(db):
    ready_envelope(db)
    first = disbursement(db, "D1")
    intake(db)
    before = db.execute("SELECT * FROM bridge.disbursement").fetchall()
    counters = received(db)
    again = disbursement(db, "D1")
    same_value_other_scale = disbursement(db, "D1", amount="100.0")
    summary = intake(db)
    assert_accepted(db, DISB, first, "disbursement accepted")
    assert_accepted(db, DISB, again, "duplicate")
    assert_accepted(db, DISB, same_value_other_scale, "duplicate")
    assert db.execute("SELECT * FROM bridge.disbursement").fetchall() == before
    assert received(db) == counters == (1, Decimal("100.00"))
    assert summary.accepted == {DISB: 2}


def test_disbursement_identical_restaging_accepted_even_when_envelope_now_started_or_cancelled(db):
    ready_envelope(db)
    ready_envelope(db, "ENV-2")
    disbursement(db, "D1")
    disbursement(db, "D2", "ENV-2")
    intake(db)
    start_disbursing(db, "ENV-1")
    cancel_envelope(db, "ENV-2")
    intake(db)
    again1 = disbursement(db, "D1")
    again2 = disbursement(db, "D2", "ENV-2")
    intake(db)
    assert_accepted(db, DISB, again1, "duplicate")
    assert_accepted(db, DISB, again2, "duplicate")
    assert disbursement_field(db, "D2", "disbursement_status") == "CANCELLED"


def test_disbursement_same_id_twice_in_one_batch(db):
    ready_envelope(db)
    first = disbursement(db, "D1")
    identical = disbursement(db, "D1")
    different = disbursement(db, "D1", amount="50.00")
    intake(db)
    assert_accepted(db, DISB, first, "disbursement accepted")
    assert_accepted(db, DISB, identical, "duplicate")
    assert_rejected(db, DISB, different, "DUPLICATE_DISBURSEMENT_ID")
    assert count_rows(db, "bridge.disbursement") == 1
    assert received(db) == (1, Decimal("100.00"))


def test_disbursement_same_id_rejected_then_corrected_in_one_batch(db):
    ready_envelope(db)
    bad = disbursement(db, "D1", beneficiary_name=None)
    good = disbursement(db, "D1")
    intake(db)
    assert_rejected(db, DISB, bad, "INVALID_BENEFICIARY_NAME")
    assert_accepted(db, DISB, good, "disbursement accepted")
    assert received(db) == (1, Decimal("100.00"))


def test_disbursements_staged_before_their_program_and_envelope_in_same_batch(db):
    d1 = disbursement(db, "D1")
    d2 = disbursement(db, "D2")
    e = envelope(db)
    p = program(db)
    d3 = disbursement(db, "D3")
    intake(db)
    for table, sid in ((PROG, p), (ENV, e), (DISB, d1), (DISB, d2), (DISB, d3)):
        assert_accepted(db, table, sid)
    assert received(db) == (3, Decimal("300.00"))


# --- running caps (rules 7-8) ------------------------------------------------------------------------------------

def test_cap_count_exact_boundary_and_later_rows_rejected(db):
    ready_envelope(db, number_of_beneficiaries=3, number_of_disbursements=3,
                   total_disbursement_amount=Decimal("1000.00"))
    ok = [disbursement(db, f"D{i}", amount="10.00") for i in range(1, 4)]
    over = disbursement(db, "D4", amount="10.00")
    later = disbursement(db, "D5", amount="10.00")
    summary = intake(db)
    for sid in ok:
        assert_accepted(db, DISB, sid)
    assert_rejected(db, DISB, over, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED", "3")
    assert_rejected(db, DISB, later, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED")
    assert received(db) == (3, Decimal("30.00")) == recount(db)
    assert summary.rejected_by_code == {"NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED": 2}


def test_cap_amount_exact_boundary(db):
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=10,
                   total_disbursement_amount=Decimal("300.00"))
    ok = [disbursement(db, f"D{i}", amount=a) for i, a in enumerate(["100.00", "150.00", "50.00"], 1)]
    over = disbursement(db, "D4", amount="0.01")
    intake(db)
    for sid in ok:
        assert_accepted(db, DISB, sid)
    assert_rejected(db, DISB, over, "TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED", "300.01")
    assert received(db) == (3, Decimal("300.00"))


def test_cap_amount_first_overshoot_and_every_later_row_of_the_run_rejected(db):
    """Cumulative in staging_id order: the row that overshoots by 0.01 and every later row of the envelope in the
    same run are rejected, even a later row that would still fit; another envelope is unaffected; the next run
    starts again from what was received."""
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=10,
                   total_disbursement_amount=Decimal("300.00"))
    ready_envelope(db, "ENV-2")
    a = disbursement(db, "D1", amount="100.00")
    b = disbursement(db, "D2", amount="100.00")
    over = disbursement(db, "D3", amount="100.01")
    other_envelope = disbursement(db, "X1", "ENV-2", amount="100.00")
    fits_but_later = disbursement(db, "D4", amount="50.00")
    intake(db)
    assert_accepted(db, DISB, a)
    assert_accepted(db, DISB, b)
    assert_rejected(db, DISB, over, "TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED")
    assert_rejected(db, DISB, fits_but_later, "TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED")
    assert_accepted(db, DISB, other_envelope)
    assert received(db) == (2, Decimal("200.00"))
    next_run = disbursement(db, "D4", amount="50.00")
    intake(db)
    assert_accepted(db, DISB, next_run, "disbursement accepted")
    assert received(db) == (3, Decimal("250.00")) == recount(db)


def test_cap_count_checked_before_amount(db):
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=1,
                   total_disbursement_amount=Decimal("100.00"))
    ok = disbursement(db, "D1", amount="100.00")
    both = disbursement(db, "D2", amount="100.00")
    intake(db)
    assert_accepted(db, DISB, ok)
    assert_rejected(db, DISB, both, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED")


def test_cap_counts_what_previous_runs_received(db):
    ready_envelope(db)
    first = [disbursement(db, f"D{i}") for i in (1, 2)]
    intake(db)
    third = disbursement(db, "D3")
    fourth = disbursement(db, "D4", amount="0.01")
    intake(db)
    for sid in first + [third]:
        assert_accepted(db, DISB, sid)
    assert_rejected(db, DISB, fourth, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED")
    assert received(db) == (3, Decimal("300.00"))


def test_cap_ignores_rejected_rows_and_noop_duplicates(db):
    """Only rows that pass rules 1-6 (and are new) count towards the caps."""
    ready_envelope(db)
    d1 = disbursement(db, "D1")
    intake(db)
    dup = disbursement(db, "D1")              # identical: no-op, not counted
    bad = disbursement(db, "D2", narrative="")  # rule 4: not counted
    conflict = disbursement(db, "D1", amount="1.00")  # rule 6: not counted
    d3 = disbursement(db, "D3")
    d4 = disbursement(db, "D4")
    intake(db)
    assert_accepted(db, DISB, d1)
    assert_accepted(db, DISB, dup, "duplicate")
    assert_rejected(db, DISB, bad, "INVALID_NARRATIVE")
    assert_rejected(db, DISB, conflict, "DUPLICATE_DISBURSEMENT_ID")
    assert_accepted(db, DISB, d3)
    assert_accepted(db, DISB, d4)
    assert received(db) == (3, Decimal("300.00")) == recount(db)


def test_cap_restaged_id_in_later_wave_after_overshoot_is_rejected(db):
    """A corrected re-staging of the row that overshot, in the same batch, is a later row of the envelope in the
    same run: rejected too (the running caps close the envelope for the rest of the run)."""
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=10,
                   total_disbursement_amount=Decimal("300.00"))
    a = disbursement(db, "D1", amount="100.00")
    over = disbursement(db, "D2", amount="250.00")
    corrected = disbursement(db, "D2", amount="50.00")
    intake(db)
    assert_accepted(db, DISB, a)
    assert_rejected(db, DISB, over, "TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED")
    assert_rejected(db, DISB, corrected, "TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED", "earlier in this intake run")
    assert received(db) == (1, Decimal("100.00"))


def test_cap_count_restaged_ids_after_overshoot(db):
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=2,
                   total_disbursement_amount=Decimal("1000.00"))
    a = disbursement(db, "D1")
    b = disbursement(db, "D2")
    over = disbursement(db, "D3")
    a_again = disbursement(db, "D1")            # wave 2, identical: still an accepted no-op
    over_again = disbursement(db, "D3", amount="1.00")  # wave 2, after the breach
    intake(db)
    assert_accepted(db, DISB, a)
    assert_accepted(db, DISB, b)
    assert_rejected(db, DISB, over, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED")
    assert_accepted(db, DISB, a_again, "duplicate")
    assert_rejected(db, DISB, over_again, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED", "would be number 3")
    assert received(db) == (2, Decimal("200.00")) == recount(db)


@pytest.mark.xfail(strict=True, reason=(
    "known gap, reported: a re-staged id (second occurrence in the batch) is capped in wave 2, after the first "
    "occurrences of wave 1, not at its staging_id position; only matters when the envelope overflows in the run"))
def test_cap_order_with_an_id_restaged_in_the_same_batch(db):
    """Contract: the running caps are cumulative in staging_id order over rows that passed rules 1-6, as if one by
    one. D1 is first rejected (bad name) then re-staged correctly before D2 and D3; the envelope has room for two."""
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=2,
                   total_disbursement_amount=Decimal("1000.00"))
    bad = disbursement(db, "D1", beneficiary_name=None)
    corrected = disbursement(db, "D1")
    d2 = disbursement(db, "D2")
    d3 = disbursement(db, "D3")
    intake(db)
    assert_rejected(db, DISB, bad, "INVALID_BENEFICIARY_NAME")
    assert_accepted(db, DISB, corrected)
    assert_accepted(db, DISB, d2)
    assert_rejected(db, DISB, d3, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED")


# Breakers for the disbursement rules (envelopes set up by the test below).
DISBURSEMENT_BREAKERS = {
    "1": ("INVALID_DISBURSEMENT_ID", dict(disbursement_id=None)),
    "2a": ("DISBURSEMENT_ENVELOPE_NOT_FOUND", dict(envelope_id="NOPE")),
    "2b": ("DISBURSEMENT_ENVELOPE_ALREADY_CANCELED", dict(envelope_id="ENV-CANCELLED")),
    "3": ("DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED", dict(envelope_id="ENV-STARTED")),
    "4a": ("INVALID_BENEFICIARY_ID", dict(beneficiary_id="")),
    "4b": ("INVALID_BENEFICIARY_NAME", dict(beneficiary_name=None)),
    "4c": ("INVALID_NARRATIVE", dict(narrative="x" * 300)),
    "5": ("INVALID_DISBURSEMENT_AMOUNT", dict(amount="-1")),
    "6": ("DUPLICATE_DISBURSEMENT_ID", dict(disbursement_id="D-EXISTING")),
    "7": ("NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED", dict(envelope_id="ENV-FULL-COUNT")),
    "8": ("TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED", dict(envelope_id="ENV-FULL-AMOUNT")),
}


def test_disbursement_first_broken_rule_wins(db):
    """For every pair of rules (on different columns), a row breaking both gets the earlier rule's code."""
    program(db)
    for env_id, declared in (("ENV-1", {}), ("ENV-CANCELLED", {}), ("ENV-STARTED", {}),
                             ("ENV-FULL-COUNT", dict(number_of_beneficiaries=1, number_of_disbursements=1)),
                             ("ENV-FULL-AMOUNT", dict(total_disbursement_amount=Decimal("100.00")))):
        envelope(db, env_id, **declared)
    disbursement(db, "D-EXISTING", "ENV-1", mis_reference_number="ORIGINAL")
    disbursement(db, "D-FULL-COUNT", "ENV-FULL-COUNT", amount="1.00")
    disbursement(db, "D-FULL-AMOUNT", "ENV-FULL-AMOUNT", amount="100.00")
    cancel_envelope(db, "ENV-CANCELLED")
    intake(db)
    start_disbursing(db, "ENV-STARTED")
    order = list(DISBURSEMENT_BREAKERS)
    expected = {}
    for n, i in enumerate(order):
        for j in order[n + 1:]:
            a, b = DISBURSEMENT_BREAKERS[i][1], DISBURSEMENT_BREAKERS[j][1]
            if set(a) & set(b):
                continue  # both rules live in the same column
            values = dict(disbursement_id=f"P-{i}-{j}", envelope_id="ENV-1")
            values.update(a)
            values.update(b)
            expected[(i, j)] = (disbursement(db, values.pop("disbursement_id"), values.pop("envelope_id"), **values),
                                DISBURSEMENT_BREAKERS[i][0])
        values = dict(disbursement_id=f"P-{i}", envelope_id="ENV-1")
        values.update(DISBURSEMENT_BREAKERS[i][1])
        expected[(i,)] = (disbursement(db, values.pop("disbursement_id"), values.pop("envelope_id"), **values),
                          DISBURSEMENT_BREAKERS[i][0])
    intake(db)
    wrong = {k: (result(db, DISB, sid), code) for k, (sid, code) in expected.items()
             if result(db, DISB, sid) != ("REJECTED", code)}
    assert not wrong, wrong
    assert len(expected) > 40
    assert count_rows(db, "bridge.disbursement") == 3
    assert_all_final(db)


# --- currencies: ISO 4217 minor units, min_scale (trailing zeros do not count) --------------------------------------

MINOR_UNIT_CASES = [
    ("JPY", "100", True), ("JPY", "100.0", True), ("JPY", "100.5", False), ("JPY", "0.5", False),
    ("USD", "100.5", True), ("USD", "100.50", True), ("USD", "100.500", True), ("USD", "100.505", False),
    ("USD", "0.001", False),
    ("KWD", "1.234", True), ("KWD", "1.2340", True), ("KWD", "1.2345", False), ("KWD", "1", True),
]


def test_minor_units_envelope_total(db):
    for currency in ("JPY", "USD", "KWD"):
        program(db, currency, currency=currency)
    cases = {}
    for n, (currency, amount, ok) in enumerate(MINOR_UNIT_CASES):
        cases[f"{amount} {currency}"] = (
            envelope(db, f"ENV-{n}", currency, disbursement_currency_code=currency,
                     total_disbursement_amount=Decimal(amount)),
            None if ok else "INVALID_TOTAL_DISBURSEMENT_AMOUNT")
    intake(db)
    assert_results(db, ENV, cases)
    assert_rejected(db, ENV, cases["100.5 JPY"][0], "INVALID_TOTAL_DISBURSEMENT_AMOUNT", "0 decimals for JPY")
    for n, (currency, amount, ok) in enumerate(MINOR_UNIT_CASES):
        if ok:  # stored exactly as staged, value and scale
            assert str(envelope_field(db, f"ENV-{n}", "total_disbursement_amount")) == amount


def test_minor_units_disbursement_amount(db):
    for currency in ("JPY", "USD", "KWD"):
        ready_envelope(db, f"ENV-{currency}", currency, currency=currency, number_of_beneficiaries=1,
                       number_of_disbursements=100, total_disbursement_amount=Decimal("1000"))
    cases = {}
    for n, (currency, amount, ok) in enumerate(MINOR_UNIT_CASES):
        cases[f"{amount} {currency}"] = (disbursement(db, f"D{n}", f"ENV-{currency}", amount=amount),
                                         None if ok else "INVALID_DISBURSEMENT_AMOUNT")
    intake(db)
    assert_results(db, DISB, cases)
    assert_rejected(db, DISB, cases["1.2345 KWD"][0], "INVALID_DISBURSEMENT_AMOUNT", "3 decimals for KWD")
    for n, (currency, amount, ok) in enumerate(MINOR_UNIT_CASES):
        if ok:
            assert str(disbursement_field(db, f"D{n}", "disbursement_amount")) == amount
    for currency in ("JPY", "USD", "KWD"):
        assert received(db, f"ENV-{currency}") == recount(db, f"ENV-{currency}")
    assert received(db, "ENV-KWD") == (3, Decimal("1.234") + Decimal("1.2340") + 1)


# ================================================================================================================
# Amendments
# ================================================================================================================

def test_amendment_changes_given_fields_and_keeps_absent_ones(db):
    ready_envelope(db)
    new_date = SCHEDULE_DATE + timedelta(days=7)
    a1 = amendment(db, number_of_disbursements=5)
    a2 = amendment(db, total_disbursement_amount=Decimal("450.00"), disbursement_schedule_date=new_date)
    a3 = amendment(db, number_of_beneficiaries=4)
    a4 = amendment(db)  # nothing given: nothing changes
    intake(db)
    for sid in (a1, a2, a3, a4):
        assert_accepted(db, AMD, sid, "amended")
    assert db.execute(
        "SELECT number_of_beneficiaries, number_of_disbursements, total_disbursement_amount, "
        "disbursement_schedule_date, disbursement_frequency, cycle_code_mnemonic "
        "FROM bridge.disbursement_envelope").fetchone() == (4, 5, Decimal("450.00"), new_date, "Monthly", "2026-12")
    assert count_rows(db, "bridge.envelope_event", "event_type = 'AMENDED'") == 4


def test_amendment_invalid_envelope_id(db):
    ready_envelope(db)
    cases = {repr(e): (amendment(db, e, number_of_disbursements=5), "INVALID_DISBURSEMENT_ENVELOPE_ID")
             for e in (None, "", "E" * 65)}
    intake(db)
    assert_results(db, AMD, cases)


def test_amendment_envelope_not_found(db):
    ready_envelope(db)
    envelope(db, "ENV-REJECTED", number_of_beneficiaries=0)
    intake(db)
    unknown = amendment(db, "NOPE", number_of_disbursements=5)
    rejected = amendment(db, "ENV-REJECTED", number_of_beneficiaries=1)
    intake(db)
    assert_rejected(db, AMD, unknown, "DISBURSEMENT_ENVELOPE_NOT_FOUND")
    assert_rejected(db, AMD, rejected, "DISBURSEMENT_ENVELOPE_NOT_FOUND")


def test_amendment_envelope_cancelled(db):
    ready_envelope(db)
    cancel_envelope(db)
    intake(db)
    start_disbursing(db)  # cancelled comes first in the rule order
    sid = amendment(db, number_of_disbursements=5)
    intake(db)
    assert_rejected(db, AMD, sid, "DISBURSEMENT_ENVELOPE_ALREADY_CANCELED")


def test_amendment_envelope_already_being_disbursed(db):
    ready_envelope(db)
    start_disbursing(db)
    sid = amendment(db, number_of_disbursements=5)
    intake(db)
    assert_rejected(db, AMD, sid, "DISBURSEMENT_ENVELOPE_DATE_PASSED")
    assert envelope_field(db, "ENV-1", "number_of_disbursements") == 3


def test_amendment_schedule_date_reached(db):
    """An envelope whose schedule date is on or before the business date can no longer be amended."""
    program(db)
    offsets = ((-1, False), (0, False), (1, True))
    for days, _ in offsets:
        envelope(db, f"ENV{days}", disbursement_schedule_date=BUSINESS_DATE + timedelta(days=days))
    intake(db, business_date=BUSINESS_DATE - timedelta(days=5))  # accepted a few days ago
    cases = {days: (amendment(db, f"ENV{days}", number_of_disbursements=5),
                    None if ok else "DISBURSEMENT_ENVELOPE_DATE_PASSED") for days, ok in offsets}
    intake(db)
    assert_results(db, AMD, cases)
    assert_rejected(db, AMD, cases[0][0], "DISBURSEMENT_ENVELOPE_DATE_PASSED", str(BUSINESS_DATE))


AMENDMENT_REJECTIONS = [
    (dict(number_of_beneficiaries=0), "INVALID_NO_OF_BENEFICIARIES"),
    (dict(number_of_beneficiaries=-3, number_of_disbursements=-3), "INVALID_NO_OF_BENEFICIARIES"),
    (dict(number_of_disbursements=2), "INVALID_NO_OF_DISBURSEMENTS"),
    (dict(number_of_beneficiaries=4), "INVALID_NO_OF_DISBURSEMENTS"),  # absent disbursements keep 3 < 4
    (dict(number_of_beneficiaries=5, number_of_disbursements=4), "INVALID_NO_OF_DISBURSEMENTS"),
    (dict(total_disbursement_amount=Decimal("0")), "INVALID_TOTAL_DISBURSEMENT_AMOUNT"),
    (dict(total_disbursement_amount=Decimal("-1")), "INVALID_TOTAL_DISBURSEMENT_AMOUNT"),
    (dict(total_disbursement_amount=Decimal("300.001")), "INVALID_TOTAL_DISBURSEMENT_AMOUNT"),
    (dict(total_disbursement_amount=Decimal("1e18")), "INVALID_TOTAL_DISBURSEMENT_AMOUNT"),
    (dict(total_disbursement_amount=Decimal("NaN")), "INVALID_TOTAL_DISBURSEMENT_AMOUNT"),
    (dict(disbursement_schedule_date=BUSINESS_DATE), "INVALID_DISBURSEMENT_SCHEDULE_DATE"),
    (dict(disbursement_schedule_date=BUSINESS_DATE - timedelta(days=1)), "INVALID_DISBURSEMENT_SCHEDULE_DATE"),
    (dict(disbursement_schedule_date="infinity"), "INVALID_DISBURSEMENT_SCHEDULE_DATE"),
    (dict(number_of_beneficiaries=0, total_disbursement_amount=Decimal("-1"),
          disbursement_schedule_date=BUSINESS_DATE), "INVALID_NO_OF_BENEFICIARIES"),
    (dict(number_of_disbursements=2, total_disbursement_amount=Decimal("-1")), "INVALID_NO_OF_DISBURSEMENTS"),
    (dict(total_disbursement_amount=Decimal("0"), disbursement_schedule_date=BUSINESS_DATE),
     "INVALID_TOTAL_DISBURSEMENT_AMOUNT"),
]


def test_amendment_envelope_rules_on_new_values(db):
    ready_envelope(db)
    before = envelope_row(db, "ENV-1")
    cases = {repr(v): (amendment(db, **v), code) for v, code in AMENDMENT_REJECTIONS}
    intake(db)
    assert_results(db, AMD, cases)
    assert envelope_row(db, "ENV-1") == before
    assert count_rows(db, "bridge.envelope_event") == 0


def test_amendment_schedule_date_vs_business_date_plus_sla(db):
    ready_envelope(db, disbursement_schedule_date=BUSINESS_DATE + timedelta(days=30))
    ready_envelope(db, "ENV-2", disbursement_schedule_date=BUSINESS_DATE + timedelta(days=30))
    equal = amendment(db, disbursement_schedule_date=BUSINESS_DATE + timedelta(days=5))
    after = amendment(db, "ENV-2", disbursement_schedule_date=BUSINESS_DATE + timedelta(days=6))
    run_intake(db, BUSINESS_DATE, 5)
    assert_rejected(db, AMD, equal, "INVALID_DISBURSEMENT_SCHEDULE_DATE")
    assert_accepted(db, AMD, after)
    assert envelope_field(db, "ENV-2", "disbursement_schedule_date") == BUSINESS_DATE + timedelta(days=6)


def test_amendment_schedule_date_rule_only_when_a_new_date_is_given(db):
    """The envelope is due within the SLA window; an amendment that does not move the date is still accepted."""
    ready_envelope(db, disbursement_schedule_date=BUSINESS_DATE + timedelta(days=2))
    sid = amendment(db, number_of_disbursements=4)
    run_intake(db, BUSINESS_DATE, 5)
    assert_accepted(db, AMD, sid)
    assert envelope_field(db, "ENV-1", "disbursement_schedule_date") == BUSINESS_DATE + timedelta(days=2)


def test_amendment_never_below_received(db):
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=3)
    disbursement(db, "D1", amount="100.00")
    disbursement(db, "D2", amount="50.00")
    intake(db)
    below_count = amendment(db, number_of_disbursements=1)
    below_total = amendment(db, total_disbursement_amount=Decimal("149.99"))
    intake(db)
    assert_rejected(db, AMD, below_count, "INVALID_NO_OF_DISBURSEMENTS", "received")
    assert_rejected(db, AMD, below_total, "INVALID_TOTAL_DISBURSEMENT_AMOUNT", "received")
    exact = amendment(db, number_of_disbursements=2, total_disbursement_amount=Decimal("150.00"))
    intake(db)
    assert_accepted(db, AMD, exact)
    view = db.execute("SELECT all_disbursements_received FROM bridge.envelope_status").fetchone()
    assert view == (True,)


def test_amended_values_used_by_the_caps(db):
    ready_envelope(db)  # 3 disbursements, 300.00
    [disbursement(db, f"D{i}") for i in (1, 2, 3)]
    intake(db)
    # Amendments are processed before disbursements in a run: a batch with both uses the amended values.
    amendment(db, number_of_disbursements=5, total_disbursement_amount=Decimal("450.00"))
    d4 = disbursement(db, "D4")
    d5 = disbursement(db, "D5", amount="50.00")
    d6 = disbursement(db, "D6", amount="0.01")
    intake(db)
    assert_accepted(db, DISB, d4)
    assert_accepted(db, DISB, d5)
    assert_rejected(db, DISB, d6, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED", "5")
    # Lowering the declared total to what was received closes the envelope for new amounts.
    amendment(db, number_of_disbursements=6, total_disbursement_amount=Decimal("450.00"))
    d7 = disbursement(db, "D7", amount="0.01")
    intake(db)
    assert_rejected(db, DISB, d7, "TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED", "450")
    assert received(db) == (5, Decimal("450.00")) == recount(db)


def test_amendments_of_one_envelope_in_one_batch_are_taken_one_by_one(db):
    ready_envelope(db)  # 3 beneficiaries, 3 disbursements
    raise_disbursements = amendment(db, number_of_disbursements=6)
    raise_beneficiaries = amendment(db, number_of_beneficiaries=6)  # valid only after the first
    too_many = amendment(db, number_of_beneficiaries=7)
    intake(db)
    assert_accepted(db, AMD, raise_disbursements)
    assert_accepted(db, AMD, raise_beneficiaries)
    assert_rejected(db, AMD, too_many, "INVALID_NO_OF_DISBURSEMENTS")
    assert db.execute("SELECT number_of_beneficiaries, number_of_disbursements FROM bridge.disbursement_envelope"
                      ).fetchone() == (6, 6)


def test_amendment_makes_identical_restaging_of_the_original_a_duplicate(db):
    """Documented behaviour: identity is against the envelope's current (amended) content, so re-staging the
    original envelope after an amendment is DUPLICATE_DISBURSEMENT_ENVELOPE_ID; re-staging the amended content is an
    accepted no-op."""
    ready_envelope(db)
    original = envelope(db)
    intake(db)
    assert_accepted(db, ENV, original, "duplicate")
    amendment(db, number_of_disbursements=4)
    intake(db)
    original_again = envelope(db)
    amended_content = envelope(db, number_of_disbursements=4)
    intake(db)
    assert_rejected(db, ENV, original_again, "DUPLICATE_DISBURSEMENT_ENVELOPE_ID")
    assert_accepted(db, ENV, amended_content, "duplicate")


# ================================================================================================================
# Cancellations
# ================================================================================================================

def test_envelope_cancellation_cancels_its_disbursements_with_events(db):
    ready_envelope(db)
    ready_envelope(db, "ENV-2")
    for i in (1, 2, 3):
        disbursement(db, f"D{i}")
    disbursement(db, "X1", "ENV-2")
    intake(db)
    cancel_disbursement(db, "D3")  # cancelled on its own first: not cancelled twice
    intake(db)
    events_before = count_rows(db, "bridge.disbursement_event")
    sid = cancel_envelope(db)
    summary = intake(db)
    assert_accepted(db, ECAN, sid, "cancelled")
    assert summary.accepted == {ECAN: 1}
    assert db.execute("SELECT cancellation_status, cancellation_timestamp IS NOT NULL "
                      "FROM bridge.disbursement_envelope "
                      "WHERE disbursement_envelope_id = 'ENV-1'").fetchone() == ("CANCELLED", True)
    assert db.execute("SELECT disbursement_id, disbursement_status, status_reason_code, cancelled_at IS NOT NULL "
                      "FROM bridge.disbursement ORDER BY 1").fetchall() == [
        ("D1", "CANCELLED", "ENVELOPE_CANCELLED", True), ("D2", "CANCELLED", "ENVELOPE_CANCELLED", True),
        ("D3", "CANCELLED", "CANCELLED_BY_PBMS", True), ("X1", "RECEIVED", None, False)]
    events = db.execute("SELECT disbursement_id, disbursement_envelope_id, from_status, to_status, reason_code "
                        "FROM bridge.disbursement_event WHERE event_id > %s ORDER BY 1", (events_before,)).fetchall()
    assert events == [("D1", "ENV-1", "RECEIVED", "CANCELLED", "ENVELOPE_CANCELLED"),
                      ("D2", "ENV-1", "RECEIVED", "CANCELLED", "ENVELOPE_CANCELLED")]
    assert count_rows(db, "bridge.envelope_event",
                      "event_type = 'CANCELLED' AND disbursement_envelope_id = 'ENV-1'") == 1
    assert envelope_field(db, "ENV-2", "cancellation_status") == "NOT_CANCELLED"


def test_envelope_cancellation_twice(db):
    ready_envelope(db)
    first = cancel_envelope(db)
    same_batch = cancel_envelope(db)
    intake(db)
    later = cancel_envelope(db)
    intake(db)
    assert_accepted(db, ECAN, first)
    assert_rejected(db, ECAN, same_batch, "DISBURSEMENT_ENVELOPE_ALREADY_CANCELED", "ENV-1")
    assert_rejected(db, ECAN, later, "DISBURSEMENT_ENVELOPE_ALREADY_CANCELED")
    assert count_rows(db, "bridge.envelope_event", "event_type = 'CANCELLED'") == 1


def test_envelope_cancellation_unknown_or_invalid(db):
    ready_envelope(db)
    envelope(db, "ENV-REJECTED", number_of_beneficiaries=0)
    intake(db)
    unknown = cancel_envelope(db, "NOPE")
    rejected_envelope = cancel_envelope(db, "ENV-REJECTED")
    empty = cancel_envelope(db, None)
    too_long = cancel_envelope(db, "E" * 65)
    intake(db)
    assert_rejected(db, ECAN, unknown, "DISBURSEMENT_ENVELOPE_NOT_FOUND")
    assert_rejected(db, ECAN, rejected_envelope, "DISBURSEMENT_ENVELOPE_NOT_FOUND")
    assert_rejected(db, ECAN, empty, "INVALID_DISBURSEMENT_ENVELOPE_ID")
    assert_rejected(db, ECAN, too_long, "INVALID_DISBURSEMENT_ENVELOPE_ID")


def test_envelope_cancellation_in_same_batch_as_envelope_and_disbursements(db):
    """Cancellations come last in a run: the envelope and its disbursements are accepted, then cancelled."""
    cancellation = cancel_envelope(db)
    program(db)
    envelope(db)
    d1 = disbursement(db, "D1")
    intake(db)
    assert_accepted(db, ECAN, cancellation)
    assert_accepted(db, DISB, d1)
    assert disbursement_field(db, "D1", "disbursement_status") == "CANCELLED"


def test_disbursement_cancellation_gives_back_count_and_amount(db):
    ready_envelope(db)
    for i in (1, 2, 3):
        disbursement(db, f"D{i}")
    intake(db)
    refused = disbursement(db, "D4", amount="80.00")
    intake(db)
    assert_rejected(db, DISB, refused, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED")
    sid = cancel_disbursement(db, "D2")
    intake(db)
    assert_accepted(db, DCAN, sid, "cancelled")
    assert received(db) == (2, Decimal("200.00")) == recount(db)
    assert db.execute("SELECT disbursement_status, status_reason_code FROM bridge.disbursement "
                      "WHERE disbursement_id = 'D2'").fetchone() == ("CANCELLED", "CANCELLED_BY_PBMS")
    assert db.execute("SELECT from_status, to_status, reason_code FROM bridge.disbursement_event "
                      "WHERE disbursement_id = 'D2'").fetchall() == [("RECEIVED", "CANCELLED", "CANCELLED_BY_PBMS")]
    # A replacement (new id) now fits within the caps; one more does not.
    replacement = disbursement(db, "D2-R", amount="100.00")
    one_more = disbursement(db, "D5", amount="0.01")
    intake(db)
    assert_accepted(db, DISB, replacement)
    assert_rejected(db, DISB, one_more, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED")
    assert received(db) == (3, Decimal("300.00")) == recount(db)


def test_disbursement_cancellation_and_replacement_in_same_batch(db):
    """Documented behaviour: within one run disbursements are processed before cancellations, so a replacement
    staged in the same batch as the cancellation meets a full envelope; PBMS re-stages it after the cancellation
    is ACCEPTED."""
    ready_envelope(db)
    for i in (1, 2, 3):
        disbursement(db, f"D{i}")
    intake(db)
    cancellation = cancel_disbursement(db, "D2")
    replacement = disbursement(db, "D2-R")
    intake(db)
    assert_accepted(db, DCAN, cancellation)
    assert_rejected(db, DISB, replacement, "NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED")
    again = disbursement(db, "D2-R")
    intake(db)
    assert_accepted(db, DISB, again, "disbursement accepted")


def test_disbursement_cancellation_codes(db):
    ready_envelope(db)
    ready_envelope(db, "ENV-2")
    ready_envelope(db, "ENV-3")
    disbursement(db, "D1")
    disbursement(db, "D2")
    disbursement(db, "S1", "ENV-2")
    disbursement(db, "C1", "ENV-3")
    intake(db)
    start_disbursing(db, "ENV-2")
    cancel_envelope(db, "ENV-3")
    intake(db)
    rejected_disbursement = disbursement(db, "BAD", beneficiary_id=None)
    intake(db)
    unknown = cancel_disbursement(db, "NOPE")
    null = cancel_disbursement(db, None)
    never_accepted = cancel_disbursement(db, "BAD")
    ok = cancel_disbursement(db, "D1")
    twice_same_batch = cancel_disbursement(db, "D1")
    started = cancel_disbursement(db, "S1")
    envelope_cancelled = cancel_disbursement(db, "C1")
    intake(db)
    twice_later = cancel_disbursement(db, "D1")
    intake(db)
    assert_rejected(db, DISB, rejected_disbursement, "INVALID_BENEFICIARY_ID")
    assert_rejected(db, DCAN, unknown, "INVALID_DISBURSEMENT_ID", "NOPE")
    assert_rejected(db, DCAN, null, "INVALID_DISBURSEMENT_ID")
    assert_rejected(db, DCAN, never_accepted, "INVALID_DISBURSEMENT_ID")
    assert_accepted(db, DCAN, ok)
    assert_rejected(db, DCAN, twice_same_batch, "DISBURSEMENT_ALREADY_CANCELED", "D1")
    assert_rejected(db, DCAN, started, "DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED", "ENV-2")
    assert_rejected(db, DCAN, envelope_cancelled, "DISBURSEMENT_ALREADY_CANCELED")
    assert_rejected(db, DCAN, twice_later, "DISBURSEMENT_ALREADY_CANCELED")
    assert received(db, "ENV-1") == (1, Decimal("100.00")) == recount(db, "ENV-1")
    assert received(db, "ENV-2") == (1, Decimal("100.00"))
    assert count_rows(db, "bridge.disbursement_event", "disbursement_id = 'D1'") == 1
    assert disbursement_field(db, "S1", "disbursement_status") == "RECEIVED"


def test_cancelled_disbursement_id_cannot_be_reused(db):
    """Documented behaviour: ids are idempotency keys for good. An identical re-staging of a cancelled disbursement is
    an accepted no-op (it stays CANCELLED and does not count); the same id with new content is a duplicate."""
    ready_envelope(db)
    disbursement(db, "D1")
    intake(db)
    cancel_disbursement(db, "D1")
    intake(db)
    identical = disbursement(db, "D1")
    changed = disbursement(db, "D1", amount="90.00")
    intake(db)
    assert_accepted(db, DISB, identical, "duplicate")
    assert_rejected(db, DISB, changed, "DUPLICATE_DISBURSEMENT_ID")
    assert disbursement_field(db, "D1", "disbursement_status") == "CANCELLED"
    assert received(db) == (0, 0)


# ================================================================================================================
# Programs
# ================================================================================================================

def program_row(conn, mnemonic="CASH"):
    return conn.execute("SELECT * FROM bridge.benefit_program_configuration WHERE benefit_program_mnemonic = %s",
                        (mnemonic,)).fetchone()


def test_program_created_and_canonical(db):
    sid = program(db, sponsor_bank_account_currency="usd", disbursement_currency_code=" usd ",
                  id_mapper_resolution_required=None)
    intake(db)
    assert_accepted(db, PROG, sid, "created")
    assert db.execute("SELECT benefit_program_name, sponsor_bank_account_currency, disbursement_currency_code, "
                      "id_mapper_resolution_required, source_staging_id FROM bridge.benefit_program_configuration"
                      ).fetchone() == ("CASH transfer", "USD", "USD", False, sid)


def test_program_identical_restaging_is_noop(db):
    program(db)
    intake(db)
    before = program_row(db)
    same = program(db)
    same_spelled = program(db, sponsor_bank_account_currency="usd", id_mapper_resolution_required=False)
    intake(db)
    assert_accepted(db, PROG, same, "nothing changed")
    assert_accepted(db, PROG, same_spelled, "nothing changed")
    assert program_row(db) == before


def test_program_identical_restaging_with_padded_account_number_is_noop_when_in_use(db):
    """The account number is stored trimmed; re-staging exactly the same row must still be an identical no-op."""
    program(db, sponsor_bank_account_number=" ACC-42 ")
    envelope(db)
    intake(db)
    assert program_row(db)[5] == "ACC-42"
    again = program(db, sponsor_bank_account_number=" ACC-42 ")
    renamed = program(db, sponsor_bank_account_number=" ACC-42 ", benefit_program_name="Renamed")
    intake(db)
    assert_accepted(db, PROG, again, "nothing changed")
    assert_accepted(db, PROG, renamed, "updated")


def test_program_update_of_name_accepted_even_in_use(db):
    ready_envelope(db)
    sid = program(db, benefit_program_name="Cash transfer (renamed)", funding_org_name="Treasury",
                  sponsor_bank_branch_code="002")
    intake(db)
    assert_accepted(db, PROG, sid, "updated")
    row = db.execute("SELECT benefit_program_name, funding_org_name, sponsor_bank_branch_code, source_staging_id "
                     "FROM bridge.benefit_program_configuration").fetchone()
    assert row == ("Cash transfer (renamed)", "Treasury", "002", sid)


MONEY_PATH_CHANGES = [
    dict(sponsor_bank_code="OTHERBANK"), dict(sponsor_bank_account_number="ACC-OTHER"),
    dict(sponsor_bank_account_currency="EUR"), dict(disbursement_currency_code="EUR"),
    dict(id_mapper_resolution_required=True),
]


def test_program_in_use_money_path_cannot_change(db):
    ready_envelope(db)
    before = program_row(db)
    cases = {repr(c): (program(db, **c), "PROGRAM_IN_USE") for c in MONEY_PATH_CHANGES}
    intake(db)
    assert_results(db, PROG, cases)
    assert_rejected(db, PROG, cases[repr(MONEY_PATH_CHANGES[0])][0], "PROGRAM_IN_USE", "CASH")
    assert program_row(db) == before


def test_program_without_envelopes_money_path_may_change(db):
    for n in range(len(MONEY_PATH_CHANGES)):
        program(db, f"P{n}")
    envelope(db, mnemonic="P0", number_of_beneficiaries=0)  # rejected: P0 still has no envelope
    intake(db)
    cases = {repr(c): (program(db, f"P{n}", **c), None) for n, c in enumerate(MONEY_PATH_CHANGES)}
    intake(db)
    assert_results(db, PROG, cases)
    assert program_row(db, "P1")[5] == "ACC-OTHER"


def test_program_in_use_even_when_its_envelope_is_cancelled(db):
    ready_envelope(db)
    cancel_envelope(db)
    intake(db)
    sid = program(db, sponsor_bank_account_number="ACC-NEW")
    intake(db)
    assert_rejected(db, PROG, sid, "PROGRAM_IN_USE")


PROGRAM_REJECTIONS = [
    (dict(mnemonic=None), "INVALID_PROGRAM_MNEMONIC"),
    (dict(mnemonic=""), "INVALID_PROGRAM_MNEMONIC"),
    (dict(mnemonic="  "), "INVALID_PROGRAM_MNEMONIC"),
    (dict(mnemonic="M" * 65), "INVALID_PROGRAM_MNEMONIC"),
    (dict(benefit_program_name=None), "INVALID_PROGRAM_NAME"),
    (dict(benefit_program_name=" "), "INVALID_PROGRAM_NAME"),
    (dict(sponsor_bank_code=None), "INVALID_SPONSOR_BANK_CODE"),
    (dict(sponsor_bank_code=""), "INVALID_SPONSOR_BANK_CODE"),
    (dict(sponsor_bank_account_number=None), "INVALID_SPONSOR_BANK_ACCOUNT_NUMBER"),
    (dict(sponsor_bank_account_number="   "), "INVALID_SPONSOR_BANK_ACCOUNT_NUMBER"),
    (dict(sponsor_bank_account_number="1" * 35), "INVALID_SPONSOR_BANK_ACCOUNT_NUMBER"),
    (dict(sponsor_bank_account_currency=None), "INVALID_SPONSOR_BANK_ACCOUNT_CURRENCY"),
    (dict(sponsor_bank_account_currency="XXX"), "INVALID_SPONSOR_BANK_ACCOUNT_CURRENCY"),
    (dict(sponsor_bank_account_currency="US"), "INVALID_SPONSOR_BANK_ACCOUNT_CURRENCY"),
    (dict(sponsor_bank_account_currency="USDD"), "INVALID_SPONSOR_BANK_ACCOUNT_CURRENCY"),
    (dict(disbursement_currency_code=None), "INVALID_DISBURSEMENT_CURRENCY_CODE"),
    (dict(disbursement_currency_code="EURO"), "INVALID_DISBURSEMENT_CURRENCY_CODE"),
    # first broken rule wins
    (dict(benefit_program_name=None, sponsor_bank_code=None, disbursement_currency_code="X"), "INVALID_PROGRAM_NAME"),
    (dict(sponsor_bank_code="", sponsor_bank_account_number=""), "INVALID_SPONSOR_BANK_CODE"),
    (dict(sponsor_bank_account_number="", sponsor_bank_account_currency="X"), "INVALID_SPONSOR_BANK_ACCOUNT_NUMBER"),
    (dict(sponsor_bank_account_currency="X", disbursement_currency_code="X"), "INVALID_SPONSOR_BANK_ACCOUNT_CURRENCY"),
    (dict(mnemonic=None, benefit_program_name=None), "INVALID_PROGRAM_MNEMONIC"),
]


def test_program_codes(db):
    cases = {}
    for n, (overrides, code) in enumerate(PROGRAM_REJECTIONS):
        overrides = dict(overrides)
        cases[repr(overrides)[:60]] = (program(db, overrides.pop("mnemonic", f"P{n}"), **overrides), code)
    intake(db)
    assert_results(db, PROG, cases)
    assert count_rows(db, "bridge.benefit_program_configuration") == 0


def test_program_account_number_of_34_characters_and_different_account_currency_accepted(db):
    sid = program(db, sponsor_bank_account_number="1" * 34, sponsor_bank_account_currency="EUR",
                  disbursement_currency_code="USD")
    intake(db)
    assert_accepted(db, PROG, sid)


def test_program_rows_of_one_mnemonic_in_one_batch_taken_one_by_one(db):
    first = program(db)
    same = program(db)
    renamed = program(db, benefit_program_name="Renamed")
    bad = program(db, sponsor_bank_code=None)
    intake(db)
    assert_accepted(db, PROG, first, "created")
    assert_accepted(db, PROG, same, "nothing changed")
    assert_accepted(db, PROG, renamed, "updated")
    assert_rejected(db, PROG, bad, "INVALID_SPONSOR_BANK_CODE")
    assert program_row(db)[1] == "Renamed"


# ================================================================================================================
# Wrong types and extreme values
# ================================================================================================================

WRONG_TYPES = [
    ("disbursement_envelope", "number_of_beneficiaries", "three"),
    ("disbursement_envelope", "number_of_disbursements", "3.5"),
    ("disbursement_envelope", "number_of_disbursements", "99999999999999999999"),
    ("disbursement_envelope", "total_disbursement_amount", "300,00"),
    ("disbursement_envelope", "total_disbursement_amount", "USD 300"),
    ("disbursement_envelope", "disbursement_schedule_date", "2026-02-30"),
    ("disbursement_envelope", "disbursement_schedule_date", "not a date"),
    ("disbursement", "disbursement_amount", "ten"),
    ("disbursement", "disbursement_amount", "1.2.3"),
    ("envelope_amendment", "number_of_disbursements", "many"),
    ("envelope_amendment", "disbursement_schedule_date", "31/12/2026"),
    ("benefit_program", "id_mapper_resolution_required", "maybe"),
    ("disbursement", "narrative", "nul\x00byte"),
]


def test_wrong_type_is_refused_at_insert(db):
    """Text in a number, date or boolean column: PBMS gets an error at INSERT (and at COPY) and nothing is staged."""
    for table, column, value in WRONG_TYPES:
        with pytest.raises(psycopg.errors.DataError):
            db.execute(f"INSERT INTO staging.{table} ({column}) VALUES (%s)", (value,))
        with pytest.raises(psycopg.errors.DataError):
            copy_rows(db, table, [{column: value}])
    for table in {t for t, _, _ in WRONG_TYPES}:
        assert count_rows(db, f"staging.{table}") == 0, table
    assert intake(db).total_processed == 0


EXTREME_TEXT = ["x" * 1000, SQL_TEXT, UNICODE_TEXT, "\t\n", "a\u200bb", "Robert'); --", "%s %(x)s {0}"]


def test_extreme_values_get_a_code_or_are_accepted_and_staged_data_is_unchanged(db):
    """Huge, negative, long, SQL-looking and unicode values: each row is rejected with one code or accepted; the run
    never crashes and never alters what PBMS staged."""
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=1000,
                   total_disbursement_amount=Decimal("1e16"))
    expected: list[tuple[str, int, str | None]] = []

    def expect(table, sid, code):
        expected.append((table, sid, code))

    # Programs
    expect(PROG, program(db, SQL_TEXT, sponsor_bank_account_number="ACC-SQL"), None)
    expect(PROG, program(db, UNICODE_TEXT, sponsor_bank_account_number="ACC-UNICODE"), None)
    expect(PROG, program(db, "P-LONG-NAME", benefit_program_name="n" * 1000), None)
    expect(PROG, program(db, "m" * 1000), "INVALID_PROGRAM_MNEMONIC")
    expect(PROG, program(db, "P-SQL-CUR", disbursement_currency_code=SQL_TEXT), "INVALID_DISBURSEMENT_CURRENCY_CODE")
    expect(PROG, program(db, "P-EMOJI-CUR", sponsor_bank_account_currency="💵"), "INVALID_SPONSOR_BANK_ACCOUNT_CURRENCY")
    # Envelopes
    expect(ENV, envelope(db, SQL_TEXT), None)
    expect(ENV, envelope(db, UNICODE_TEXT, cycle_code_mnemonic=UNICODE_TEXT), None)
    expect(ENV, envelope(db, "E" * 1000), "INVALID_DISBURSEMENT_ENVELOPE_ID")
    expect(ENV, envelope(db, "ENV-HUGE", total_disbursement_amount=Decimal("1e30")),
           "INVALID_TOTAL_DISBURSEMENT_AMOUNT")
    expect(ENV, envelope(db, "ENV-NEG", total_disbursement_amount=Decimal("-1e30")),
           "INVALID_TOTAL_DISBURSEMENT_AMOUNT")
    expect(ENV, envelope(db, "ENV-BIG-N", number_of_beneficiaries=2**63 - 1, number_of_disbursements=2**63 - 1), None)
    expect(ENV, envelope(db, "ENV-NEG-N", number_of_beneficiaries=-(2**63)), "INVALID_NO_OF_BENEFICIARIES")
    expect(ENV, envelope(db, "ENV-SQL-P", SQL_TEXT + "x"), "INVALID_PROGRAM_MNEMONIC")
    expect(ENV, envelope(db, "ENV-SQL-F", disbursement_frequency=SQL_TEXT), "INVALID_DISBURSEMENT_FREQUENCY")
    expect(ENV, envelope(db, "ENV-FAR", disbursement_schedule_date=BUSINESS_DATE.replace(year=9999)), None)
    expect(ENV, envelope(db, "ENV-BLANK-CYCLE", cycle_code_mnemonic="\t\r\n "), "INVALID_CYCLE_CODE_MNEMONIC")
    expect(ENV, envelope(db, "\t\n"), "INVALID_DISBURSEMENT_ENVELOPE_ID")
    # Disbursements
    for n, text in enumerate(EXTREME_TEXT):
        ok = len(text) <= 256 and text.strip() != ""
        expect(DISB, disbursement(db, f"T-ID-{n}", beneficiary_id=text), None if ok else "INVALID_BENEFICIARY_ID")
        expect(DISB, disbursement(db, f"T-NAME-{n}", beneficiary_name=text),
               None if ok else "INVALID_BENEFICIARY_NAME")
        expect(DISB, disbursement(db, f"T-NARR-{n}", narrative=text), None if ok else "INVALID_NARRATIVE")
        expect(DISB, disbursement(db, f"T-MIS-{n}", mis_reference_number=text), None)
    expect(DISB, disbursement(db, SQL_TEXT), None)
    expect(DISB, disbursement(db, UNICODE_TEXT), None)
    expect(DISB, disbursement(db, "D" * 1000), "INVALID_DISBURSEMENT_ID")
    expect(DISB, disbursement(db, "\t"), "INVALID_DISBURSEMENT_ID")
    expect(DISB, disbursement(db, "A-HUGE", amount=Decimal("1e30")), "INVALID_DISBURSEMENT_AMOUNT")
    expect(DISB, disbursement(db, "A-NEG", amount=Decimal("-1e30")), "INVALID_DISBURSEMENT_AMOUNT")
    expect(DISB, disbursement(db, "A-TINY", amount=Decimal("1e-30")), "INVALID_DISBURSEMENT_AMOUNT")
    expect(DISB, disbursement(db, "A-ENV-SQL", SQL_TEXT + "x"), "DISBURSEMENT_ENVELOPE_NOT_FOUND")
    # Amendments and cancellations
    expect(AMD, amendment(db, SQL_TEXT + "x"), "DISBURSEMENT_ENVELOPE_NOT_FOUND")
    expect(AMD, amendment(db, "ENV-1", total_disbursement_amount=Decimal("1e30")), "INVALID_TOTAL_DISBURSEMENT_AMOUNT")
    expect(AMD, amendment(db, "ENV-1", number_of_beneficiaries=2**63 - 1), "INVALID_NO_OF_DISBURSEMENTS")
    expect(ECAN, cancel_envelope(db, UNICODE_TEXT + "x"), "DISBURSEMENT_ENVELOPE_NOT_FOUND")
    expect(DCAN, cancel_disbursement(db, SQL_TEXT + "x"), "INVALID_DISBURSEMENT_ID")
    expect(DCAN, cancel_disbursement(db, "x" * 1000), "INVALID_DISBURSEMENT_ID")

    before = staged_data(db)
    intake(db)
    assert staged_data(db) == before
    wrong = [(t, sid, code, full_result(db, t, sid)) for t, sid, code in expected
             if result(db, t, sid) != (("ACCEPTED", None) if code is None else ("REJECTED", code))]
    assert not wrong, wrong
    assert_all_final(db)
    # The SQL-looking and unicode values went in as data, byte for byte.
    assert disbursement_field(db, SQL_TEXT, "disbursement_envelope_id") == "ENV-1"
    assert disbursement_field(db, UNICODE_TEXT, "disbursement_id") == UNICODE_TEXT
    assert envelope_field(db, UNICODE_TEXT, "cycle_code_mnemonic") == UNICODE_TEXT
    assert count_rows(db, "bridge.benefit_program_configuration", "benefit_program_mnemonic = %s", (SQL_TEXT,)) == 1
    assert received(db) == recount(db)


# ================================================================================================================
# Whole-run properties: final states, unchanged staged data, one transaction, concurrency
# ================================================================================================================

def stage_mixed_batch(conn) -> None:
    """A batch touching every table with accepted and rejected rows."""
    program(conn)
    program(conn, "BAD", sponsor_bank_code=None)
    envelope(conn)
    envelope(conn, "ENV-2", total_disbursement_amount=Decimal("1000.00"), number_of_disbursements=10)
    envelope(conn, "ENV-BAD", disbursement_frequency="Yearly")
    envelope(conn)
    amendment(conn, "ENV-2", number_of_disbursements=20)
    amendment(conn, "ENV-BAD", number_of_disbursements=20)
    for i in range(5):
        disbursement(conn, f"D{i}")
        disbursement(conn, f"E{i}", "ENV-2", amount="10.00")
    disbursement(conn, "D1")
    disbursement(conn, "D2", amount="1.00")
    disbursement(conn, "F1", "ENV-BAD")
    cancel_disbursement(conn, "E1")
    cancel_disbursement(conn, "NOPE")
    cancel_envelope(conn, "ENV-2")
    cancel_envelope(conn, "ENV-BAD")


def test_every_row_final_with_one_code_and_staged_data_unchanged(db):
    stage_mixed_batch(db)
    before = staged_data(db)
    summary = intake(db)
    assert staged_data(db) == before
    assert_all_final(db)
    assert summary.total_processed == sum(len(rows) for rows in before.values())
    for table in before:
        accepted = count_rows(db, f"staging.{table}", "intake_status = 'ACCEPTED'")
        rejected = count_rows(db, f"staging.{table}", "intake_status = 'REJECTED'")
        assert summary.accepted.get(table, 0) == accepted
        assert summary.rejected.get(table, 0) == rejected
    by_code = dict(db.execute(
        "SELECT intake_error_code, count(*) FROM (SELECT intake_error_code FROM staging.benefit_program UNION ALL "
        "SELECT intake_error_code FROM staging.disbursement_envelope UNION ALL "
        "SELECT intake_error_code FROM staging.envelope_amendment UNION ALL "
        "SELECT intake_error_code FROM staging.disbursement UNION ALL "
        "SELECT intake_error_code FROM staging.envelope_cancellation UNION ALL "
        "SELECT intake_error_code FROM staging.disbursement_cancellation) c "
        "WHERE intake_error_code IS NOT NULL GROUP BY 1").fetchall())
    assert summary.rejected_by_code == by_code
    run = db.execute("SELECT summary FROM bridge.intake_run").fetchall()
    assert len(run) == 1 and run[0][0]["rejected_by_code"] == by_code
    # A second run finds nothing to do and changes nothing.
    after_first = staged_data(db), db.execute(
        "SELECT intake_status, intake_error_code, intake_processed_at FROM staging.disbursement ORDER BY 1, 2, 3"
    ).fetchall()
    again = intake(db)
    assert again.total_processed == 0
    assert (staged_data(db), db.execute(
        "SELECT intake_status, intake_error_code, intake_processed_at FROM staging.disbursement ORDER BY 1, 2, 3"
    ).fetchall()) == after_first
    assert count_rows(db, "bridge.intake_run") == 1


CORE_TABLES = ("bridge.benefit_program_configuration", "bridge.disbursement_envelope",
               "bridge.disbursement_envelope_batch_status", "bridge.disbursement", "bridge.disbursement_event",
               "bridge.envelope_event", "bridge.intake_run")


def test_run_is_one_transaction(db):
    """A failure midway (a CHECK violation raised by a test trigger on bridge.disbursement) leaves no trace: no staged
    row changes status, no core row is written; the next run, once the cause is gone, processes everything."""
    stage_mixed_batch(db)
    envelope(db, "ENV-BOOM")
    disbursement(db, "BOOM", "ENV-BOOM")
    disbursement(db, "D-AFTER", "ENV-BOOM")
    db.execute("""
        CREATE FUNCTION public.boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.disbursement_id = 'BOOM' THEN
                RAISE check_violation USING MESSAGE = 'test trigger refuses BOOM';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER boom BEFORE INSERT ON bridge.disbursement FOR EACH ROW EXECUTE FUNCTION public.boom();
    """)
    before = staged_data(db)
    statuses = {t: db.execute(f"SELECT staging_id, intake_status, intake_error_code, intake_error_detail, "
                              f"intake_processed_at FROM staging.{t} ORDER BY 1").fetchall() for t in before}
    with pytest.raises(psycopg.errors.CheckViolation, match="BOOM"):
        intake(db)
    assert staged_data(db) == before
    for table, rows in statuses.items():
        assert db.execute(f"SELECT staging_id, intake_status, intake_error_code, intake_error_detail, "
                          f"intake_processed_at FROM staging.{table} ORDER BY 1").fetchall() == rows
        assert all(r[1] == "PENDING" for r in rows)
    for table in CORE_TABLES:
        assert count_rows(db, table) == 0, table
    # The connection is usable and the advisory lock was released: another connection can run.
    db.execute("DROP TRIGGER boom ON bridge.disbursement")
    with psycopg.connect(db.info.dsn, autocommit=True) as other:
        summary = intake(other)
    assert summary.total_processed == sum(len(rows) for rows in before.values())
    assert_all_final(db)
    assert_accepted(db, DISB, db.execute("SELECT staging_id FROM staging.disbursement WHERE disbursement_id = 'BOOM'"
                                         ).fetchone()[0])


def test_concurrent_runs_process_each_row_exactly_once(db):
    program(db)
    envelope(db, number_of_beneficiaries=1, number_of_disbursements=3000, total_disbursement_amount=Decimal("30000"))
    rows = [(f"D{i:05d}", "ENV-1", None, f"b{i}", f"name {i}", Decimal("10.00"), "n") for i in range(3000)]
    rows += rows[:500]  # identical re-stagings in the same batch (second wave)
    rows += [(f"X{i}", "ENV-1", None, "b", "n", Decimal("-1"), "n") for i in range(100)]
    copy_rows(db, DISB, rows)
    total = len(rows) + 2
    barrier = threading.Barrier(2)
    summaries, errors = [], []

    def worker():
        try:
            with psycopg.connect(db.info.dsn, autocommit=True) as conn:
                barrier.wait(30)
                summaries.append(run_intake(conn, BUSINESS_DATE, 0))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(s.total_processed for s in summaries) == [0, total]
    # Serialised by the intake lock: the second run waits, then finds nothing, without conflicting and retrying.
    assert [s.attempts for s in summaries] == [1, 1]
    assert count_rows(db, "bridge.intake_run") == 1
    assert count_rows(db, "staging.disbursement", "intake_status = 'PENDING'") == 0
    assert count_rows(db, "staging.disbursement", "intake_status = 'ACCEPTED'") == 3500
    assert count_rows(db, "staging.disbursement", "intake_error_code = 'INVALID_DISBURSEMENT_AMOUNT'") == 100
    assert count_rows(db, "bridge.disbursement") == 3000
    assert received(db) == (3000, Decimal("30000.00")) == recount(db)
    assert db.execute("SELECT count(DISTINCT bank_reference) FROM bridge.disbursement").fetchone()[0] == 3000


def test_run_retries_when_the_pipeline_starts_the_envelope_meanwhile(db):
    """REPEATABLE READ: the pipeline starts disbursing ENV-1 while a run is adding to it; the run conflicts, retries on
    a fresh snapshot, and then rejects the disbursements (never adds to an envelope already with the bank)."""
    ready_envelope(db)
    d1 = disbursement(db, "D1")
    with psycopg.connect(db.info.dsn) as pipeline:  # not autocommit: holds its transaction open
        pipeline.execute("UPDATE bridge.disbursement_envelope_batch_status SET disbursement_started_at = now() "
                         "WHERE disbursement_envelope_id = 'ENV-1'")
        out = {}

        def run():
            with psycopg.connect(db.info.dsn, autocommit=True) as conn:
                try:
                    out["summary"] = run_intake(conn, BUSINESS_DATE, 0)
                except Exception as exc:  # pragma: no cover
                    out["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until the run is blocked on the pipeline's row lock
            waiting = db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'").fetchone()[0]
            if waiting:
                break
            time.sleep(0.02)
        else:  # pragma: no cover
            pytest.fail("the intake run never waited for the pipeline's transaction")
        pipeline.commit()
        thread.join(30)
    assert "error" not in out, out
    assert out["summary"].attempts == 2
    assert_rejected(db, DISB, d1, "DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED")
    assert received(db) == (0, 0)
    assert count_rows(db, "bridge.disbursement") == 0
