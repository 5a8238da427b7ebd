"""Audit of a reconciled statement: the counters of every envelope it touched equal a recount."""

from __future__ import annotations

import psycopg

# The envelopes the statement touched, as its reconciliation recorded them (migration 0018).
RECORDED_ENVELOPES_SQL = """
SELECT reconciled_envelope_ids FROM bridge.account_statement WHERE statement_id = %(s)s
"""

# The same for a statement reconciled before that: its reconciliations name their envelope. A sequential scan of every
# reconciliation kept (no index by statement: migration 0015).
TOUCHED_ENVELOPES_SQL = """
SELECT DISTINCT disbursement_envelope_id FROM bridge.disbursement_recon
WHERE remittance_statement_id = %(s)s OR reversal_statement_id = %(s)s
ORDER BY 1
"""

# One pass over those envelopes' reconciliations, not one per counter: a disbursement is RECONCILED when its
# remittance is recorded and no reversal (migration 0020), REVERSED exactly when its reversal is recorded (the same
# transaction records the one and moves the other). These are the counters a reconciliation moves; the shipped counter
# is the shipment check's (nothing here changes it). The reconciliations are half the size of the disbursements they
# name, so one scan of them costs less than the recount of the disbursements it replaced. The envelopes come as a
# list, not from a CTE of the same statement: a CTE scan keeps PostgreSQL from recounting on several cores. At
# 10,000,000 it runs after each of a cycle's 11 statements.
ENVELOPES_NOT_ADDING_UP_SQL = """
SELECT bs.disbursement_envelope_id FROM bridge.disbursement_envelope_batch_status bs
LEFT JOIN (
    SELECT r.disbursement_envelope_id,
           count(*) FILTER (WHERE r.remittance_statement_id IS NOT NULL AND NOT r.reversal_found) AS reconciled,
           count(*) FILTER (WHERE r.reversal_found) AS reversed
    FROM bridge.disbursement_recon r WHERE r.disbursement_envelope_id = ANY(%(envelopes)s)
    GROUP BY r.disbursement_envelope_id
) recount USING (disbursement_envelope_id)
WHERE bs.disbursement_envelope_id = ANY(%(envelopes)s)
  AND (bs.number_of_disbursements_reconciled <> coalesce(recount.reconciled, 0)
       OR bs.number_of_disbursements_reversed <> coalesce(recount.reversed, 0))
ORDER BY 1
"""


def envelopes_not_adding_up(conn: psycopg.Connection, statement_id: str) -> list[str]:
    """The envelopes the statement reconciled or reversed disbursements of whose reconciled or reversed counter
    differs from a recount of their reconciliations (none: the statement adds up). The counters and the recount
    are read in one statement, so a reconciliation committing meanwhile cannot make them differ."""
    envelopes = touched_envelopes(conn, statement_id)
    if not envelopes:
        return []
    return [row[0] for row in conn.execute(ENVELOPES_NOT_ADDING_UP_SQL, dict(envelopes=envelopes))]


def touched_envelopes(conn: psycopg.Connection, statement_id: str) -> list[str]:
    """The envelopes whose disbursements the statement remitted or reversed (sorted)."""
    row = conn.execute(RECORDED_ENVELOPES_SQL, dict(s=statement_id)).fetchone()
    if row is not None and row[0] is not None:
        return list(row[0])
    return [row[0] for row in conn.execute(TOUCHED_ENVELOPES_SQL, dict(s=statement_id))]
