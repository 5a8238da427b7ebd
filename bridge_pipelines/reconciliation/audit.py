"""Audit of a reconciled statement: the counters of every envelope it touched equal a recount."""

from __future__ import annotations

import psycopg

# One pass over each envelope the statement touched (its reconciliations name their envelope), not one per counter.
ENVELOPES_NOT_ADDING_UP_SQL = """
WITH touched AS (
    SELECT DISTINCT disbursement_envelope_id FROM bridge.disbursement_recon
    WHERE remittance_statement_id = %(s)s OR reversal_statement_id = %(s)s
),
recount AS (
    SELECT d.disbursement_envelope_id,
           count(*) FILTER (WHERE d.disbursement_status = 'RECONCILED') AS reconciled,
           count(*) FILTER (WHERE d.disbursement_status = 'REVERSED') AS reversed,
           count(*) FILTER (WHERE d.disbursement_status IN ('SHIPPED', 'RECONCILED', 'REVERSED')) AS shipped
    FROM touched t JOIN bridge.disbursement d USING (disbursement_envelope_id)
    GROUP BY d.disbursement_envelope_id
)
SELECT bs.disbursement_envelope_id FROM bridge.disbursement_envelope_batch_status bs
JOIN touched t USING (disbursement_envelope_id)
LEFT JOIN recount c USING (disbursement_envelope_id)
WHERE bs.number_of_disbursements_reconciled <> coalesce(c.reconciled, 0)
   OR bs.number_of_disbursements_reversed <> coalesce(c.reversed, 0)
   OR bs.number_of_disbursements_shipped <> coalesce(c.shipped, 0)
ORDER BY 1
"""


def envelopes_not_adding_up(conn: psycopg.Connection, statement_id: str) -> list[str]:
    """The envelopes the statement reconciled or reversed disbursements of whose reconciled, reversed or shipped
    counter differs from a recount of their disbursements (none: the statement adds up)."""
    return [row[0] for row in conn.execute(ENVELOPES_NOT_ADDING_UP_SQL, dict(s=statement_id))]
