"""Integrity checks on a parsed statement file, whatever its format (MT940, camt.053), and the summary the CLI
`bridge statement check FILE [--json]` prints.

The checks only use the shared model: per page, the parsed lines must be as many as the raw entries, opening +
sum(signed_amount) must equal closing, the balances must exist and share one currency; consecutive pages of one
statement (same account and statement number, linked by an intermediate :62M:/:60M: balance) must chain.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl

from bridge_pipelines.statements.model import CREDIT_MARKS, Balance, ParsedStatementFile, Problem, StatementPage

LINE_COUNT_MISMATCH = "LINE_COUNT_MISMATCH"
BALANCE_MISMATCH = "BALANCE_MISMATCH"
PAGE_CHAIN_BROKEN = "PAGE_CHAIN_BROKEN"
MISSING_BALANCE = "MISSING_BALANCE"
CURRENCY_MISMATCH = "CURRENCY_MISMATCH"

ZERO = Decimal(0)


def check_integrity(parsed: ParsedStatementFile) -> list[Problem]:
    """The integrity problems of `parsed` (its parse problems are not repeated)."""
    totals = _page_totals(parsed.lines)
    problems: list[Problem] = []
    for index, page in enumerate(parsed.pages):
        line_count, net, line_currencies = totals.get(index, (0, ZERO, set()))
        problems += _check_line_count(index, page, line_count)
        problems += _check_balances_present(index, page)
        problems += _check_currencies(index, page, line_currencies)
        problems += _check_balance_closes(index, page, net, line_count)
    problems += _check_page_chain(parsed.pages)
    problems.sort(key=lambda problem: (problem.page if problem.page is not None else -1))
    return problems


def statement_summary(parsed: ParsedStatementFile) -> dict[str, Any]:
    """A JSON-serialisable overview: every page's headers, balances, line counts and sums, and every problem."""
    totals = _page_sums(parsed.lines)
    problems = list(parsed.problems)
    problems += [problem for problem in check_integrity(parsed) if problem not in problems]
    return {
        "format": parsed.format,
        "encoding": parsed.encoding,
        "ok": not problems,
        "page_count": len(parsed.pages),
        "line_count": parsed.lines.height,
        "pages": [_page_summary(index, page, totals.get(index, {})) for index, page in enumerate(parsed.pages)],
        "problems": [_problem_summary(problem) for problem in problems],
    }


# --- checks -----------------------------------------------------------------------------------------------------


def _check_line_count(index: int, page: StatementPage, line_count: int) -> list[Problem]:
    if line_count == page.raw_entry_count:
        return []
    return [
        Problem(
            LINE_COUNT_MISMATCH,
            f"page {_page_name(index, page)}: {page.raw_entry_count} entries in the file, {line_count} parsed",
            index,
        )
    ]


def _check_balances_present(index: int, page: StatementPage) -> list[Problem]:
    missing = [name for name, balance in (("opening", page.opening_balance), ("closing", page.closing_balance))
               if balance is None]
    return [Problem(MISSING_BALANCE, f"page {_page_name(index, page)}: no {name} balance", index) for name in missing]


def _check_currencies(index: int, page: StatementPage, line_currencies: set[str]) -> list[Problem]:
    balances = _named_balances(page)
    currencies = {balance.currency for _, balance in balances}
    problems = []
    if len(currencies) > 1:
        written = ", ".join(f"{name} {balance.currency or '(none)'}" for name, balance in balances)
        problems.append(Problem(CURRENCY_MISMATCH, f"page {_page_name(index, page)}: balances in {written}", index))
    page_currency = page.currency
    foreign = sorted(line_currencies - {page_currency}) if page_currency else []
    if foreign:
        problems.append(
            Problem(
                CURRENCY_MISMATCH,
                f"page {_page_name(index, page)}: lines in {', '.join(foreign)}, balances in {page_currency}",
                index,
            )
        )
    return problems


def _check_balance_closes(index: int, page: StatementPage, net: Decimal, line_count: int) -> list[Problem]:
    opening, closing = page.opening_balance, page.closing_balance
    if opening is None or closing is None:
        return []
    expected = opening.signed + net
    if expected == closing.signed:
        return []
    return [
        Problem(
            BALANCE_MISMATCH,
            f"page {_page_name(index, page)}: opening {_money(opening.signed)} + {line_count} lines "
            f"{_money(net)} = {_money(expected)}, but closing balance is {_money(closing.signed)} "
            f"(difference {_money(closing.signed - expected)})",
            index,
        )
    ]


def _check_page_chain(pages: list[StatementPage]) -> list[Problem]:
    """A page continuing a statement (:60M:, or after a :62M:) opens with the previous page's closing balance."""
    problems = []
    previous_by_account: dict[str | None, int] = {}
    for index, page in enumerate(pages):
        previous_index = previous_by_account.get(page.account)
        previous_by_account[page.account] = index
        if previous_index is None:
            continue
        previous = pages[previous_index]
        continues = page.opening_is_intermediate or previous.closing_is_intermediate
        if not continues or page.statement_number != previous.statement_number:
            continue
        closing, opening = previous.closing_balance, page.opening_balance
        if closing is None or opening is None:
            continue
        if closing.signed != opening.signed or closing.currency != opening.currency:
            problems.append(
                Problem(
                    PAGE_CHAIN_BROKEN,
                    f"page {_page_name(index, page)} opens with {_money(opening.signed)} {opening.currency}, but "
                    f"page {_page_name(previous_index, previous)} closed with {_money(closing.signed)} "
                    f"{closing.currency}",
                    index,
                )
            )
    return problems


# --- helpers ----------------------------------------------------------------------------------------------------


def _page_totals(lines: pl.DataFrame) -> dict[int, tuple[int, Decimal, set[str]]]:
    if lines.height == 0:
        return {}
    totals = lines.group_by("page").agg(
        pl.len().alias("line_count"),
        pl.col("signed_amount").sum().alias("net"),
        pl.col("currency").drop_nulls().unique().alias("currencies"),
    )
    return {
        page: (count, net if net is not None else ZERO, set(currencies))
        for page, count, net, currencies in totals.iter_rows()
    }


def _page_sums(lines: pl.DataFrame) -> dict[int, dict[str, Any]]:
    if lines.height == 0:
        return {}
    credit = pl.col("mark").is_in(CREDIT_MARKS)
    sums = lines.group_by("page").agg(
        pl.len().alias("line_count"),
        credit.sum().alias("credit_count"),
        (~credit).sum().alias("debit_count"),
        pl.col("signed_amount").filter(credit).sum().alias("credit_sum"),
        pl.col("signed_amount").filter(~credit).sum().alias("debit_sum"),
        pl.col("signed_amount").sum().alias("net"),
    )
    return {row["page"]: row for row in sums.iter_rows(named=True)}


def _page_summary(index: int, page: StatementPage, sums: dict[str, Any]) -> dict[str, Any]:
    net = sums.get("net") or ZERO
    opening = page.opening_balance
    return {
        "index": index,
        "transaction_reference": page.transaction_reference,
        "related_reference": page.related_reference,
        "account": page.account,
        "statement_number": page.statement_number,
        "sequence_number": page.sequence_number,
        "currency": page.currency,
        "opening_balance": _balance_summary(page.opening_balance),
        "opening_is_intermediate": page.opening_is_intermediate,
        "closing_balance": _balance_summary(page.closing_balance),
        "closing_is_intermediate": page.closing_is_intermediate,
        "closing_available_balance": _balance_summary(page.closing_available_balance),
        "forward_available_balances": [_balance_summary(balance) for balance in page.forward_available_balances],
        "information": page.information,
        "raw_entry_count": page.raw_entry_count,
        "line_count": sums.get("line_count", 0),
        "credit_count": sums.get("credit_count", 0),
        "debit_count": sums.get("debit_count", 0),
        "credit_sum": _money(sums.get("credit_sum") or ZERO),
        "debit_sum": _money(sums.get("debit_sum") or ZERO),
        "net": _money(net),
        "computed_closing": _money(opening.signed + net) if opening else None,
    }


def _balance_summary(balance: Balance | None) -> dict[str, str] | None:
    if balance is None:
        return None
    return {
        "mark": balance.mark,
        "date": balance.date.isoformat(),
        "currency": balance.currency,
        "amount": _money(balance.amount),
        "signed": _money(balance.signed),
    }


def _problem_summary(problem: Problem) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, date) else value for key, value in asdict(problem).items()}


def _named_balances(page: StatementPage) -> list[tuple[str, Balance]]:
    named = [("opening", page.opening_balance), ("closing", page.closing_balance),
             ("closing available", page.closing_available_balance)]
    named += [("forward available", balance) for balance in page.forward_available_balances]
    return [(name, balance) for name, balance in named if balance is not None]


def _page_name(index: int, page: StatementPage) -> str:
    number = page.statement_number or "?"
    if page.sequence_number:
        number += f"/{page.sequence_number}"
    return f"{index} (statement {number}, account {page.account or '?'})"


def _money(amount: Decimal) -> str:
    """At least two decimals, more only when the amount has them: 229.2 → '229.20', 1.234500 → '1.2345'."""
    normalised = amount.normalize()
    if normalised == normalised.quantize(Decimal("0.01")):
        return f"{normalised:.2f}"
    return f"{normalised:f}"
