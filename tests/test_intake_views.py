"""bridge.envelope_status and bridge.disbursement_status (DESIGN.md §5.3) after intake, against the real PostgreSQL."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from bridge_pipelines.intake.staging import copy_rows
from tests.intake_helpers import (
    SCHEDULE_DATE, amendment, cancel_disbursement, cancel_envelope, disbursement, envelope, intake, program,
    ready_envelope, recount,
)

BANK_REFERENCE = r"^[A-Z0-9]{1,16}$"


def envelope_status(conn, envelope_id="ENV-1") -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM bridge.envelope_status WHERE disbursement_envelope_id = %s",
                           (envelope_id,)).fetchone()


def disbursement_status(conn, disbursement_id) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM bridge.disbursement_status WHERE disbursement_id = %s",
                           (disbursement_id,)).fetchone()


def view_columns(conn, view) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'bridge' AND table_name = %s",
        (view,))}


def test_views_have_the_columns_the_design_lists(db):
    envelope_cols = view_columns(db, "envelope_status")
    assert {
        "disbursement_envelope_id", "benefit_program_mnemonic", "cycle_code_mnemonic",
        "declared_number_of_beneficiaries", "declared_number_of_disbursements", "declared_total_disbursement_amount",
        "cancellation_status", "cancellation_timestamp",
        "funds_available_with_bank", "funds_available_attempts", "funds_available_latest_error_code",
        "funds_blocked_with_bank", "funds_blocked_attempts", "funds_blocked_latest_error_code",
        "number_of_disbursements_received", "total_disbursement_amount_received",
        "number_of_disbursements_shipped", "total_disbursement_amount_shipped",
        "number_of_disbursements_reconciled", "total_disbursement_amount_reconciled",
        "number_of_disbursements_reversed", "total_disbursement_amount_reversed",
        "number_of_disbursements_failed", "total_disbursement_amount_failed",
        "number_of_statement_lines_unmatched", "total_amount_unmatched", "all_disbursements_received",
    } <= envelope_cols
    disbursement_cols = view_columns(db, "disbursement_status")
    assert {
        "disbursement_id", "disbursement_envelope_id", "disbursement_status", "bank_reference",
        "disbursement_amount", "disbursement_currency_code", "remittance_reference_number",
        "remittance_statement_id", "remittance_entry_date", "remittance_value_date", "reversal_found",
        "reversal_statement_id", "reversal_entry_date", "reversal_value_date", "reversal_reason",
    } <= disbursement_cols


def test_envelope_status_after_intake(db):
    program(db)
    envelope(db, disbursement_frequency="quarterly")
    envelope(db, "ENV-REJECTED", number_of_beneficiaries=0)
    disbursement(db, "D1", amount="100.00")
    disbursement(db, "D2", amount="150.00")
    intake(db)
    assert db.execute("SELECT count(*) FROM bridge.envelope_status").fetchone() == (1,)
    assert envelope_status(db, "ENV-REJECTED") is None
    row = envelope_status(db)
    assert {k: row[k] for k in (
        "benefit_program_mnemonic", "cycle_code_mnemonic", "disbursement_frequency", "disbursement_currency_code",
        "disbursement_schedule_date", "declared_number_of_beneficiaries", "declared_number_of_disbursements",
        "declared_total_disbursement_amount", "cancellation_status", "cancellation_timestamp",
        "id_mapper_resolution_status", "funds_available_with_bank", "funds_available_attempts",
        "funds_available_latest_error_code", "funds_blocked_with_bank", "funds_blocked_attempts",
        "funds_blocked_latest_error_code", "disbursement_started_at", "number_of_disbursements_received",
        "total_disbursement_amount_received", "number_of_disbursements_shipped", "total_disbursement_amount_shipped",
        "number_of_disbursements_reconciled", "number_of_disbursements_reversed", "number_of_disbursements_failed",
        "total_disbursement_amount_failed", "number_of_statement_lines_unmatched", "total_amount_unmatched",
        "all_disbursements_received")} == {
        "benefit_program_mnemonic": "CASH", "cycle_code_mnemonic": "2026-12", "disbursement_frequency": "Quarterly",
        "disbursement_currency_code": "USD", "disbursement_schedule_date": SCHEDULE_DATE,
        "declared_number_of_beneficiaries": 3, "declared_number_of_disbursements": 3,
        "declared_total_disbursement_amount": Decimal("300.00"), "cancellation_status": "NOT_CANCELLED",
        "cancellation_timestamp": None, "id_mapper_resolution_status": "NOT_APPLICABLE",
        "funds_available_with_bank": "PENDING_CHECK", "funds_available_attempts": 0,
        "funds_available_latest_error_code": None, "funds_blocked_with_bank": "PENDING_CHECK",
        "funds_blocked_attempts": 0, "funds_blocked_latest_error_code": None, "disbursement_started_at": None,
        "number_of_disbursements_received": 2, "total_disbursement_amount_received": Decimal("250.00"),
        "number_of_disbursements_shipped": 0, "total_disbursement_amount_shipped": 0,
        "number_of_disbursements_reconciled": 0, "number_of_disbursements_reversed": 0,
        "number_of_disbursements_failed": 0, "total_disbursement_amount_failed": 0,
        "number_of_statement_lines_unmatched": 0, "total_amount_unmatched": 0, "all_disbursements_received": False,
    }
    # The last disbursement completes the envelope: both count and amount must match.
    disbursement(db, "D3", amount="50.00")
    intake(db)
    row = envelope_status(db)
    assert (row["number_of_disbursements_received"], row["total_disbursement_amount_received"],
            row["all_disbursements_received"]) == (3, Decimal("300.00"), True)


def test_all_disbursements_received_needs_count_and_amount(db):
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=2)
    disbursement(db, "D1", amount="100.00")
    disbursement(db, "D2", amount="100.00")  # count complete, amount 200 of 300
    intake(db)
    assert envelope_status(db)["all_disbursements_received"] is False
    amendment(db, total_disbursement_amount=Decimal("200.00"))
    intake(db)
    assert envelope_status(db)["all_disbursements_received"] is True
    amendment(db, number_of_disbursements=3)
    intake(db)
    row = envelope_status(db)
    assert (row["declared_number_of_disbursements"], row["declared_total_disbursement_amount"],
            row["all_disbursements_received"]) == (3, Decimal("200.00"), False)


def test_envelope_with_id_mapper_program_and_funds_statuses(db):
    program(db, "MAP", id_mapper_resolution_required=True)
    envelope(db, "ENV-MAP", "MAP")
    intake(db)
    assert envelope_status(db, "ENV-MAP")["id_mapper_resolution_status"] == "PENDING"
    # What the funds steps write shows in the view as is.
    db.execute("""UPDATE bridge.disbursement_envelope_batch_status SET
                      funds_available_with_bank = 'FUNDS_NOT_AVAILABLE', funds_available_attempts = 2,
                      funds_available_latest_error_code = 'INSUFFICIENT_FUNDS',
                      funds_available_latest_timestamp = now(),
                      funds_blocked_with_bank = 'ERROR', funds_blocked_attempts = 1,
                      funds_blocked_latest_error_code = 'BANK_TIMEOUT'""")
    row = envelope_status(db, "ENV-MAP")
    assert (row["funds_available_with_bank"], row["funds_available_attempts"], row["funds_available_latest_error_code"],
            row["funds_blocked_with_bank"], row["funds_blocked_attempts"], row["funds_blocked_latest_error_code"]) == (
        "FUNDS_NOT_AVAILABLE", 2, "INSUFFICIENT_FUNDS", "ERROR", 1, "BANK_TIMEOUT")
    assert row["funds_available_latest_timestamp"] is not None


def test_cancellations_in_the_views(db):
    ready_envelope(db)
    ready_envelope(db, "ENV-2")
    disbursement(db, "D1")
    disbursement(db, "D2")
    disbursement(db, "X1", "ENV-2", amount="40.00")
    disbursement(db, "X2", "ENV-2", amount="60.00")
    intake(db)
    cancel_envelope(db)
    cancel_disbursement(db, "X1")
    intake(db)
    env1, env2 = envelope_status(db), envelope_status(db, "ENV-2")
    assert (env1["cancellation_status"], env1["cancellation_timestamp"] is not None) == ("CANCELLED", True)
    assert (env2["cancellation_status"], env2["number_of_disbursements_received"],
            env2["total_disbursement_amount_received"]) == ("NOT_CANCELLED", 1, Decimal("60.00"))
    assert (env2["number_of_disbursements_received"], env2["total_disbursement_amount_received"]) == recount(
        db, "ENV-2")
    d1, x1, x2 = disbursement_status(db, "D1"), disbursement_status(db, "X1"), disbursement_status(db, "X2")
    assert (d1["disbursement_status"], d1["status_reason_code"], d1["cancelled_at"] is not None) == (
        "CANCELLED", "ENVELOPE_CANCELLED", True)
    assert (x1["disbursement_status"], x1["status_reason_code"]) == ("CANCELLED", "CANCELLED_BY_PBMS")
    assert (x2["disbursement_status"], x2["status_reason_code"], x2["cancelled_at"]) == ("RECEIVED", None, None)


def test_disbursement_status_rows_and_bank_references(db):
    ready_envelope(db, number_of_beneficiaries=1, number_of_disbursements=1500,
                   total_disbursement_amount=Decimal("15000"))
    program(db, "KW", currency="KWD")
    ready_envelope(db, "ENV-KWD", "KW", currency="KWD", number_of_beneficiaries=1, number_of_disbursements=1500,
                   total_disbursement_amount=Decimal("15000"))
    for run in range(2):  # two runs: references stay unique across runs and envelopes
        rows = [(f"D{run}-{i}", "ENV-1" if i % 2 else "ENV-KWD", f"MIS{i}", f"b{i}", f"name {i}",
                 Decimal("1.234") if i % 2 == 0 else Decimal("2.50"), "n") for i in range(1000)]
        copy_rows(db, "disbursement", rows)
        intake(db)
    assert db.execute("SELECT count(*), count(DISTINCT disbursement_id), count(DISTINCT bank_reference), "
                      "count(*) FILTER (WHERE bank_reference !~ %s), max(length(bank_reference)) "
                      "FROM bridge.disbursement_status", (BANK_REFERENCE,)).fetchone() == (2000, 2000, 2000, 0, 16)
    row = disbursement_status(db, "D1-2")
    assert {k: row[k] for k in ("disbursement_envelope_id", "mis_reference_number", "beneficiary_id",
                                "beneficiary_name", "disbursement_amount", "disbursement_currency_code", "narrative",
                                "disbursement_status", "status_reason_code", "shipment_batch_id", "shipped_at",
                                "cancelled_at", "mapper_status", "remittance_reference_number", "reversal_found")} == {
        "disbursement_envelope_id": "ENV-KWD", "mis_reference_number": "MIS2", "beneficiary_id": "b2",
        "beneficiary_name": "name 2", "disbursement_amount": Decimal("1.234"), "disbursement_currency_code": "KWD",
        "narrative": "n", "disbursement_status": "RECEIVED", "status_reason_code": None, "shipment_batch_id": None,
        "shipped_at": None, "cancelled_at": None, "mapper_status": None, "remittance_reference_number": None,
        "reversal_found": False}
    assert row["received_at"] is not None
    # The bank reference is what the table holds, and the view has exactly one row per disbursement.
    assert db.execute("SELECT count(*) FROM bridge.disbursement d JOIN bridge.disbursement_status v "
                      "USING (disbursement_id, bank_reference)").fetchone() == (2000,)


def test_views_show_reconciliation_and_unmatched_lines(db):
    """What the reconciliation step writes shows in both views, one row per envelope and disbursement."""
    ready_envelope(db)
    disbursement(db, "D1")
    disbursement(db, "D2")
    intake(db)
    db.execute("INSERT INTO bridge.account_statement (statement_id, file_name, file_sha256, file_size, raw_file) "
               "VALUES ('ST-1', 'st.mt940', repeat('a', 64), 3, 'abc')")
    db.execute("INSERT INTO bridge.disbursement_recon (disbursement_id, disbursement_envelope_id, "
               "remittance_reference_number, remittance_statement_id, remittance_entry_date, remittance_value_date, "
               "reversal_found, reversal_statement_id, reversal_reason) VALUES "
               "('D1', 'ENV-1', 'REM-1', 'ST-1', %s, %s, true, 'ST-1', 'AC04')",
               (date(2026, 12, 12), date(2026, 12, 12)))
    db.execute("INSERT INTO bridge.disbursement_error_recon (statement_id, page, entry_sequence, amount, "
               "disbursement_envelope_id, error_reason) VALUES ('ST-1', 1, 5, 12.50, 'ENV-1', 'AMOUNT_MISMATCH'), "
               "('ST-1', 1, 6, 7.50, 'ENV-1', 'DUPLICATE_DISBURSEMENT')")
    d1 = disbursement_status(db, "D1")
    assert (d1["remittance_reference_number"], d1["remittance_statement_id"], d1["remittance_value_date"],
            d1["reversal_found"], d1["reversal_reason"]) == ("REM-1", "ST-1", date(2026, 12, 12), True, "AC04")
    assert disbursement_status(db, "D2")["reversal_found"] is False
    row = envelope_status(db)
    assert (row["number_of_statement_lines_unmatched"], row["total_amount_unmatched"]) == (2, Decimal("20.00"))
    assert db.execute("SELECT count(*) FROM bridge.envelope_status").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM bridge.disbursement_status").fetchone() == (2,)


def test_failed_amount_in_envelope_status_is_the_envelope_counter(db):
    """The failed amount is a counter kept by the pipeline with the failed count (test_partial_bank checks that the
    pipeline keeps it equal to the sum of FAILED disbursements), not a scan of the envelope's disbursements."""
    ready_envelope(db)
    disbursement(db, "D1", amount="100.00")
    disbursement(db, "D2", amount="25.50")
    intake(db)
    db.execute("UPDATE bridge.disbursement_envelope_batch_status SET number_of_disbursements_failed = 1, "
               "total_disbursement_amount_failed = 25.50")
    row = envelope_status(db)
    assert (row["number_of_disbursements_failed"], row["total_disbursement_amount_failed"]) == (1, Decimal("25.50"))


def test_a_disbursement_is_never_deleted(db):
    """Reconciliation and resolution rows name disbursements without a foreign key (migration 0013): the guarantee
    rests on disbursements never being deleted."""
    ready_envelope(db)
    disbursement(db, "D1", amount="100.00")
    intake(db)
    for statement in ("DELETE FROM bridge.disbursement WHERE disbursement_id = 'D1'", "TRUNCATE bridge.disbursement CASCADE"):
        with pytest.raises(psycopg.errors.RaiseException, match="never deleted"):
            with db.transaction():
                db.execute(statement)
    assert db.execute("SELECT count(*) FROM bridge.disbursement").fetchone() == (1,)


# An INSERT into bridge.disbursement as another writer than intake would make it (the database's own guarantees).
DIRECT_INSERT = ("INSERT INTO bridge.disbursement (disbursement_id, disbursement_envelope_id, beneficiary_id, "
                 "beneficiary_name, disbursement_amount, narrative, bank_reference) ")


def _one_accepted_disbursement(db) -> None:
    ready_envelope(db)
    disbursement(db, "D1", amount="100.00")
    intake(db)


def test_a_disbursement_names_an_envelope_that_exists_and_envelopes_stay(db):
    """Migration 0012 replaced the per-row foreign key disbursement -> envelope by a per-statement check: the same
    error (23503) for a missing envelope, and envelopes can be neither deleted nor renamed."""
    _one_accepted_disbursement(db)
    insert = DIRECT_INSERT + "VALUES ('D9', %s, 'B', 'N', 1, 'x', 'GTEST0000000009')"
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="NO-SUCH-ENVELOPE"):
        with db.transaction():
            db.execute(insert, ("NO-SUCH-ENVELOPE",))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        with db.transaction():
            db.execute("UPDATE bridge.disbursement SET disbursement_envelope_id = 'NO-SUCH-ENVELOPE'")
    for statement in ("DELETE FROM bridge.disbursement_envelope",
                      "UPDATE bridge.disbursement_envelope SET disbursement_envelope_id = 'ENV-RENAMED'",
                      "TRUNCATE bridge.disbursement_envelope CASCADE"):
        with pytest.raises(psycopg.errors.RaiseException, match="never deleted"):
            with db.transaction():
                db.execute(statement)
    with db.transaction():
        db.execute(insert, ("ENV-1",))  # an envelope that exists: accepted
    assert db.execute("SELECT count(*) FROM bridge.disbursement").fetchone() == (2,)


def test_a_disbursement_id_amount_and_bank_reference_are_checked_on_insert_and_never_change(db):
    """Migration 0016 checks these three rules once per INSERT statement (not at every change of state): the same
    error as the CHECK constraints they replace (23514, naming the constraint), the whole statement refused; and
    the three columns can no longer be updated. The rules on the state are still CHECK constraints."""
    _one_accepted_disbursement(db)
    insert = DIRECT_INSERT + ("VALUES ('D8', 'ENV-1', 'B', 'N', 1, 'x', 'GTEST0000000008'), "
                              "(%s, 'ENV-1', 'B', 'N', %s, 'x', %s)")
    for values, constraint in ((("", 1, "GTEST0000000009"), "disbursement_disbursement_id_check"),
                               (("D" * 65, 1, "GTEST0000000009"), "disbursement_disbursement_id_check"),
                               (("D9", 0, "GTEST0000000009"), "disbursement_disbursement_amount_check"),
                               (("D9", -5, "GTEST0000000009"), "disbursement_disbursement_amount_check"),
                               (("D9", 1, "gtest0000000009"), "disbursement_bank_reference_check"),
                               (("D9", 1, "G-TEST"), "disbursement_bank_reference_check")):
        with pytest.raises(psycopg.errors.CheckViolation, match=constraint) as refused:
            with db.transaction():
                db.execute(insert, values)
        assert refused.value.diag.constraint_name == constraint
    for statement in ("UPDATE bridge.disbursement SET disbursement_amount = 1",
                      "UPDATE bridge.disbursement SET bank_reference = 'GTEST0000000007'",
                      "UPDATE bridge.disbursement SET disbursement_id = 'D7'"):
        with pytest.raises(psycopg.errors.RaiseException, match="never change"):
            with db.transaction():
                db.execute(statement)
    with pytest.raises(psycopg.errors.CheckViolation):
        with db.transaction():
            db.execute("UPDATE bridge.disbursement SET disbursement_status = 'PAID'")
    with pytest.raises(psycopg.errors.CheckViolation):
        with db.transaction():
            db.execute("UPDATE bridge.disbursement SET disbursement_status = 'CANCELLED'")  # without cancelled_at
    with db.transaction():
        db.execute(insert, ("D9", "0.01", "GTEST0000000009"))  # every rule kept: accepted
    assert db.execute("SELECT disbursement_id, disbursement_amount FROM bridge.disbursement ORDER BY 1").fetchall() == [
        ("D1", Decimal("100.00")), ("D8", Decimal("1")), ("D9", Decimal("0.01"))]
