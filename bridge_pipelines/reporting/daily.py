"""The daily reconciliation report per program, and the statement-completeness check.

Both are plain SQL over the core tables, computed for a business date; the report is also stored in
bridge.reconciliation_report so that it can be read (and compared day to day) without Dagster.
"""

from __future__ import annotations

from datetime import date

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

REPORT_SQL = """
WITH d AS (
    -- a SHIPPED disbursement with its remittance recorded is RECONCILED (migration 0020)
    SELECT e.benefit_program_mnemonic AS program,
           CASE WHEN d.disbursement_status = 'SHIPPED' AND r.remittance_statement_id IS NOT NULL THEN 'RECONCILED'
                ELSE d.disbursement_status END AS disbursement_status,
           d.disbursement_amount, d.shipped_at, r.reversal_reason
    FROM bridge.disbursement d
    JOIN bridge.disbursement_envelope e USING (disbursement_envelope_id)
    LEFT JOIN bridge.disbursement_recon r USING (disbursement_id)
    WHERE d.disbursement_status IN ('SHIPPED', 'REVERSED')
)
SELECT p.benefit_program_mnemonic AS program,
       count(d.*) AS shipped,
       coalesce(sum(d.disbursement_amount), 0) AS shipped_amount,
       count(*) FILTER (WHERE d.disbursement_status = 'RECONCILED') AS reconciled,
       count(*) FILTER (WHERE d.disbursement_status = 'REVERSED') AS reversed,
       count(*) FILTER (WHERE d.disbursement_status = 'SHIPPED') AS unreconciled,
       count(*) FILTER (WHERE d.disbursement_status = 'SHIPPED' AND d.shipped_at < %(day)s::date - 1) AS older_than_1_day,
       count(*) FILTER (WHERE d.disbursement_status = 'SHIPPED' AND d.shipped_at < %(day)s::date - 3) AS older_than_3_days,
       count(*) FILTER (WHERE d.disbursement_status = 'SHIPPED' AND d.shipped_at < %(day)s::date - 7) AS older_than_7_days,
       coalesce((SELECT jsonb_object_agg(reason, n) FROM (
           SELECT coalesce(split_part(x.reversal_reason, ' ', 1), 'UNKNOWN') AS reason, count(*) AS n
           FROM d x WHERE x.program = p.benefit_program_mnemonic AND x.disbursement_status = 'REVERSED'
           GROUP BY 1) reasons), '{}'::jsonb) AS reversed_by_reason,
       (SELECT count(*) FROM bridge.disbursement_error_recon er
        JOIN bridge.account_statement s USING (statement_id)
        WHERE s.account_number = p.sponsor_bank_account_number) AS unmatched_lines
FROM bridge.benefit_program_configuration p
LEFT JOIN d ON d.program = p.benefit_program_mnemonic
GROUP BY p.benefit_program_mnemonic, p.sponsor_bank_account_number
ORDER BY p.benefit_program_mnemonic
"""

COMPLETENESS_SQL = """
SELECT p.sponsor_bank_account_number AS account_number,
       string_agg(DISTINCT p.benefit_program_mnemonic, ', ') AS programs,
       max(d.shipped_at)::date AS last_shipment,
       (SELECT max(s.statement_date) FROM bridge.account_statement s
        WHERE s.account_number = p.sponsor_bank_account_number AND s.statement_process_status <> 'ERROR')
           AS last_statement_date
FROM bridge.benefit_program_configuration p
JOIN bridge.disbursement_envelope e USING (benefit_program_mnemonic)
JOIN bridge.disbursement d USING (disbursement_envelope_id)
WHERE d.shipped_at IS NOT NULL
GROUP BY p.sponsor_bank_account_number
"""


def daily_report(conn: psycopg.Connection, business_date: date, store: bool = True) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(REPORT_SQL, dict(day=business_date)).fetchall()
    if store:
        with conn.transaction():
            for row in rows:
                conn.execute(
                    """INSERT INTO bridge.reconciliation_report (report_date, benefit_program_mnemonic, report)
                       VALUES (%s, %s, %s) ON CONFLICT (report_date, benefit_program_mnemonic)
                       DO UPDATE SET report = excluded.report, created_at = now()""",
                    (business_date, row["program"], Jsonb({k: str(v) if not isinstance(v, (int, dict)) else v
                                                           for k, v in row.items()})))
    return rows


def missing_statements(conn: psycopg.Connection, business_date: date) -> list[dict]:
    """Program accounts with shipped payments whose statement for the previous business day (or later) is missing."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(COMPLETENESS_SQL).fetchall()
    expected_through = business_date.toordinal() - 1
    return [row for row in rows
            if row["last_statement_date"] is None or row["last_statement_date"].toordinal() < expected_through]
