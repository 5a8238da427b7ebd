"""The example bank's bookkeeping: accounts, funds checks and blocks, statistics (payment batches: payments.py).

Every operation is one transaction. Anything that changes an account's money first locks the account row, so
balances, blocks and ledger entries of one account change in a single order (and entry ids grow in commit order,
which the statements rely on).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

from bridge_pipelines.bank.example_bank.db import ConnectionPool
from bridge_pipelines.bank.example_bank.errors import bad_request, conflict, not_found, unprocessable
from bridge_pipelines.bank.example_bank.options import BankOptions

ACCOUNT_NUMBER = re.compile(r"^[A-Za-z0-9-]{1,34}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
BATCH_ID = re.compile(r"^[A-Za-z0-9./:?()+,' -]{1,35}$")  # SWIFT x charset: it can appear in :86: /PREF/


# --- small helpers ----------------------------------------------------------------------------------------------


def money(value: Any, field: str, *, positive: bool = True, allow_zero: bool = False) -> Decimal:
    """A decimal amount sent as a JSON string (floats are refused: they are not exact)."""
    if not isinstance(value, str):
        raise bad_request(f"{field} must be a decimal string such as \"100.50\" (got {type(value).__name__})")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise bad_request(f"{field}={value!r} is not a decimal number") from None
    if not amount.is_finite() or (positive and (amount < 0 or (amount == 0 and not allow_zero))):
        raise bad_request(f"{field}={value!r} must be {'at least zero' if allow_zero else 'positive'}")
    return amount


def text(body: dict[str, Any], field: str, pattern: re.Pattern[str] | None = None, *, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise bad_request(f"{field} is required")
        return None
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        raise bad_request(f"{field}={value!r} is not valid")
    return value


def lock_account(conn: psycopg.Connection, account_number: str, currency: str | None = None) -> tuple[str, Decimal]:
    row = conn.execute(
        "SELECT currency, balance FROM example_bank.account WHERE account_number = %s FOR UPDATE", (account_number,)
    ).fetchone()
    if row is None:
        raise not_found("ACCOUNT_NOT_FOUND", f"account {account_number} is not held at this bank")
    if currency is not None and row[0] != currency:
        raise unprocessable("CURRENCY_MISMATCH", f"account {account_number} is held in {row[0]}, not {currency}")
    return row[0], row[1]


def blocked_amount(conn: psycopg.Connection, account_number: str) -> Decimal:
    row = conn.execute(
        "SELECT coalesce(sum(remaining), 0) FROM example_bank.fund_block WHERE account_number = %s AND status = 'ACTIVE'",
        (account_number,),
    ).fetchone()
    return row[0] if row else Decimal(0)


def _account_view(conn: psycopg.Connection, account_number: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT currency, balance, last_statement_number FROM example_bank.account WHERE account_number = %s",
        (account_number,),
    ).fetchone()
    if row is None:
        raise not_found("ACCOUNT_NOT_FOUND", f"account {account_number} is not held at this bank")
    blocked = blocked_amount(conn, account_number)
    return {
        "account_number": account_number,
        "currency": row[0],
        "balance": str(row[1]),
        "blocked": str(blocked),
        "available": str(row[1] - blocked),
        "last_statement_number": row[2],
    }


# --- accounts ---------------------------------------------------------------------------------------------------


def create_or_top_up_account(pool: ConnectionPool, options: BankOptions, body: dict[str, Any]) -> dict[str, Any]:
    account_number = text(body, "account_number", ACCOUNT_NUMBER)
    currency = text(body, "currency", CURRENCY)
    amount = money(body.get("amount", "0"), "amount", allow_zero=True)
    day = options.business_date()
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO example_bank.account (account_number, currency) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (account_number, currency),
        )
        lock_account(conn, account_number, currency)  # type: ignore[arg-type]
        if amount > 0:
            conn.execute(
                "INSERT INTO example_bank.ledger_entry (account_number, booking_date, value_date, amount, kind)"
                " VALUES (%s, %s, %s, %s, 'CREDIT')",
                (account_number, day, day, amount),
            )
            conn.execute(
                "UPDATE example_bank.account SET balance = balance + %s, updated_at = now() WHERE account_number = %s",
                (amount, account_number),
            )
        return _account_view(conn, account_number)  # type: ignore[arg-type]


def get_account(pool: ConnectionPool, account_number: str) -> dict[str, Any]:
    with pool.connection() as conn:
        return _account_view(conn, account_number)


# --- funds ------------------------------------------------------------------------------------------------------


def check_funds(pool: ConnectionPool, body: dict[str, Any]) -> dict[str, Any]:
    account_number = text(body, "account_number", ACCOUNT_NUMBER)
    currency = text(body, "currency", CURRENCY)
    amount = money(body.get("amount"), "amount")
    with pool.connection() as conn:
        view = _account_view(conn, account_number)  # type: ignore[arg-type]
        if view["currency"] != currency:
            raise unprocessable("CURRENCY_MISMATCH", f"account {account_number} is held in {view['currency']}, not {currency}")
        available = Decimal(view["available"])
        return {"account_number": account_number, "currency": currency, "amount": str(amount),
                "available": available >= amount, "available_balance": str(available)}


def _block_view(row: tuple[Any, ...]) -> dict[str, Any]:
    reference, key, account, currency, amount, remaining, status, released = row
    return {
        "block_key": key,
        "block_reference": reference,
        "account_number": account,
        "currency": currency,
        "amount": str(amount),
        "remaining": str(remaining),
        "status": "RELEASED" if status == "RELEASED" else "BLOCKED",
        "block_status": status,
        "released_amount": None if released is None else str(released),
    }


_BLOCK_COLUMNS = "block_reference, block_key, account_number, currency, amount, remaining, status, released_amount"


def block_funds(pool: ConnectionPool, body: dict[str, Any]) -> dict[str, Any]:
    """Idempotent on block_key: the same key returns the same block (or refuses a different one)."""
    block_key = text(body, "block_key")
    if not block_key or len(block_key) > 128:
        raise bad_request("block_key must be 1..128 characters")
    account_number = text(body, "account_number", ACCOUNT_NUMBER)
    currency = text(body, "currency", CURRENCY)
    amount = money(body.get("amount"), "amount")

    def existing(conn: psycopg.Connection) -> dict[str, Any] | None:
        row = conn.execute(f"SELECT {_BLOCK_COLUMNS} FROM example_bank.fund_block WHERE block_key = %s", (block_key,)).fetchone()
        if row is None:
            return None
        if row[2] != account_number or row[3] != currency or row[4] != amount:
            raise conflict("BLOCK_KEY_CONFLICT", f"block_key {block_key} was used for a different account or amount")
        return _block_view(row)

    with pool.connection() as conn:
        found = existing(conn)
        if found is not None:
            return found
        _, balance = lock_account(conn, account_number, currency)  # type: ignore[arg-type]
        found = existing(conn)  # a concurrent request with the same key may have won the lock
        if found is not None:
            return found
        available = balance - blocked_amount(conn, account_number)  # type: ignore[arg-type]
        if available < amount:
            return {"block_key": block_key, "block_reference": None, "account_number": account_number,
                    "currency": currency, "amount": str(amount), "status": "INSUFFICIENT_FUNDS",
                    "available_balance": str(available)}
        row = conn.execute(
            "INSERT INTO example_bank.fund_block (block_reference, block_key, account_number, currency, amount, remaining, status)"
            " VALUES ('BLK' || lpad(nextval('example_bank.block_reference_seq')::text, 13, '0'), %s, %s, %s, %s, %s, 'ACTIVE')"
            f" RETURNING {_BLOCK_COLUMNS}",
            (block_key, account_number, currency, amount, amount),
        ).fetchone()
        view = _block_view(row)  # type: ignore[arg-type]
        view["available_balance"] = str(available - amount)
        return view


def release_funds(pool: ConnectionPool, body: dict[str, Any]) -> dict[str, Any]:
    """Releases what is left of a block; releasing again releases nothing."""
    reference = text(body, "block_reference")
    with pool.connection() as conn:
        row = conn.execute(
            f"SELECT {_BLOCK_COLUMNS} FROM example_bank.fund_block WHERE block_reference = %s FOR UPDATE", (reference,)
        ).fetchone()
        if row is None:
            raise not_found("BLOCK_NOT_FOUND", f"no funds block {reference}")
        remaining = row[5]
        if remaining > 0:
            row = conn.execute(
                "UPDATE example_bank.fund_block SET remaining = 0, status = 'RELEASED',"
                " released_amount = coalesce(released_amount, 0) + remaining, updated_at = now()"
                f" WHERE block_reference = %s RETURNING {_BLOCK_COLUMNS}",
                (reference,),
            ).fetchone()
        view = _block_view(row)  # type: ignore[arg-type]
        view["released_now"] = str(remaining)
        return view


def stats(pool: ConnectionPool) -> dict[str, Any]:
    with pool.connection() as conn:
        requests, distinct, replayed = conn.execute(
            "SELECT count(*), count(DISTINCT payment_reference), count(*) FILTER (WHERE outcome = 'BATCH_REPLAYED')"
            " FROM example_bank.payment_request"
        ).fetchone()  # type: ignore[misc]
        kinds = dict(conn.execute("SELECT kind, count(*) FROM example_bank.ledger_entry GROUP BY kind").fetchall())
        batches, batch_requests = conn.execute(
            "SELECT count(*), coalesce(sum(request_count), 0) FROM example_bank.payment_batch"
        ).fetchone()  # type: ignore[misc]
        pending_returns = conn.execute(
            "SELECT count(*) FROM example_bank.ledger_entry WHERE pending_return_reason IS NOT NULL"
        ).fetchone()[0]  # type: ignore[index]
        statements = conn.execute("SELECT count(*) FROM example_bank.statement").fetchone()[0]  # type: ignore[index]
    return {
        "payment_requests": requests,
        "distinct_payment_references": distinct,
        "duplicate_payment_requests": requests - distinct,
        "replayed_payment_requests": replayed,
        "batches": batches,
        "batch_requests": int(batch_requests),
        "debits": kinds.get("DEBIT", 0),
        "reversals": kinds.get("REVERSAL", 0),
        "credits": kinds.get("CREDIT", 0),
        "fees": kinds.get("FEE", 0),
        "pending_returns": pending_returns,
        "statements": statements,
    }
