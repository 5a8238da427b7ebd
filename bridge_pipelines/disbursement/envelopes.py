"""Which envelopes the disbursement pipeline should work on, and starting work on one.

An envelope is due when it is accepted, not cancelled, every declared disbursement has been received (count and
amount), and the business date has reached its schedule date. Work on an envelope is guarded by a PostgreSQL
advisory lock per envelope: a process that dies releases it, which is how the sensor tells a dead run from a live
one without trusting any process's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from bridge_pipelines.db.locks import advisory_lock, advisory_lock_free

ENVELOPE_LOCK_CLASS = 7311


class EnvelopeNotReady(RuntimeError):
    """The envelope may not be disbursed (yet); the message says why."""


@dataclass(frozen=True)
class Envelope:
    envelope_id: str
    program: str
    currency: str
    sponsor_bank_code: str
    account_number: str
    branch_code: str | None
    mapper_required: bool
    cancelled: bool
    pipeline_runs: int


# Candidates for a pipeline run, with the run key the sensor should use. A run key changes only when a run has
# started (disbursement_pipeline_runs), so a queued-but-not-started run is never requested twice.
CANDIDATES_SQL = """
SELECT e.disbursement_envelope_id AS envelope_id,
       bs.disbursement_pipeline_runs AS pipeline_runs,
       CASE WHEN bs.disbursement_started_at IS NULL THEN 'start'
            WHEN e.cancellation_status = 'CANCELLED' THEN 'release'
            WHEN bs.funds_available_with_bank = 'FUNDS_NOT_AVAILABLE'
                 OR bs.funds_blocked_with_bank = 'FUNDS_BLOCK_FAILURE' THEN 'funds_retry'
            ELSE 'resume' END AS reason
FROM bridge.disbursement_envelope e
JOIN bridge.disbursement_envelope_batch_status bs USING (disbursement_envelope_id)
WHERE bs.disbursement_completed_at IS NULL
  AND (
        -- due and complete, never started
        (bs.disbursement_started_at IS NULL
         AND e.cancellation_status = 'NOT_CANCELLED'
         AND e.disbursement_schedule_date <= %(business_date)s
         AND bs.number_of_disbursements_received = e.number_of_disbursements
         AND bs.total_disbursement_amount_received = e.total_disbursement_amount)
        -- started, not finished, not in an ERROR state an operator must look at, and no process holds it
     OR (bs.disbursement_started_at IS NOT NULL
         AND 'ERROR' NOT IN (bs.funds_available_with_bank, bs.funds_blocked_with_bank, bs.shipment_status,
                             bs.id_mapper_resolution_status)
         AND bs.disbursement_pipeline_runs < %(max_runs)s
         AND (bs.funds_available_with_bank <> 'FUNDS_NOT_AVAILABLE'
              OR bs.funds_available_latest_timestamp < now() - make_interval(secs => %(funds_retry_seconds)s))
         AND (bs.funds_blocked_with_bank <> 'FUNDS_BLOCK_FAILURE'
              OR bs.funds_blocked_latest_timestamp < now() - make_interval(secs => %(funds_retry_seconds)s)))
        -- cancelled after work started: settle recorded batches with the bank and release the block, even if a
        -- step was in ERROR (nothing more will be paid from this envelope)
     OR (bs.disbursement_started_at IS NOT NULL AND e.cancellation_status = 'CANCELLED'
         AND bs.disbursement_pipeline_runs < %(max_runs)s)
  )
ORDER BY e.disbursement_schedule_date, e.disbursement_envelope_id
LIMIT %(limit)s
"""


def pipeline_candidates(conn: psycopg.Connection, business_date: date, max_runs: int = 10,
                        funds_retry_seconds: int = 300, limit: int = 500) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(CANDIDATES_SQL, dict(business_date=business_date, max_runs=max_runs,
                                                 funds_retry_seconds=funds_retry_seconds, limit=limit)).fetchall()
    return [row for row in rows
            if row["reason"] == "start" or advisory_lock_free(conn, ENVELOPE_LOCK_CLASS, row["envelope_id"])]


# The states of a disbursement that waits for shipping: RESOLVED, or RECEIVED once its envelope's financial addresses
# were parsed (programs without the ID mapper ship straight from RECEIVED: migration 0017). A batch's members waiting
# for the bank's answer are in one of them; planning takes only the ones `shippable_states` gives for the envelope.
AWAITING_SHIPMENT = ("RECEIVED", "RESOLVED")


def shippable_states_when(addresses_parsed: bool) -> list[str]:
    """The states from which an envelope's disbursements may be put in a payment batch: RESOLVED, and RECEIVED too
    once account resolution parsed the envelope's financial addresses (`financial_addresses_parsed_at`: programs
    without the ID mapper). Until then a RECEIVED disbursement has no account anyone checked and is never planned."""
    return list(AWAITING_SHIPMENT) if addresses_parsed else ["RESOLVED"]


def shippable_states(conn: psycopg.Connection, envelope_id: str) -> list[str]:
    """shippable_states_when, for the envelope as it is recorded now."""
    row = conn.execute("SELECT financial_addresses_parsed_at IS NOT NULL "
                       "FROM bridge.disbursement_envelope_batch_status WHERE disbursement_envelope_id = %s",
                       (envelope_id,)).fetchone()
    return shippable_states_when(bool(row and row[0]))


@dataclass(frozen=True)
class ReceivedAudit:
    """An envelope's declared count and total, its received counters, and a recount of its rows (a disbursement
    cancelled by PBMS gives its place back, so it is not counted)."""
    declared: int
    declared_total: Decimal
    cancelled: bool
    received: int
    received_total: Decimal
    rows: int
    rows_total: Decimal

    @property
    def adds_up(self) -> bool:
        """Received = declared, and the counters equal the recount (a cancelled envelope passes)."""
        return self.cancelled or (self.declared == self.received == self.rows
                                  and self.declared_total == self.received_total == self.rows_total)


# The recount is one pass over the envelope's rows (count and total together) and not correlated with the envelope
# row, so PostgreSQL may recount on several cores; the counters are read in the same statement, hence the same
# snapshot.
RECEIVED_AUDIT_SQL = """
SELECT e.number_of_disbursements, e.total_disbursement_amount, e.cancellation_status = 'CANCELLED',
       bs.number_of_disbursements_received, bs.total_disbursement_amount_received, r.rows, r.rows_total
FROM bridge.disbursement_envelope e
JOIN bridge.disbursement_envelope_batch_status bs USING (disbursement_envelope_id),
     (SELECT count(*) AS rows, coalesce(sum(disbursement_amount), 0) AS rows_total FROM bridge.disbursement
      WHERE disbursement_envelope_id = %(e)s AND status_reason_code IS DISTINCT FROM 'CANCELLED_BY_PBMS') r
WHERE e.disbursement_envelope_id = %(e)s
"""


def received_audit(conn: psycopg.Connection, envelope_id: str) -> ReceivedAudit | None:
    """The envelope's received counters against its declaration and a recount (None: no such envelope)."""
    row = conn.execute(RECEIVED_AUDIT_SQL, dict(e=envelope_id)).fetchone()
    return ReceivedAudit(*row) if row else None


def envelope_lock(conn: psycopg.Connection, envelope_id: str):
    """Held for the duration of a pipeline step (waits if another step holds it)."""
    return advisory_lock(conn, ENVELOPE_LOCK_CLASS, envelope_id)


def load_envelope(conn: psycopg.Connection, envelope_id: str) -> Envelope:
    row = conn.execute(
        """SELECT e.disbursement_envelope_id, e.benefit_program_mnemonic, e.disbursement_currency_code,
                  p.sponsor_bank_code, p.sponsor_bank_account_number, p.sponsor_bank_branch_code,
                  p.id_mapper_resolution_required, e.cancellation_status = 'CANCELLED',
                  bs.disbursement_pipeline_runs
           FROM bridge.disbursement_envelope e
           JOIN bridge.benefit_program_configuration p USING (benefit_program_mnemonic)
           JOIN bridge.disbursement_envelope_batch_status bs USING (disbursement_envelope_id)
           WHERE e.disbursement_envelope_id = %s""", (envelope_id,)).fetchone()
    if row is None:
        raise EnvelopeNotReady(f"envelope {envelope_id} does not exist (was it accepted by intake?)")
    return Envelope(*row)


def begin_pipeline_run(conn: psycopg.Connection, envelope_id: str, business_date: date) -> Envelope:
    """Mark the envelope as being disbursed (from now on PBMS can neither add nor cancel its disbursements) and
    count the run. Refuses an envelope that is not due or not complete, unless work on it already started."""
    with conn.transaction():
        row = conn.execute(
            """SELECT e.cancellation_status, e.disbursement_schedule_date, e.number_of_disbursements,
                      e.total_disbursement_amount, bs.number_of_disbursements_received,
                      bs.total_disbursement_amount_received, bs.disbursement_started_at
               FROM bridge.disbursement_envelope e
               JOIN bridge.disbursement_envelope_batch_status bs USING (disbursement_envelope_id)
               WHERE e.disbursement_envelope_id = %s
               FOR UPDATE OF bs""", (envelope_id,)).fetchone()
        if row is None:
            raise EnvelopeNotReady(f"envelope {envelope_id} does not exist (was it accepted by intake?)")
        cancelled, schedule_date, declared, declared_total, received, received_total, started = row
        if started is None:
            if cancelled == "CANCELLED":
                raise EnvelopeNotReady(f"envelope {envelope_id} is cancelled: nothing to disburse")
            if schedule_date > business_date:
                raise EnvelopeNotReady(
                    f"envelope {envelope_id} is due on {schedule_date}; the business date is {business_date}")
            if received != declared or received_total != declared_total:
                raise EnvelopeNotReady(
                    f"envelope {envelope_id} is incomplete: received {received} of {declared} disbursements, "
                    f"{received_total} of {declared_total}")
        conn.execute(
            """UPDATE bridge.disbursement_envelope_batch_status
               SET disbursement_started_at = coalesce(disbursement_started_at, now()),
                   disbursement_pipeline_runs = disbursement_pipeline_runs + 1, updated_at = now()
               WHERE disbursement_envelope_id = %s""", (envelope_id,))
        if started is None:
            conn.execute("INSERT INTO bridge.envelope_event (disbursement_envelope_id, event_type, detail) "
                         "VALUES (%s, 'DISBURSEMENT_STARTED', %s)", (envelope_id, f"business date {business_date}"))
    return load_envelope(conn, envelope_id)
