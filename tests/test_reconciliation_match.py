"""The pure reconciliation function: every line ends reconciled, in error with the right reason, or unrelated."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl

from bridge_pipelines.reconciliation.match import DISBURSEMENT_SCHEMA, EXISTING_RECON_SCHEMA, reconcile
from bridge_pipelines.statements.model import AMOUNT_DTYPE, LINE_SCHEMA

REF1, REF2, REF3 = "G000000000000001", "G000000000000002", "G000000000000003"
BATCH = "PB00000000000001"


def line(entry: int, mark: str, amount: str, customer_reference: str | None = None, information: str | None = None,
         **extra) -> dict:
    signed = Decimal(amount) if mark in ("C", "RD") else -Decimal(amount)
    row = {name: None for name in LINE_SCHEMA}
    row.update(page=0, entry_sequence=entry, value_date=date(2026, 12, 2), entry_date=date(2026, 12, 2), mark=mark,
               amount=Decimal(amount), signed_amount=signed, currency="USD", customer_reference=customer_reference,
               information=information)
    row.update(extra)
    return row


def lines_frame(rows: list[dict], statement_id: str = "S1") -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=LINE_SCHEMA)
    return frame.with_columns(pl.lit(statement_id).alias("statement_id"), pl.lit("1").alias("statement_number"),
                              pl.lit("1").alias("statement_sequence"),
                              pl.col("amount").cast(AMOUNT_DTYPE))


def disbursements(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame([dict(zip(DISBURSEMENT_SCHEMA, row)) for row in rows], schema=DISBURSEMENT_SCHEMA)


def shipped(ref: str, disbursement_id: str, amount: str = "10.00", status: str = "SHIPPED",
            batch: str | None = BATCH) -> tuple:
    return (disbursement_id, "ENV", ref, batch, Decimal(amount), "USD", status)


NO_EXISTING = pl.DataFrame(schema=EXISTING_RECON_SCHEMA)


def outcome(result, entry: int) -> str:
    return result.line_outcomes.filter(pl.col("entry_sequence") == entry)["outcome"].item()


def error_reason(result, entry: int) -> str:
    return result.errors.filter(pl.col("entry_sequence") == entry)["error_reason"].item()


def test_debits_reversals_and_strangers() -> None:
    lines = lines_frame([
        line(1, "D", "10.00", REF1),
        line(2, "RD", "10.00", "NONREF", information=f"/EREF/{REF2}/RTRN/AC04 ACCOUNT_CLOSED", return_reason="AC04"),
        line(3, "C", "5000.00", "NONREF", information="TOP-UP FROM TREASURY"),
        line(4, "D", "10.00", "G00000000000FFFF"),
    ])
    result = reconcile(lines, disbursements(shipped(REF1, "D1"), shipped(REF2, "D2")), NO_EXISTING)
    assert outcome(result, 1) == "RECONCILED"
    assert outcome(result, 2) == "RECONCILED"  # reversal matched
    assert outcome(result, 3) == "UNRELATED"
    assert outcome(result, 4) == "ERROR" and error_reason(result, 4) == "INVALID_RECONCILIATION_ID"
    kinds = dict(result.matches.select("disbursement_id", "match_kind").iter_rows())
    assert kinds == {"D1": "REMITTANCE", "D2": "REVERSAL"}


def test_amount_and_currency_mismatch_keep_the_disbursement_out() -> None:
    lines = lines_frame([line(1, "D", "10.01", REF1), line(2, "D", "10.00", REF2, currency="EUR")])
    result = reconcile(lines, disbursements(shipped(REF1, "D1"), shipped(REF2, "D2")), NO_EXISTING)
    assert error_reason(result, 1) == "AMOUNT_MISMATCH"
    assert error_reason(result, 2) == "CURRENCY_MISMATCH"
    assert result.matches.height == 0


def test_duplicates_in_one_statement_and_against_earlier_statements() -> None:
    lines = lines_frame([line(1, "D", "10.00", REF1), line(2, "D", "10.00", REF1), line(3, "D", "10.00", REF2)])
    existing = pl.DataFrame([{"disbursement_id": "D2", "remittance_statement_id": "S0", "remittance_page": 0,
                              "remittance_entry_sequence": 7, "reversal_found": False}], schema=EXISTING_RECON_SCHEMA)
    result = reconcile(lines, disbursements(shipped(REF1, "D1"), shipped(REF2, "D2")), existing)
    assert outcome(result, 1) == "RECONCILED"
    assert error_reason(result, 2) == "DUPLICATE_DISBURSEMENT"
    assert error_reason(result, 3) == "DUPLICATE_DISBURSEMENT"


def test_reimporting_the_same_line_is_not_a_duplicate() -> None:
    lines = lines_frame([line(1, "D", "10.00", REF1)], statement_id="S1")
    existing = pl.DataFrame([{"disbursement_id": "D1", "remittance_statement_id": "S1", "remittance_page": 0,
                              "remittance_entry_sequence": 1, "reversal_found": False}], schema=EXISTING_RECON_SCHEMA)
    result = reconcile(lines, disbursements(shipped(REF1, "D1")), existing)  # reconciled: SHIPPED, remittance kept
    assert outcome(result, 1) == "RECONCILED"
    assert result.errors.height == 0


def test_reversal_of_a_payment_never_shipped_is_invalid() -> None:
    lines = lines_frame([line(1, "RD", "10.00", REF3)])
    result = reconcile(lines, disbursements(shipped(REF3, "D3", status="FAILED", batch=None)), NO_EXISTING)
    assert error_reason(result, 1) == "INVALID_REVERSAL"


def test_return_as_credit_with_our_reference_in_86() -> None:
    lines = lines_frame([line(1, "C", "10.00", "NONREF", information=f"/RTRN/AC01/EREF/{REF1}")])
    result = reconcile(lines, disbursements(shipped(REF1, "D1")), NO_EXISTING)
    assert result.matches["match_kind"].to_list() == ["REVERSAL"]


def test_batch_booking_reconciles_every_member_when_count_and_total_agree() -> None:
    ok = lines_frame([line(1, "D", "20.00", "NONREF", information=f"/PREF/{BATCH}/NRTX/2", batch_reference=BATCH,
                           batch_count=2)])
    members = disbursements(shipped(REF1, "D1"), shipped(REF2, "D2"))
    result = reconcile(ok, members, NO_EXISTING)
    assert sorted(result.matches["disbursement_id"].to_list()) == ["D1", "D2"]
    wrong = lines_frame([line(1, "D", "20.00", "NONREF", batch_reference=BATCH, batch_count=3)])
    result = reconcile(wrong, members, NO_EXISTING)
    assert error_reason(result, 1) == "AMOUNT_MISMATCH" and result.matches.height == 0


def test_statement_sequence_gaps_per_account(db) -> None:
    from bridge_pipelines.statements.sequence import sequence_gaps

    for number, account in ((1, "A"), (2, "A"), (5, "A"), (1, "B"), (3, "B")):
        db.execute("""INSERT INTO bridge.account_statement (statement_id, file_name, file_sha256, file_size, raw_file,
                      account_number, statement_number, statement_process_status)
                      VALUES (%s, 'f', %s, 0, '', %s, %s, 'RECONCILED')""",
                   (f"S{account}{number}", f"{account}{number}".ljust(64, "0"), account, str(number)))
    assert sequence_gaps(db) == [{"account_number": "A", "first_missing": 3, "last_missing": 4},
                                 {"account_number": "B", "first_missing": 2, "last_missing": 2}]
    assert sequence_gaps(db, "B") == [{"account_number": "B", "first_missing": 2, "last_missing": 2}]
