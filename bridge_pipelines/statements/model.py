"""The statement model shared by every statement format (MT940, camt.053).

A parsed file is a list of statement pages (headers and balances, small) plus one Polars frame holding every
entry line of every page (large). Reconciliation, integrity checks, quarantine and the UI only see this model,
never a format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import polars as pl

AMOUNT_DTYPE = pl.Decimal(38, 6)

# Entry marks as in MT940 :61: subfield 3. camt.053 maps CRDT/DBIT (+ RvslInd) onto the same four marks.
#   C  credit, D debit, RC reversal of a credit (money out), RD reversal of a debit (money back in).
CREDIT_MARKS = ("C", "RD")
DEBIT_MARKS = ("D", "RC")

# One row per entry (:61: + its :86:, or one camt Ntry). `page` indexes ParsedStatementFile.pages.
LINE_SCHEMA: dict[str, pl.DataType] = {
    "page": pl.Int32(),  # 0-based index of the statement page in the file
    "entry_sequence": pl.Int32(),  # 1-based position of the entry within its page
    "value_date": pl.Date(),
    "entry_date": pl.Date(),  # null when the file has none
    "mark": pl.String(),  # C | D | RC | RD
    "funds_code": pl.String(),  # MT940 3rd currency letter, null when absent
    "amount": AMOUNT_DTYPE,  # as written in the file, never negative
    "signed_amount": AMOUNT_DTYPE,  # + for C and RD, - for D and RC
    "currency": pl.String(),  # the page's currency (MT940) or Amt@Ccy (camt)
    "transaction_type": pl.String(),  # e.g. NTRF, NMSC, S202; camt: BkTxCd (Domn/Fmly/SubFmly or Prtry)
    "customer_reference": pl.String(),  # MT940 "reference for the account owner"; camt EndToEndId; NONREF kept
    "bank_reference": pl.String(),  # MT940 after '//'; camt AcctSvcrRef
    "supplementary_details": pl.String(),  # MT940 :61: second line
    "information": pl.String(),  # :86: text (continuation lines joined with '\n'); camt remittance/AddtlNtryInf
    # Extracted from structured information (MT940 :86: /EREF/, EREF+, /RTRN/, /PREF/, /NRTX/; camt fields):
    "end_to_end_reference": pl.String(),  # our reference when the bank carried it as EREF / EndToEndId
    "return_reason": pl.String(),  # return/reversal reason code or text (/RTRN/, RtrInf/Rsn/Cd)
    "batch_reference": pl.String(),  # batch booking reference (/PREF/, Btch/PmtInfId)
    "batch_count": pl.Int64(),  # number of payments in a batch booking (/NRTX/, Btch/NbOfTxs)
}


def empty_lines() -> pl.DataFrame:
    return pl.DataFrame(schema=LINE_SCHEMA)


@dataclass(frozen=True)
class Balance:
    mark: str  # 'C' (credit balance) or 'D' (debit balance, i.e. negative)
    date: date
    currency: str
    amount: Decimal  # as written, never negative

    @property
    def signed(self) -> Decimal:
        return -self.amount if self.mark == "D" else self.amount


@dataclass
class StatementPage:
    """One statement (MT940 :20: ... :62:, or one camt <Stmt>)."""

    transaction_reference: str | None  # :20: / Stmt/Id
    account: str | None  # :25: / Acct/Id (IBAN or Othr/Id)
    statement_number: str | None = None  # :28C: before '/' / ElctrncSeqNb or LglSeqNb
    sequence_number: str | None = None  # :28C: after '/' (page), None when absent
    related_reference: str | None = None  # :21:
    opening_balance: Balance | None = None  # :60F:/:60M: / OPBD or PRCD
    opening_is_intermediate: bool = False  # :60M:
    closing_balance: Balance | None = None  # :62F:/:62M: / CLBD
    closing_is_intermediate: bool = False  # :62M:
    closing_available_balance: Balance | None = None  # :64: / CLAV
    forward_available_balances: list[Balance] = field(default_factory=list)  # :65: / FWAV
    information: str | None = None  # statement-level :86: (after :62:) / AddtlStmtInf
    raw_entry_count: int = 0  # number of :61: tags (or <Ntry>) seen in the raw text of this page

    @property
    def currency(self) -> str | None:
        balance = self.opening_balance or self.closing_balance
        return balance.currency if balance else None


@dataclass(frozen=True)
class Problem:
    """Something wrong with a file. `code` is machine-readable and stable; `message` is for humans."""

    code: str
    message: str
    page: int | None = None
    entry_sequence: int | None = None


@dataclass
class ParsedStatementFile:
    format: str  # 'MT940' | 'CAMT053'
    pages: list[StatementPage]
    lines: pl.DataFrame  # LINE_SCHEMA
    problems: list[Problem] = field(default_factory=list)  # parse problems; integrity checks add their own
    encoding: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems
