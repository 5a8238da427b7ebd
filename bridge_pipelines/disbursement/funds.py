"""Funds: one check and one block per envelope, for the amount still to be shipped; release on cancellation.

Every attempt is recorded (attempts, timestamp, last error) before the next one, so the envelope's state is visible
while it waits; transport failures are retried with backoff a bounded number of times and then end in ERROR, which
an operator clears with `bridge retry ENVELOPE_ID funds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import psycopg

from bridge_pipelines.bank.protocol import ServiceRequestRejected, ServiceUnavailable, SponsorBankConnector
from bridge_pipelines.disbursement.envelopes import Envelope, shippable_states
from bridge_pipelines.disbursement.retry import call_with_retries


class FundsNotAvailable(RuntimeError):
    pass


class FundsBlockFailed(RuntimeError):
    pass


@dataclass
class FundsResult:
    amount_to_ship: Decimal
    available: bool
    blocked: bool
    block_reference: str | None
    available_balance: Decimal | None = None
    already_blocked: bool = False


def amount_to_ship(conn: psycopg.Connection, envelope_id: str) -> tuple[int, Decimal]:
    count, total = conn.execute(
        """SELECT count(*), coalesce(sum(disbursement_amount), 0) FROM bridge.disbursement
           WHERE disbursement_envelope_id = %s AND disbursement_status = ANY(%s)""",
        (envelope_id, shippable_states(conn, envelope_id))).fetchone()
    return count, total


def _funds_state(conn: psycopg.Connection, envelope_id: str) -> tuple[str, str, str | None, Decimal | None]:
    return conn.execute(
        """SELECT funds_available_with_bank, funds_blocked_with_bank, funds_blocked_reference_number,
                  funds_blocked_amount
           FROM bridge.disbursement_envelope_batch_status WHERE disbursement_envelope_id = %s""",
        (envelope_id,)).fetchone()


def _record_check(conn: psycopg.Connection, envelope_id: str, state: str, error_code: str | None) -> None:
    conn.execute(
        """UPDATE bridge.disbursement_envelope_batch_status
           SET funds_available_with_bank = %s, funds_available_latest_error_code = %s,
               funds_available_latest_timestamp = now(), funds_available_attempts = funds_available_attempts + 1,
               updated_at = now()
           WHERE disbursement_envelope_id = %s""", (state, error_code, envelope_id))


def _record_block(conn: psycopg.Connection, envelope_id: str, state: str, error_code: str | None,
                  reference: str | None = None, amount: Decimal | None = None) -> None:
    conn.execute(
        """UPDATE bridge.disbursement_envelope_batch_status
           SET funds_blocked_with_bank = %s, funds_blocked_latest_error_code = %s,
               funds_blocked_latest_timestamp = now(), funds_blocked_attempts = funds_blocked_attempts + 1,
               funds_blocked_reference_number = coalesce(%s, funds_blocked_reference_number),
               funds_blocked_amount = coalesce(%s, funds_blocked_amount), updated_at = now()
           WHERE disbursement_envelope_id = %s""", (state, error_code, reference, amount, envelope_id))


def check_and_block_funds(conn: psycopg.Connection, envelope: Envelope, bank: SponsorBankConnector,
                          max_attempts: int, backoff_seconds: float = 0.5) -> FundsResult:
    envelope_id = envelope.envelope_id
    available_state, blocked_state, reference, blocked_amount = _funds_state(conn, envelope_id)
    _count, total = amount_to_ship(conn, envelope_id)
    if blocked_state == "FUNDS_BLOCK_SUCCESS":
        return FundsResult(total, True, True, reference, already_blocked=True)
    if total == 0:
        return FundsResult(total, True, False, None)

    def check_failed(error: ServiceUnavailable, _attempt: int, final: bool) -> None:
        _record_check(conn, envelope_id, "ERROR" if final else available_state, error.code)

    try:
        check = call_with_retries(
            f"funds check for envelope {envelope_id}",
            lambda: bank.check_funds(envelope.account_number, envelope.currency, total),
            max_attempts, check_failed, backoff_seconds)
    except ServiceRequestRejected as error:
        _record_check(conn, envelope_id, "ERROR", error.code)
        raise
    if not check.available:
        _record_check(conn, envelope_id, "FUNDS_NOT_AVAILABLE", "INSUFFICIENT_FUNDS")
        raise FundsNotAvailable(
            f"envelope {envelope_id}: account {envelope.account_number} has {check.available_balance} "
            f"{envelope.currency} available, {total} needed. Top up the account; the bridge checks again later.")
    _record_check(conn, envelope_id, "FUNDS_AVAILABLE", None)

    def block_failed(error: ServiceUnavailable, _attempt: int, final: bool) -> None:
        _record_block(conn, envelope_id, "ERROR" if final else blocked_state, error.code)

    try:
        block = call_with_retries(
            f"funds block for envelope {envelope_id}",
            lambda: bank.block_funds(f"ENV:{envelope_id}", envelope.account_number, envelope.currency, total),
            max_attempts, block_failed, backoff_seconds)
    except ServiceRequestRejected as error:
        _record_block(conn, envelope_id, "ERROR", error.code)
        raise
    if not block.blocked:
        _record_block(conn, envelope_id, "FUNDS_BLOCK_FAILURE", block.status)
        raise FundsBlockFailed(f"envelope {envelope_id}: the bank refused to block {total} {envelope.currency} "
                               f"({block.status})")
    _record_block(conn, envelope_id, "FUNDS_BLOCK_SUCCESS", None, block.block_reference, total)
    conn.execute("INSERT INTO bridge.envelope_event (disbursement_envelope_id, event_type, detail) VALUES "
                 "(%s, 'FUNDS_BLOCKED', %s)", (envelope_id, f"{total} {envelope.currency}, block {block.block_reference}"))
    return FundsResult(total, True, True, block.block_reference, check.available_balance)


def release_unspent_block(conn: psycopg.Connection, envelope: Envelope, bank: SponsorBankConnector,
                          max_attempts: int, backoff_seconds: float = 0.5) -> Decimal | None:
    """Give back what is left of the envelope's block (after cancellation or when shipping is complete)."""
    _available, blocked_state, reference, _amount = _funds_state(conn, envelope.envelope_id)
    released_at = conn.execute("SELECT funds_released_timestamp FROM bridge.disbursement_envelope_batch_status "
                               "WHERE disbursement_envelope_id = %s", (envelope.envelope_id,)).fetchone()[0]
    if blocked_state != "FUNDS_BLOCK_SUCCESS" or reference is None or released_at is not None:
        return None
    released = call_with_retries(f"release of block {reference}", lambda: bank.release_funds(reference),
                                 max_attempts, lambda *_: None, backoff_seconds)
    conn.execute("""UPDATE bridge.disbursement_envelope_batch_status
                    SET funds_released_amount = %s, funds_released_timestamp = now(), updated_at = now()
                    WHERE disbursement_envelope_id = %s""", (released, envelope.envelope_id))
    conn.execute("INSERT INTO bridge.envelope_event (disbursement_envelope_id, event_type, detail) VALUES "
                 "(%s, 'FUNDS_RELEASED', %s)", (envelope.envelope_id, f"{released} released from block {reference}"))
    return released
