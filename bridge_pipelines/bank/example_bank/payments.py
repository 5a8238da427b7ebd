"""Payment batches, set-based: one transaction per request, no per-payment round trip or Python loop.

1. The batch row is inserted first (ON CONFLICT DO NOTHING): a batch_id seen before gets its stored
   acknowledgement again, and a concurrent duplicate waits on the key until the first one commits.
2. The sponsor account (and the envelope's block) are locked; the money this batch may spend is the account's free
   balance plus what remains of its block.
3. Polars decides every payment at once: validation (reason per payment), copies of a reference inside the request,
   references already debited, and funds in arrival order (a running total).
4. Booking. Fast path (a first submission): assume no reference was debited before and COPY the debits straight into
   the ledger inside a savepoint. The ledger's unique index on the payment reference is the proof: if any reference
   was debited before, the COPY fails as a whole and the savepoint is rolled back. Then the careful path runs: one
   indexed lookup of the batch's references, the decisions again, and one INSERT ... ON CONFLICT DO NOTHING from a
   scratch table. Either way a reference is never debited twice, even under races.
5. Every payment received is COPYed into payment_request.
"""

from __future__ import annotations

import json
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import polars as pl
import psycopg

from bridge_pipelines.bank.example_bank.db import ConnectionPool
from bridge_pipelines.bank.example_bank.errors import BankError, bad_request, not_found, unprocessable
from bridge_pipelines.bank.example_bank.failures import failure_reasons
from bridge_pipelines.bank.example_bank.ledger import ACCOUNT_NUMBER, BATCH_ID, CURRENCY, blocked_amount, lock_account, text
from bridge_pipelines.bank.example_bank.options import BankOptions
from bridge_pipelines.bank.protocol import PAYMENT_COLUMNS

MAX_PAYMENTS_PER_BATCH = 100_000
_WORK = pl.Decimal(38, 6)  # for the running total only; the ledger books the amount exactly as sent


def payments_frame(payments: Any) -> pl.DataFrame:
    """Payments arrive columnar ({column: [values]}, what the bridge's client sends) or as a list of objects."""
    if isinstance(payments, dict):
        unknown = set(payments) - set(PAYMENT_COLUMNS)
        if unknown:
            raise bad_request(f"unknown payment fields: {', '.join(sorted(unknown))}")
        if any(not isinstance(v, list) for v in payments.values()) or len({len(v) for v in payments.values()}) > 1:
            raise bad_request("columnar payments must be lists of equal length")
        rows = len(next(iter(payments.values()), []))
        columns = {c: payments.get(c) or [None] * rows for c in PAYMENT_COLUMNS}
    elif isinstance(payments, list):
        if not all(isinstance(p, dict) for p in payments):
            raise bad_request("payments must be objects")
        columns = {c: [p.get(c) for p in payments] for c in PAYMENT_COLUMNS}
    else:
        raise bad_request("payments must be a list of objects or an object of columns")
    try:  # strict construction refuses anything but strings and nulls (numbers, booleans, objects)
        frame = pl.DataFrame(columns, schema={c: pl.String for c in PAYMENT_COLUMNS})
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        wrong = next(c for c, values in columns.items() if any(v is not None and type(v) is not str for v in values))
        raise bad_request(f"payment field {wrong} must hold strings (amounts as decimal strings, never numbers)") from None
    if frame.height > MAX_PAYMENTS_PER_BATCH:
        raise BankError(413, "BATCH_TOO_LARGE", f"at most {MAX_PAYMENTS_PER_BATCH} payments per batch")
    return frame.with_row_index("seq", offset=1)


def validated(frame: pl.DataFrame, currency: str) -> pl.DataFrame:
    """Adds invalid_reason (null when the payment can be processed), amount (Decimal) and destination_key."""
    fa_type = pl.col("fa_type")

    def missing(column: str, pattern: str) -> pl.Expr:
        return ~pl.col(column).fill_null("").str.contains(pattern)

    amount_ok = pl.col("amount").fill_null("").str.contains(r"^[0-9]{1,18}(\.[0-9]{1,6})?$")
    frame = frame.with_columns(pl.when(amount_ok).then(pl.col("amount")).cast(_WORK).alias("amount_value"))
    reason = (
        pl.when(~pl.col("payment_reference").fill_null("").str.contains(r"^[A-Z0-9]{1,16}$"))
        .then(pl.lit("INVALID_REFERENCE"))
        .when(pl.col("amount_value").is_null() | (pl.col("amount_value") <= 0))
        .then(pl.lit("INVALID_AMOUNT"))
        .when(pl.col("currency").fill_null("") != currency)
        .then(pl.lit("CURRENCY_MISMATCH"))
        .when(
            ((fa_type == "BANK_ACCOUNT") & missing("bank_account_number", r"^[A-Za-z0-9-]{1,34}$"))
            | ((fa_type == "MOBILE_WALLET") & missing("mobile_number", r"^\+?[0-9]{6,15}$"))
            | ((fa_type == "EMAIL_WALLET") & missing("email_address", r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))
            | ~fa_type.fill_null("").is_in(["BANK_ACCOUNT", "MOBILE_WALLET", "EMAIL_WALLET"])
        )
        .then(pl.lit("INVALID_ACCOUNT"))
    )
    destination = (
        pl.when(fa_type == "BANK_ACCOUNT")
        .then(pl.col("bank_account_number"))
        .when(fa_type == "MOBILE_WALLET")
        .then(pl.col("mobile_number"))
        .when(fa_type == "EMAIL_WALLET")
        .then(pl.col("email_address"))
    )
    return frame.with_columns(reason.alias("invalid_reason"), destination.alias("destination_key"))


def decided(frame: pl.DataFrame, already_debited: list[str], funds: Decimal) -> pl.DataFrame:
    """status / reason_code / duplicate / to_debit for every payment (frame from `validated`, in arrival order)."""
    valid = pl.col("invalid_reason").is_null()
    frame = frame.with_columns(
        (valid & ~pl.struct("payment_reference", valid.alias("v")).is_first_distinct()).alias("repeated"),
        (valid & pl.col("payment_reference").is_in(already_debited)).alias("already_debited"),
    )
    candidate = valid & ~pl.col("repeated") & ~pl.col("already_debited")
    zero = pl.lit(Decimal(0), dtype=_WORK)
    limit = pl.lit(funds.quantize(Decimal("0.000001"), rounding=ROUND_FLOOR), dtype=_WORK)
    frame = frame.with_columns(
        candidate.alias("candidate"),
        pl.when(candidate).then(pl.col("amount_value")).otherwise(zero).cum_sum().alias("running_total"),
    ).with_columns(
        pl.when(~valid)
        .then(pl.col("invalid_reason"))
        .when(pl.col("candidate") & (pl.col("running_total") > limit))
        .then(pl.lit("INSUFFICIENT_FUNDS"))
        .alias("own_reason")
    )
    # later copies of a reference in the same request get the first copy's answer
    first_answer = pl.col("own_reason").first().over("payment_reference", valid)
    reason = pl.when(pl.col("repeated")).then(first_answer).otherwise(pl.col("own_reason"))
    return frame.with_columns(
        reason.alias("reason_code"),
        pl.when(reason.is_null()).then(pl.lit("ACCEPTED")).otherwise(pl.lit("REJECTED")).alias("status"),
        (pl.col("already_debited") | pl.col("repeated")).alias("duplicate"),
        (pl.col("candidate") & pl.col("own_reason").is_null()).alias("to_debit"),
    )


def _copy(conn: psycopg.Connection, table: str, columns: list[str], frame: pl.DataFrame) -> None:
    if frame.height == 0:
        return
    data = frame.select(columns).write_csv(include_header=False).encode()
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:  # type: ignore[arg-type]
        copy.write(data)


def _log_requests(conn: psycopg.Connection, batch_id: str, frame: pl.DataFrame, replay: bool) -> None:
    if replay:
        frame = frame.select(
            "payment_reference", "amount", pl.lit("BATCH_REPLAYED").alias("outcome"),
            pl.lit(None, dtype=pl.String).alias("reason_code"), pl.lit(True).alias("duplicate"),
        )
    else:
        frame = frame.select("payment_reference", "amount", pl.col("status").alias("outcome"), "reason_code", "duplicate")
    _copy(conn, "example_bank.payment_request", ["batch_id", *frame.columns],
          frame.with_columns(pl.lit(batch_id).alias("batch_id")))


_DEBIT = """
WITH booked AS (
    INSERT INTO example_bank.ledger_entry (account_number, booking_date, value_date, amount, kind, payment_reference,
                                           batch_id, beneficiary_name, pending_return_reason)
    SELECT %(account)s, %(day)s, %(day)s, -(amount::numeric), 'DEBIT', payment_reference, %(batch_id)s,
           beneficiary_name, pending_return_reason
    FROM debit_candidate ORDER BY seq
    ON CONFLICT (payment_reference) WHERE kind = 'DEBIT' DO NOTHING
    RETURNING amount
)
SELECT count(*), coalesce(-sum(amount), 0) FROM booked
"""


def _with_returns(debits: pl.DataFrame, options: BankOptions) -> pl.DataFrame:
    """The failure simulation's verdict per debit (null: the destination accepts it)."""
    reasons = failure_reasons(debits["destination_key"].to_list(), options.failure_seed, options.failure_rate)
    return debits.with_columns(pl.Series("pending_return_reason", reasons, dtype=pl.String))


def _copy_debits(conn: psycopg.Connection, debits: pl.DataFrame, booking: dict[str, Any],
                 options: BankOptions) -> tuple[int, Decimal]:
    """COPY the debits into the ledger (fails with UniqueViolation if any reference was debited before)."""
    if debits.height == 0:
        return 0, Decimal(0)
    rows = _with_returns(debits, options).select(
        pl.lit(booking["account"]).alias("account_number"),
        pl.lit(booking["day"]).alias("booking_date"),
        pl.lit(booking["day"]).alias("value_date"),
        (pl.lit("-") + pl.col("amount")).alias("amount"),
        pl.lit("DEBIT").alias("kind"),
        "payment_reference",
        pl.lit(booking["batch_id"]).alias("batch_id"),
        "beneficiary_name",
        "pending_return_reason",
    )
    _copy(conn, "example_bank.ledger_entry", rows.columns, rows)
    decimals = debits["amount"].str.extract(r"\.(\d+)$", 1).str.len_chars().max() or 0
    return debits.height, debits["amount_value"].sum().quantize(Decimal(1).scaleb(-int(decimals)))  # type: ignore[union-attr, arg-type]


def _with_replayed(stored: str, replayed: bool) -> str:
    return '{"replayed":' + ("true" if replayed else "false") + "," + stored[1:]


def _results_json(frame: pl.DataFrame) -> str:
    columns = frame.select("payment_reference", "status", "reason_code", "duplicate")
    return columns.select(pl.all().implode()).write_json()[1:-1]


def submit_payment_batch(pool: ConnectionPool, options: BankOptions, raw: bytes) -> str:
    """Process one payment batch; returns the acknowledgement (JSON text, results columnar in arrival order)."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    batch_id = text(body, "batch_id", BATCH_ID)
    account_number = text(body, "account_number", ACCOUNT_NUMBER)
    currency = text(body, "currency", CURRENCY)
    block_reference = text(body, "block_reference", required=False)
    frame = payments_frame(body.get("payments"))
    if frame.height == 0:
        raise bad_request("a batch needs at least one payment")
    day = options.business_date()

    with pool.connection() as conn:
        created = conn.execute(
            "INSERT INTO example_bank.payment_batch (batch_id, account_number, currency, block_reference)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (batch_id) DO NOTHING RETURNING received_at",
            (batch_id, account_number, currency, block_reference),
        ).fetchone()
        if created is None:  # the same batch again (a retry): the first answer, nothing booked
            stored = conn.execute(
                "UPDATE example_bank.payment_batch SET request_count = request_count + 1 WHERE batch_id = %s"
                " RETURNING acknowledgement",
                (batch_id,),
            ).fetchone()
            _log_requests(conn, batch_id, frame, replay=True)  # type: ignore[arg-type]
            return _with_replayed(stored[0], True)  # type: ignore[index]

        _, balance = lock_account(conn, account_number, currency)  # type: ignore[arg-type]
        funds = balance - blocked_amount(conn, account_number)  # type: ignore[arg-type]
        block_remaining = Decimal(0)
        if block_reference is not None:
            block = conn.execute(
                "SELECT account_number, remaining FROM example_bank.fund_block WHERE block_reference = %s FOR UPDATE",
                (block_reference,),
            ).fetchone()
            if block is None or block[0] != account_number:
                raise unprocessable("BLOCK_NOT_FOUND", f"no funds block {block_reference} on account {account_number}")
            block_remaining = block[1]
            funds += block_remaining  # the block's money is this batch's to spend

        checked = validated(frame, currency)  # type: ignore[arg-type]
        booking = {"account": account_number, "day": day, "batch_id": batch_id}
        try:
            with conn.transaction():  # savepoint: the fast path
                outcome = decided(checked, [], funds)
                debited_count, debited = _copy_debits(conn, outcome.filter(pl.col("to_debit")), booking, options)
        except psycopg.errors.UniqueViolation:  # some references were debited before: the careful path
            references = checked.filter(pl.col("invalid_reason").is_null())["payment_reference"].unique().to_list()
            already = [r for (r,) in conn.execute(
                "SELECT payment_reference FROM example_bank.ledger_entry"
                " WHERE kind = 'DEBIT' AND payment_reference = ANY(%s)",
                (references,),
            ).fetchall()]
            outcome = decided(checked, already, funds)
            _copy(conn, "debit_candidate", ["seq", "payment_reference", "amount", "beneficiary_name", "pending_return_reason"],
                  _with_returns(outcome.filter(pl.col("to_debit")), options))
            debited_count, debited = conn.execute(_DEBIT, booking).fetchone()  # type: ignore[arg-type, misc]
        _log_requests(conn, batch_id, outcome, replay=False)  # type: ignore[arg-type]
        if debited:
            conn.execute(
                "UPDATE example_bank.account SET balance = balance - %s, updated_at = now() WHERE account_number = %s",
                (debited, account_number),
            )
            if block_reference is not None and block_remaining > 0:
                conn.execute(
                    "UPDATE example_bank.fund_block SET remaining = remaining - least(remaining, %s),"
                    " status = CASE WHEN remaining <= %s THEN 'CONSUMED' ELSE status END, updated_at = now()"
                    " WHERE block_reference = %s",
                    (debited, debited, block_reference),
                )
        accepted = int((outcome["status"] == "ACCEPTED").sum())
        head = json.dumps(
            {
                "batch_id": batch_id,
                "account_number": account_number,
                "currency": currency,
                "block_reference": block_reference,
                "received_at": created[0].isoformat(),
                "number_of_payments": outcome.height,
                "accepted_count": accepted,
                "rejected_count": outcome.height - accepted,
                "debited_count": debited_count,
                "debited_amount": str(debited),
            },
            separators=(",", ":"),
        )
        ack = f'{head[:-1]},"results":{_results_json(outcome)}}}'
        conn.execute(
            "UPDATE example_bank.payment_batch SET number_of_payments = %s, number_accepted = %s, number_rejected = %s,"
            " number_debited = %s, amount_debited = %s, acknowledgement = %s WHERE batch_id = %s",
            (outcome.height, accepted, outcome.height - accepted, debited_count, debited, ack, batch_id),
        )
        return _with_replayed(ack, False)


def get_payment_batch(pool: ConnectionPool, batch_id: str) -> str:
    with pool.connection() as conn:
        row = conn.execute("SELECT acknowledgement FROM example_bank.payment_batch WHERE batch_id = %s", (batch_id,)).fetchone()
    if row is None or row[0] is None:
        raise not_found("BATCH_NOT_FOUND", f"no payment batch {batch_id}")
    return _with_replayed(row[0], False)
