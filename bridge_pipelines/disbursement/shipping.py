"""Shipping payments to the sponsor bank in batches, exactly once.

1. plan: in one transaction, disbursements ready to ship (RESOLVED; or RECEIVED with their financial addresses
   parsed, for programs without the ID mapper) not yet in a batch are cut into batches (set-wise); each batch
   gets a row in bank_disbursement_batch_status (PENDING) that lists its members (member_disbursement_ids). This is
   the intent, committed BEFORE the bank is called.
2. send: every PENDING batch is sent with its recorded id and the members' bank references. A retry, or a new run
   after a crash, sends exactly the same batch again: the bank de-duplicates on the batch id and on each payment
   reference, so nobody is paid twice, and nothing is lost because the intent is already recorded.
3. acknowledge: in one transaction, the bank's per-payment answer moves members to SHIPPED or FAILED (with the
   bank's reason) and gives each its shipment_batch_id, the batch to ACKNOWLEDGED, and the envelope counters on.
A cancelled disbursement never reaches the bank: PBMS can cancel one only before its envelope is disbursed, and
an envelope cancelled later cancels its batches not yet sent, with their members.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl
import psycopg

from bridge_pipelines.bank.financial_address import FA_FIELDS, with_parsed_financial_address
from bridge_pipelines.bank.protocol import (PAYMENT_COLUMNS, BatchAcknowledgement, ServiceRequestRejected,
                                            ServiceUnavailable, SponsorBankConnector)
from bridge_pipelines.db.frames import copy_frame, read_frame
from bridge_pipelines.db.planner import rows_by_primary_key
from bridge_pipelines.db.statistics import DISBURSEMENT_STATE_COLUMNS, refresh_statistics
from bridge_pipelines.disbursement.envelopes import AWAITING_SHIPMENT, Envelope, shippable_states_when
from bridge_pipelines.disbursement.retry import call_with_retries
from bridge_pipelines.faults import fault_point

log = logging.getLogger(__name__)


# Batches whose members are read ahead of the one being sent (each a frame of one batch in memory).
READ_AHEAD_BATCHES = 2


class ShipmentIncomplete(RuntimeError):
    pass


@dataclass
class _InFlight:
    index: int
    batch_id: str
    members: pl.DataFrame  # the payments sent (record_acknowledgement's members)
    answer: Future  # -> (BatchAcknowledgement, seconds in the call)


def _own_connection(conn: psycopg.Connection) -> psycopg.Connection:
    """A second connection to the same database (for a second thread: a connection is not shared across threads)."""
    password = conn.info.password
    return psycopg.connect(**conn.info.get_parameters(), **({"password": password} if password else {}),
                           autocommit=True, prepare_threshold=None)


@dataclass
class ShippingResult:
    batches_planned: int = 0
    batches_sent: int = 0
    shipped: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    bank_seconds: float = 0.0
    seconds: float = 0.0
    completed: bool = False


# For the plan's transaction only: its two sorts of the envelope's disbursements (by bank reference for the window,
# then each batch's members) stay in memory instead of spilling to temporary files: 58 and 66 MB at 1,000,000 against
# the server's default of 64 MB.
PLAN_WORK_MEM = "512MB"

PLAN_SQL = """
WITH planned AS (  -- members of batches recorded earlier (whatever their state): never planned twice
    SELECT unnest(member_disbursement_ids) AS disbursement_id FROM bridge.bank_disbursement_batch_status
    WHERE disbursement_envelope_id = %(envelope_id)s
),
todo AS (
    SELECT d.disbursement_id, d.bank_reference, d.disbursement_amount,
           (row_number() OVER (ORDER BY d.bank_reference) - 1) / %(batch_size)s AS chunk
    FROM bridge.disbursement d
    LEFT JOIN planned p ON p.disbursement_id = d.disbursement_id
    WHERE d.disbursement_envelope_id = %(envelope_id)s AND d.disbursement_status = ANY(%(states)s)
      AND p.disbursement_id IS NULL
),
chunks AS (
    SELECT chunk, count(*) AS n, sum(disbursement_amount) AS total,
           array_agg(disbursement_id ORDER BY bank_reference) AS members
    FROM todo GROUP BY chunk
),
numbered AS MATERIALIZED (
    SELECT chunk, n, total, members,
           'PB' || lpad(upper(to_hex(nextval('bridge.payment_batch_seq'))), 14, '0') AS batch_id,
           coalesce((SELECT max(batch_sequence) FROM bridge.bank_disbursement_batch_status
                     WHERE disbursement_envelope_id = %(envelope_id)s), 0) + chunk + 1 AS batch_sequence
    FROM (SELECT * FROM chunks ORDER BY chunk) ordered
),
batches AS (
    INSERT INTO bridge.bank_disbursement_batch_status (bank_disbursement_batch_id, disbursement_envelope_id,
        batch_sequence, number_of_disbursements, total_disbursement_amount, member_disbursement_ids)
    SELECT batch_id, %(envelope_id)s, batch_sequence, n, total, members FROM numbered
    RETURNING 1
)
SELECT count(*) FROM batches
"""

# A batch's members, in the order they were planned, with their state (batch_payments keeps those still waiting for
# the bank's answer: AWAITING_SHIPMENT; not filtered here, see record_acknowledgement). For programs without the ID
# mapper the beneficiary_id is the financial address (parsed in Polars, see with_parsed_financial_address): there is no
# resolution row to look up for them.
_MEMBERS_SQL = """
SELECT d.disbursement_status, d.bank_reference AS payment_reference, d.disbursement_id, d.disbursement_amount AS amount,
       e.disbursement_currency_code AS currency, d.beneficiary_name, d.narrative, d.beneficiary_id{fa_columns}
FROM bridge.bank_disbursement_batch_status b
CROSS JOIN LATERAL unnest(b.member_disbursement_ids) WITH ORDINALITY AS member(disbursement_id, position)
JOIN bridge.disbursement d ON d.disbursement_id = member.disbursement_id
JOIN bridge.disbursement_envelope e ON e.disbursement_envelope_id = d.disbursement_envelope_id{fa_join}
WHERE b.bank_disbursement_batch_id = %s
ORDER BY member.position
"""
MEMBERS_SQL = _MEMBERS_SQL.format(
    fa_columns=", m.fa_type, " + ", ".join(f"m.{name}" for name in FA_FIELDS),
    fa_join="\nLEFT JOIN bridge.mapper_resolution_details m ON m.disbursement_id = d.disbursement_id "
            "AND m.mapper_status = 'RESOLVED'")
MEMBERS_WITHOUT_MAPPER_SQL = _MEMBERS_SQL.format(fa_columns="", fa_join="")


def _waiting_members(conn: psycopg.Connection, batch_id: str, mapper_required: bool) -> pl.DataFrame:
    """The members of a recorded batch still waiting for the bank's answer (in a state of AWAITING_SHIPMENT, kept as
    `from_status`: the acknowledgement moves a member only from the state it was read in), as MEMBERS_SQL reads
    them."""
    members = read_frame(conn, MEMBERS_SQL if mapper_required else MEMBERS_WITHOUT_MAPPER_SQL, (batch_id,))
    if members.height:
        members = members.filter(pl.col("disbursement_status").is_in(AWAITING_SHIPMENT))
    return members.rename({"disbursement_status": "from_status"})


def batch_payments(conn: psycopg.Connection, batch_id: str, mapper_required: bool) -> pl.DataFrame:
    """The payments of a recorded batch that the bank has not answered for yet (PAYMENT_COLUMNS + disbursement_id and
    beneficiary_id); record_acknowledgement takes this frame as the members the answer is for."""
    members = _waiting_members(conn, batch_id, mapper_required)
    if members.height == 0 or mapper_required:
        return members
    return with_parsed_financial_address(members.lazy(), "beneficiary_id").drop("fa_error").collect()


def plan_batches(conn: psycopg.Connection, envelope_id: str, batch_size: int) -> int:
    """Record the intent: cut the envelope's unbatched disbursements that are ready to ship (`shippable_states`)
    into batches. Returns batches made."""
    with conn.transaction():
        conn.execute(f"SET LOCAL work_mem = '{PLAN_WORK_MEM}'")
        cancelled, addresses_parsed = conn.execute(
            """SELECT e.cancellation_status = 'CANCELLED', bs.financial_addresses_parsed_at IS NOT NULL
               FROM bridge.disbursement_envelope e
               JOIN bridge.disbursement_envelope_batch_status bs USING (disbursement_envelope_id)
               WHERE e.disbursement_envelope_id = %s FOR UPDATE OF bs, e""", (envelope_id,)).fetchone()
        if cancelled:
            return 0
        batches = conn.execute(PLAN_SQL, dict(envelope_id=envelope_id, batch_size=batch_size,
                                              states=shippable_states_when(addresses_parsed))).fetchone()[0]
        if batches:
            conn.execute("""UPDATE bridge.disbursement_envelope_batch_status SET shipment_status = 'IN_PROGRESS',
                            updated_at = now() WHERE disbursement_envelope_id = %s""", (envelope_id,))
    return batches


def _pending_batches(conn: psycopg.Connection, envelope_id: str) -> list[tuple[str, int]]:
    return conn.execute(
        """SELECT bank_disbursement_batch_id, number_of_disbursements FROM bridge.bank_disbursement_batch_status
           WHERE disbursement_envelope_id = %s AND disbursement_payment_status IN ('PENDING', 'ERROR')
           ORDER BY batch_sequence""", (envelope_id,)).fetchall()


def settle_batches_of_cancelled_envelope(conn: psycopg.Connection, envelope_id: str,
                                         bank: SponsorBankConnector) -> tuple[int, int]:
    """An envelope was cancelled while batches were recorded but not acknowledged. Ask the bank: a batch it has
    is recorded as it answered (those payments were made); a batch it never received is cancelled, never sent.
    Returns (batches acknowledged, disbursements cancelled)."""
    acknowledged = cancelled = 0
    for batch_id, _size in _pending_batches(conn, envelope_id):
        ack = bank.query_batch(batch_id)
        if ack is not None:
            record_acknowledgement(conn, envelope_id, batch_id, ack)
            acknowledged += 1
            continue
        with conn.transaction():
            cancelled += conn.execute(
                """WITH members AS (
                       SELECT unnest(member_disbursement_ids) AS disbursement_id
                       FROM bridge.bank_disbursement_batch_status WHERE bank_disbursement_batch_id = %(b)s),
                   target AS (
                       SELECT d.disbursement_id, d.disbursement_status AS from_status
                       FROM members m JOIN bridge.disbursement d USING (disbursement_id)
                       WHERE d.disbursement_status = ANY(%(waiting)s)),
                   changed AS (
                       UPDATE bridge.disbursement d SET disbursement_status = 'CANCELLED',
                              status_reason_code = 'ENVELOPE_CANCELLED', cancelled_at = now(), status_updated_at = now()
                       FROM target t
                       WHERE d.disbursement_id = t.disbursement_id AND d.disbursement_status = t.from_status
                       RETURNING d.disbursement_id, d.disbursement_envelope_id, t.from_status)
                   INSERT INTO bridge.disbursement_event (disbursement_id, disbursement_envelope_id, from_status,
                                                          to_status, reason_code, detail)
                   SELECT disbursement_id, disbursement_envelope_id, from_status, 'CANCELLED', 'ENVELOPE_CANCELLED',
                          'batch ' || %(b)s || ' never reached the bank' FROM changed""",
                dict(b=batch_id, waiting=list(AWAITING_SHIPMENT))).rowcount
            conn.execute("UPDATE bridge.bank_disbursement_batch_status SET disbursement_payment_status = 'CANCELLED', "
                         "latest_timestamp = now() WHERE bank_disbursement_batch_id = %s", (batch_id,))
    return acknowledged, cancelled


def _record_attempt_failure(conn: psycopg.Connection, envelope_id: str, batch_id: str, code: str,
                            final: bool) -> None:
    with conn.transaction():
        conn.execute("""UPDATE bridge.bank_disbursement_batch_status SET latest_error_code = %s,
                        latest_timestamp = now(),
                        disbursement_payment_status = CASE WHEN %s THEN 'ERROR' ELSE disbursement_payment_status END
                        WHERE bank_disbursement_batch_id = %s""", (code, final, batch_id))
        conn.execute("""UPDATE bridge.disbursement_envelope_batch_status SET shipment_latest_error_code = %s,
                        shipment_latest_timestamp = now(),
                        shipment_status = CASE WHEN %s THEN 'ERROR' ELSE shipment_status END, updated_at = now()
                        WHERE disbursement_envelope_id = %s""", (code, final, envelope_id))


def record_acknowledgement(conn: psycopg.Connection, envelope_id: str, batch_id: str, ack: BatchAcknowledgement,
                           members: pl.DataFrame | None = None) -> tuple[int, int, dict[str, int]]:
    """One transaction: members to SHIPPED / FAILED, batch ACKNOWLEDGED, envelope counters.

    `members`: the batch's payments as sent (batch_payments: disbursement_id, payment_reference and from_status, the
    state of each member waiting for the bank when read); None reads them now, in this transaction (a batch settled
    after a cancellation). A member whose state changed since it was read is not touched: the UPDATE moves only
    members still in the state they were read in."""
    with conn.transaction():
        if members is None:
            members = _waiting_members(conn, batch_id, mapper_required=False)  # only ids and references are used
        answers = ack.results.select("payment_reference", "status", "reason_code")
        repeated = answers.height - answers["payment_reference"].n_unique()
        if repeated:
            raise ShipmentIncomplete(f"batch {batch_id}: the bank's acknowledgement names {repeated} payment "
                                     "reference(s) more than once; the batch stays PENDING and will be sent again")
        # Each waiting member with the bank's answer for its reference, joined here (Polars) rather than in the
        # database: the only rows written are the ones the UPDATE below reads, each found by primary key.
        answered = (members.select("disbursement_id", "payment_reference", "from_status")
                    .join(answers, on="payment_reference", how="left"))
        missing = answered["status"].null_count()
        if missing:
            raise ShipmentIncomplete(f"batch {batch_id}: the bank's acknowledgement lacks {missing} payment(s); "
                                     "the batch stays PENDING and will be sent again")
        conn.execute("CREATE TEMP TABLE batch_member (disbursement_id text COLLATE \"C\", from_status text, "
                     "status text, reason_code text) ON COMMIT DROP")
        copy_frame(conn, answered, "batch_member", ["disbursement_id", "from_status", "status", "reason_code"])
        # statistics: without them the planner guesses the temp table's size (and chose plans that scanned the
        # whole envelope per batch: 6-10 s per batch at 1,000,000 disbursements instead of ~0.1 s)
        conn.execute("ANALYZE batch_member")
        # Nothing here restricts bridge.disbursement by state with a constant: its statistics lag behind the run (at
        # the start of shipping they may still say that no disbursement is RESOLVED), and a plan built on "one
        # RESOLVED row" scanned the whole envelope once per member (406 s for one 10,000-payment batch of a 300,000
        # envelope). The state is compared with a column of batch_member instead.
        # A batch is a few ten thousand members of an envelope of millions: each member is found by primary key. The
        # planner costs two other plans as cheaper, and both read far more: a merge join reads the disbursement index
        # from its first entry up to the batch's last member (the whole envelope up to that batch: 1,000,000 entries
        # for the 10,000 members of batch 100), a hash join the whole envelope for every batch (below ~500,000
        # disbursements it is chosen: 130 ms per batch at 300,000 instead of 20). Both are off for this UPDATE; what
        # is left is the members, one primary key lookup each.
        # SHIPPED is recorded once for the batch (envelope_event below), FAILED per disbursement with its reason.
        with rows_by_primary_key(conn):
            shipped, shipped_amount, failed, failed_amount = conn.execute(
                """WITH changed AS (
                       UPDATE bridge.disbursement d
                       SET disbursement_status = CASE WHEN a.status = 'ACCEPTED' THEN 'SHIPPED' ELSE 'FAILED' END,
                           status_reason_code = CASE WHEN a.status = 'ACCEPTED' THEN NULL ELSE a.reason_code END,
                           shipped_at = CASE WHEN a.status = 'ACCEPTED' THEN now() END, status_updated_at = now(),
                           shipment_batch_id = %(batch_id)s
                       FROM batch_member a  -- still as read: compared with a column, not a constant (above)
                       WHERE d.disbursement_id = a.disbursement_id AND d.disbursement_status = a.from_status
                       RETURNING d.disbursement_id, d.disbursement_envelope_id, d.disbursement_status,
                                 d.status_reason_code, d.disbursement_amount, a.from_status
                   ),
                   failed_events AS (
                       INSERT INTO bridge.disbursement_event (disbursement_id, disbursement_envelope_id, from_status,
                                                              to_status, reason_code, detail)
                       SELECT disbursement_id, disbursement_envelope_id, from_status, disbursement_status,
                              status_reason_code, %(batch_id)s FROM changed WHERE disbursement_status = 'FAILED'
                   )
                   SELECT count(*) FILTER (WHERE disbursement_status = 'SHIPPED'),
                          coalesce(sum(disbursement_amount) FILTER (WHERE disbursement_status = 'SHIPPED'), 0),
                          count(*) FILTER (WHERE disbursement_status = 'FAILED'),
                          coalesce(sum(disbursement_amount) FILTER (WHERE disbursement_status = 'FAILED'), 0)
                   FROM changed""", dict(batch_id=batch_id)).fetchone()
        conn.execute("INSERT INTO bridge.envelope_event (disbursement_envelope_id, event_type, detail) "
                     "VALUES (%s, 'BATCH_ACKNOWLEDGED', %s)",
                     (envelope_id, f"batch {batch_id}: {shipped} disbursement(s) SHIPPED, {failed} FAILED"))
        conn.execute("""UPDATE bridge.bank_disbursement_batch_status SET disbursement_payment_status = 'ACKNOWLEDGED',
                        number_accepted = %s, number_rejected = %s, acknowledged_at = now(), latest_error_code = NULL,
                        latest_timestamp = now() WHERE bank_disbursement_batch_id = %s""",
                     (ack.accepted_count, ack.rejected_count, batch_id))
        conn.execute("""UPDATE bridge.disbursement_envelope_batch_status SET
                        number_of_disbursements_shipped = number_of_disbursements_shipped + %s,
                        total_disbursement_amount_shipped = total_disbursement_amount_shipped + %s,
                        number_of_disbursements_failed = number_of_disbursements_failed + %s,
                        total_disbursement_amount_failed = total_disbursement_amount_failed + %s,
                        shipment_latest_timestamp = now(), updated_at = now()
                        WHERE disbursement_envelope_id = %s""",
                     (shipped, shipped_amount, failed, failed_amount, envelope_id))
    reasons = ack.results.filter(pl.col("status") != "ACCEPTED").group_by("reason_code").len()
    return shipped, failed, {reason or "UNKNOWN": count for reason, count in reasons.iter_rows()}


def ship_envelope(conn: psycopg.Connection, envelope: Envelope, bank: SponsorBankConnector, block_reference: str | None,
                  batch_size: int, max_attempts: int, backoff_seconds: float = 0.5,
                  progress: Callable[[str], None] = log.info) -> ShippingResult:
    started = time.perf_counter()
    result = ShippingResult()
    envelope_id = envelope.envelope_id
    if envelope.cancelled:
        call_with_retries(f"settling the batches of cancelled envelope {envelope_id}",
                          lambda: settle_batches_of_cancelled_envelope(conn, envelope_id, bank), max_attempts,
                          lambda *_: None, backoff_seconds)
        result.completed = finish_if_complete(conn, envelope_id)
        result.seconds = time.perf_counter() - started
        return result
    result.batches_planned = plan_batches(conn, envelope_id, batch_size)
    pending = _pending_batches(conn, envelope_id)
    sent_rows = 0

    def acknowledge(batch: _InFlight) -> None:
        nonlocal sent_rows
        ack, call_seconds = batch.answer.result()
        result.bank_seconds += call_seconds
        fault_point("after_bank_call")
        shipped, failed_count, reasons = record_acknowledgement(conn, envelope_id, batch.batch_id, ack,
                                                                batch.members)
        result.batches_sent += 1
        result.shipped += shipped
        result.failed += failed_count
        for reason, count in reasons.items():
            result.failed_by_reason[reason] = result.failed_by_reason.get(reason, 0) + count
        sent_rows += batch.members.height
        elapsed = time.perf_counter() - started
        progress(f"envelope {envelope_id}: batch {batch.index} of {len(pending)} ({batch.batch_id}, "
                 f"{batch.members.height} payments) acknowledged; {sent_rows / elapsed:,.0f} payments/s")

    # The bank works on batch n while batch n-1's answer is recorded and batch n+1 is read: one bank call in flight
    # beside the database work, never more. Each batch's intent is recorded before its call and its answer after,
    # exactly as without the overlap, so a crash anywhere still re-sends only batches whose answer is not recorded
    # (the bank de-duplicates them). The bank thread records its failed attempts on a connection of its own.
    # The members of the next batches are read ahead by a third thread, also on a connection of its own: reading
    # them (a join per member and the financial addresses parsed) took a third of each batch's time on this
    # thread, which is the one the batches wait for. A read writes nothing; batches share no member, so reading a
    # batch before the earlier ones are acknowledged reads what reading it after would.
    with _own_connection(conn) as bank_conn, _own_connection(conn) as reader_conn, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="bank") as bank_thread, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="members") as reader_thread:
        def send(batch_id: str, payments: pl.DataFrame) -> tuple[BatchAcknowledgement, float]:
            call_started = time.perf_counter()

            def failed(error: ServiceUnavailable, _attempt: int, final: bool) -> None:
                _record_attempt_failure(bank_conn, envelope_id, batch_id, error.code, final)

            try:
                ack = call_with_retries(
                    f"payment batch {batch_id} of envelope {envelope_id}",
                    lambda: bank.submit_payment_batch_frame(batch_id, envelope.account_number, envelope.currency,
                                                            block_reference, payments.select(PAYMENT_COLUMNS)),
                    max_attempts, failed, backoff_seconds)
            except ServiceRequestRejected as error:
                _record_attempt_failure(bank_conn, envelope_id, batch_id, error.code, True)
                raise
            return ack, time.perf_counter() - call_started

        upcoming = iter(enumerate(pending, start=1))
        reads: deque[tuple[int, str, Future]] = deque()

        def read_ahead() -> None:
            while len(reads) < READ_AHEAD_BATCHES:
                item = next(upcoming, None)
                if item is None:
                    return
                index, (batch_id, _size) = item
                reads.append((index, batch_id, reader_thread.submit(batch_payments, reader_conn, batch_id,
                                                                    envelope.mapper_required)))

        in_flight: deque[_InFlight] = deque()
        try:
            read_ahead()
            while reads:
                index, batch_id, members_read = reads.popleft()
                payments = members_read.result()
                read_ahead()
                if payments.height == 0:  # every member already acknowledged by an earlier run
                    conn.execute("UPDATE bridge.bank_disbursement_batch_status SET disbursement_payment_status = "
                                 "'ACKNOWLEDGED', acknowledged_at = coalesce(acknowledged_at, now()) "
                                 "WHERE bank_disbursement_batch_id = %s", (batch_id,))
                    continue
                conn.execute("UPDATE bridge.bank_disbursement_batch_status SET attempts = attempts + 1, "
                             "latest_timestamp = now() WHERE bank_disbursement_batch_id = %s", (batch_id,))
                fault_point("after_batch_recorded")
                in_flight.append(_InFlight(index, batch_id, payments, bank_thread.submit(send, batch_id, payments)))
                if len(in_flight) > 1:
                    acknowledge(in_flight.popleft())
            while in_flight:
                acknowledge(in_flight.popleft())
        except BaseException:
            for _index, _batch_id, members_read in reads:  # nothing of theirs was sent
                members_read.cancel()
            # a batch still at the bank: record its answer if it comes (else it stays PENDING and is sent again)
            for batch in in_flight:
                try:
                    ack, _seconds = batch.answer.result()
                    record_acknowledgement(conn, envelope_id, batch.batch_id, ack, batch.members)
                except Exception as error:  # noqa: BLE001 - the first error is the one raised
                    log.warning("batch %s: answer not recorded (%s); it will be sent again", batch.batch_id, error)
            raise
    result.completed = finish_if_complete(conn, envelope_id)
    refresh_statistics(conn, "bridge.disbursement", result.shipped + result.failed,  # for reconciliation's plans
                       DISBURSEMENT_STATE_COLUMNS)
    result.seconds = time.perf_counter() - started
    return result


def finish_if_complete(conn: psycopg.Connection, envelope_id: str) -> bool:
    """Mark shipment COMPLETED when nothing is left to send."""
    left = conn.execute(
        """SELECT (SELECT count(*) FROM bridge.disbursement WHERE disbursement_envelope_id = %(e)s
                     AND disbursement_status IN ('RECEIVED', 'RESOLVED'))
                + (SELECT count(*) FROM bridge.bank_disbursement_batch_status WHERE disbursement_envelope_id = %(e)s
                     AND disbursement_payment_status IN ('PENDING', 'ERROR'))""", dict(e=envelope_id)).fetchone()[0]
    if left:
        return False
    conn.execute("""UPDATE bridge.disbursement_envelope_batch_status SET shipment_status = 'COMPLETED',
                    disbursement_completed_at = coalesce(disbursement_completed_at, now()), updated_at = now()
                    WHERE disbursement_envelope_id = %s""", (envelope_id,))
    return True
