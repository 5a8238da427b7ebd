"""Crafted MT940 statement files for tests and benches: a small writer for :20: / :25: / :28C: / :60F|M: / :61: /
:86: / :62F|M: with balances that close (unless a test asks them not to).

    text = mt940("1000001234", [debit(ref, "12.50"), reversal(ref2, "7.00", "AC04", "ACCOUNT CLOSED"),
                                credit("5000.00")], statement_number=3, day=date(2026, 12, 2))

`page_size` splits the statement into pages chained by :62M: / :60M:; `break_chain_at` makes page k open with a
balance 1.00 away from page k-1's closing (each page still closes on its own: only the chain is broken);
`closing_error` adds an amount to the last page's closing balance (the balance no longer closes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

CRLF = "\r\n"
DEFAULT_DAY = date(2026, 12, 2)


@dataclass(frozen=True)
class Entry:
    mark: str  # C | D | RC | RD
    amount: Decimal  # never negative
    reference: str = "NONREF"  # :61: customer reference (16x)
    information: str | None = None  # :86:
    transaction_type: str = "NTRF"
    bank_reference: str | None = None  # after '//' (default: a running number)
    value_date: date | None = None  # default: the statement day

    @property
    def signed(self) -> Decimal:
        return self.amount if self.mark in ("C", "RD") else -self.amount


def _money(value: Decimal | str) -> Decimal:
    amount = Decimal(value)
    if amount < 0:
        raise ValueError(f"amounts are written unsigned, got {amount}")
    return amount


def debit(reference: str, amount: Decimal | str, name: str = "BENEFICIARY") -> Entry:
    """A payment debit as the example bank writes it: our reference in :61: and as /EREF/ in :86:."""
    return Entry("D", _money(amount), reference, f"/EREF/{reference}/NAME/{name}")


def reversal(reference: str, amount: Decimal | str, code: str = "AC04", reason: str = "ACCOUNT CLOSED") -> Entry:
    """A reversal (RD) of a payment: money back, with /RTRN/<code> <reason>."""
    return Entry("RD", _money(amount), reference, f"/EREF/{reference}/RTRN/{code} {reason}")


def batch_debit(batch_id: str, count: int, amount: Decimal | str) -> Entry:
    return Entry("D", _money(amount), "NONREF", f"/PREF/{batch_id}/NRTX/{count}")


def credit(amount: Decimal | str, information: str = "ACCOUNT FUNDING") -> Entry:
    return Entry("C", _money(amount), "NONREF", information)


def fee(amount: Decimal | str = "1.00") -> Entry:
    return Entry("D", _money(amount), "NONREF", "DAILY ACCOUNT MAINTENANCE FEE", transaction_type="NCHG")


def amount_text(value: Decimal) -> str:
    return f"{abs(value):.2f}".replace(".", ",")


def balance_field(tag: str, value: Decimal, day: date, currency: str) -> str:
    mark = "D" if value < 0 else "C"
    return f":{tag}:{mark}{day:%y%m%d}{currency}{amount_text(value)}"


def entry_fields(entry: Entry, day: date, number: int) -> list[str]:
    value_date = entry.value_date or day
    bank_reference = entry.bank_reference or f"TB{number:014d}"
    fields = [f":61:{value_date:%y%m%d}{day:%m%d}{entry.mark}{amount_text(entry.amount)}{entry.transaction_type}"
              f"{entry.reference}//{bank_reference}"]
    if entry.information is not None:
        fields.append(f":86:{entry.information}")
    return fields


def mt940(account: str, entries: Sequence[Entry], *, statement_number: int = 1, day: date = DEFAULT_DAY,
          opening: Decimal | str = "0", opening_date: date | None = None, currency: str = "USD",
          page_size: int | None = None, break_chain_at: int | None = None, closing_error: Decimal | str = "0",
          reference: str | None = None) -> bytes:
    """One statement (several pages when `page_size` is given) as MT940 bytes (ASCII, CRLF)."""
    size = page_size or max(len(entries), 1)
    chunks = [list(entries[start:start + size]) for start in range(0, len(entries), size)] or [[]]
    reference = reference or f"TS{day:%y%m%d}{statement_number:08d}"
    balance = Decimal(opening)
    parts: list[str] = []
    running = 0
    for index, chunk in enumerate(chunks):
        first, last = index == 0, index == len(chunks) - 1
        if break_chain_at is not None and index == break_chain_at and not first:
            balance += Decimal("1.00")
        page_opening = balance
        page_lines: list[str] = []
        for entry in chunk:
            running += 1
            page_lines += entry_fields(entry, day, running)
            balance += entry.signed
        closing = balance + (Decimal(closing_error) if last else Decimal(0))
        fields = [f":20:{reference}", f":25:{account}", f":28C:{statement_number}/{index + 1}",
                  balance_field("60F" if first else "60M", page_opening, (opening_date or day) if first else day,
                                currency),
                  *page_lines,
                  balance_field("62F" if last else "62M", closing, day, currency)]
        if last:
            fields.append(balance_field("64", closing, day, currency))
        fields.append("-")
        parts.append(CRLF.join(fields))
    return (CRLF.join(parts) + CRLF).encode("ascii")


def closing_balance(entries: Sequence[Entry], opening: Decimal | str = "0") -> Decimal:
    return Decimal(opening) + sum((entry.signed for entry in entries), Decimal(0))
