"""camt.053 statements for the example bank, through the bridge's writer (bridge_pipelines.statements.camt053_writer).

One <Stmt> per statement (camt has no MT940-style pages; `page_size` is not used). Entries: payment debits DBIT
with EndToEndId = payment reference; reversals CRDT + RvslInd with RtrInf/Rsn/Cd (AC04, AC01, AC06, MD07);
batch bookings DBIT with Btch/PmtInfId = batch id and NbOfTxs; funding CRDT; the daily fee DBIT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import polars as pl

from bridge_pipelines.bank.example_bank.failures import RETURN_REASON_CODES
from bridge_pipelines.bank.example_bank.mt940 import RenderedStatement, StatementHeader, amount_scale, statement_lines


def render_camt053(
    write_camt053: Callable[..., bytes],
    header: StatementHeader,
    entries: pl.DataFrame,
    *,
    page_size: int,
    batch_booking: bool,
) -> RenderedStatement:
    from bridge_pipelines.statements.camt053_writer import CamtBalance, CamtBatch, CamtEntry

    lines = statement_lines(entries, amount_scale(entries, header.currency), batch_booking)
    closing = header.opening_balance + lines["amount"].sum()

    def camt_entries() -> Iterator[Any]:
        for row in lines.iter_rows(named=True):
            kind = row["kind"]
            amount = row["amount"]
            reason = row["reversal_reason"]
            yield CamtEntry(
                amount=abs(amount),
                credit_debit="DBIT" if amount < 0 else "CRDT",
                booking_date=row["booking_date"],
                value_date=row["value_date"],
                reversal=kind == "REVERSAL",
                account_servicer_reference=f"EB{row['entry_id']:014d}",
                end_to_end_id=row["payment_reference"] if kind in ("DEBIT", "REVERSAL") else None,
                return_reason=RETURN_REASON_CODES.get(reason, "MS03") if kind == "REVERSAL" else None,
                additional_information=(
                    reason.replace("_", " ") if kind == "REVERSAL"
                    else "DAILY ACCOUNT MAINTENANCE FEE" if kind == "FEE"
                    else "ACCOUNT FUNDING" if kind == "CREDIT"
                    else None
                ),
                batch=CamtBatch(row["batch_id"], int(row["batch_count"])) if kind == "BATCH" else None,
            )

    content = write_camt053(
        account=header.account_number,
        currency=header.currency,
        statement_id=f"EB{header.statement_date:%y%m%d}{header.statement_number % 10**8:08d}",
        electronic_sequence_number=header.statement_number,
        opening_balance=CamtBalance(header.opening_balance, header.opening_date),
        closing_balance=CamtBalance(closing, header.statement_date),
        entries=camt_entries(),
    )
    return RenderedStatement(content=content, number_of_pages=1, number_of_lines=lines.height, closing_balance=closing)
