"""Statement sequence gaps per account: banks number statements (:28C: / ElctrncSeqNb); a missing number means a
statement the bridge never received."""

from __future__ import annotations

import psycopg

GAPS_SQL = """
WITH numbered AS (
    SELECT account_number, statement_number::bigint AS n
    FROM bridge.account_statement
    WHERE account_number IS NOT NULL AND statement_number ~ '^[0-9]{1,15}$'
      AND statement_process_status <> 'ERROR'
    GROUP BY 1, 2
),
ordered AS (
    SELECT account_number, n, lag(n) OVER (PARTITION BY account_number ORDER BY n) AS previous FROM numbered
)
SELECT account_number, previous + 1 AS first_missing, n - 1 AS last_missing
FROM ordered WHERE previous IS NOT NULL AND n > previous + 1
ORDER BY account_number, first_missing
"""


def sequence_gaps(conn: psycopg.Connection, account_number: str | None = None) -> list[dict]:
    """[{account_number, first_missing, last_missing}] for every hole between received statement numbers."""
    rows = conn.execute(GAPS_SQL).fetchall()
    return [{"account_number": a, "first_missing": f, "last_missing": l} for a, f, l in rows
            if account_number is None or a == account_number]
