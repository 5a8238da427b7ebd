"""Operator retry of an envelope step that ended in ERROR (`bridge retry ENVELOPE_ID STEP`).

Clears the ERROR state of the step so that the envelope sensor resumes the envelope (or `bridge process` does).
History is kept: attempts, timestamps and the last error stay, and an envelope event records the retry.
"""

from __future__ import annotations

import psycopg

STEPS = ("resolution", "funds", "shipment")

_RESET_SQL = {
    "resolution": """UPDATE bridge.disbursement_envelope_batch_status SET id_mapper_resolution_status = 'PENDING',
                     updated_at = now() WHERE disbursement_envelope_id = %s AND id_mapper_resolution_status = 'ERROR'""",
    "funds": """UPDATE bridge.disbursement_envelope_batch_status SET
                funds_available_with_bank = CASE WHEN funds_available_with_bank IN ('ERROR', 'FUNDS_NOT_AVAILABLE')
                                                 THEN 'PENDING_CHECK' ELSE funds_available_with_bank END,
                funds_blocked_with_bank = CASE WHEN funds_blocked_with_bank IN ('ERROR', 'FUNDS_BLOCK_FAILURE')
                                               THEN 'PENDING_CHECK' ELSE funds_blocked_with_bank END,
                updated_at = now()
                WHERE disbursement_envelope_id = %s AND (funds_available_with_bank IN ('ERROR', 'FUNDS_NOT_AVAILABLE')
                      OR funds_blocked_with_bank IN ('ERROR', 'FUNDS_BLOCK_FAILURE'))""",
    "shipment": """WITH batches AS (
                       UPDATE bridge.bank_disbursement_batch_status SET disbursement_payment_status = 'PENDING'
                       WHERE disbursement_envelope_id = %(e)s AND disbursement_payment_status = 'ERROR')
                   UPDATE bridge.disbursement_envelope_batch_status SET shipment_status = 'IN_PROGRESS',
                       updated_at = now() WHERE disbursement_envelope_id = %(e)s AND shipment_status = 'ERROR'""",
}


def retry_step(conn: psycopg.Connection, envelope_id: str, step: str) -> bool:
    """Returns whether anything was in ERROR for that step (and is now cleared)."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}: choose one of {', '.join(STEPS)}")
    with conn.transaction():
        exists = conn.execute("SELECT 1 FROM bridge.disbursement_envelope_batch_status "
                              "WHERE disbursement_envelope_id = %s", (envelope_id,)).fetchone()
        if not exists:
            raise LookupError(f"no envelope {envelope_id!r}")
        params = {"e": envelope_id} if step == "shipment" else (envelope_id,)
        changed = conn.execute(_RESET_SQL[step], params).rowcount
        conn.execute("""UPDATE bridge.disbursement_envelope_batch_status
                        SET disbursement_pipeline_runs = least(disbursement_pipeline_runs, 5)
                        WHERE disbursement_envelope_id = %s""", (envelope_id,))
        if changed:
            conn.execute("INSERT INTO bridge.envelope_event (disbursement_envelope_id, event_type, detail) "
                         "VALUES (%s, 'OPERATOR_RETRY', %s)", (envelope_id, step))
    return bool(changed)
