"""Writing into the staging tables the way PBMS does (used by `bridge demo`, the API, benchmarks and tests).

Bulk rows go in with COPY; nothing here validates: validation is the intake run's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql

COLUMNS: dict[str, tuple[str, ...]] = {
    "benefit_program": (
        "benefit_program_mnemonic", "benefit_program_name", "funding_org_code", "funding_org_name",
        "sponsor_bank_code", "sponsor_bank_account_number", "sponsor_bank_branch_code",
        "sponsor_bank_account_currency", "disbursement_currency_code", "id_mapper_resolution_required",
    ),
    "disbursement_envelope": (
        "disbursement_envelope_id", "benefit_program_mnemonic", "disbursement_frequency", "cycle_code_mnemonic",
        "number_of_beneficiaries", "number_of_disbursements", "total_disbursement_amount",
        "disbursement_currency_code", "disbursement_schedule_date",
    ),
    "envelope_amendment": (
        "disbursement_envelope_id", "number_of_beneficiaries", "number_of_disbursements",
        "total_disbursement_amount", "disbursement_schedule_date",
    ),
    "disbursement": (
        "disbursement_id", "disbursement_envelope_id", "mis_reference_number", "beneficiary_id", "beneficiary_name",
        "disbursement_amount", "narrative",
    ),
    "envelope_cancellation": ("disbursement_envelope_id",),
    "disbursement_cancellation": ("disbursement_id",),
}


def stage_row(conn: psycopg.Connection, table: str, **values: Any) -> int:
    """INSERT one staged row; returns its staging_id. Unknown columns are refused."""
    unknown = set(values) - set(COLUMNS[table])
    if unknown:
        raise ValueError(f"staging.{table} has no column(s) {sorted(unknown)}")
    names = list(values)
    query = sql.SQL("INSERT INTO staging.{} ({}) VALUES ({}) RETURNING staging_id").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    return conn.execute(query, [values[n] for n in names]).fetchone()[0]


def copy_rows(conn: psycopg.Connection, table: str, rows: Iterable[Mapping[str, Any] | tuple]) -> int:
    """COPY many staged rows (mappings by column name, or tuples in COLUMNS order). Returns the count."""
    columns = COLUMNS[table]
    query = sql.SQL("COPY staging.{} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    count = 0
    with conn.cursor() as cur, cur.copy(query) as copy:
        for row in rows:
            copy.write_row(tuple(row.get(c) for c in columns) if isinstance(row, Mapping) else row)
            count += 1
    return count


def staged_result(conn: psycopg.Connection, table: str, staging_id: int) -> tuple[str, str | None, str | None]:
    """(intake_status, intake_error_code, intake_error_detail) of one staged row."""
    row = conn.execute(
        sql.SQL("SELECT intake_status, intake_error_code, intake_error_detail FROM staging.{} WHERE staging_id = %s")
        .format(sql.Identifier(table)), (staging_id,)).fetchone()
    if row is None:
        raise KeyError(f"staging.{table} has no row {staging_id}")
    return row
