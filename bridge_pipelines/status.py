"""Envelope progress for operators and PBMS (`bridge status`)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

STATUS_COLUMNS = (
    "disbursement_envelope_id", "benefit_program_mnemonic", "cycle_code_mnemonic", "disbursement_schedule_date",
    "cancellation_status", "declared_number_of_disbursements", "declared_total_disbursement_amount",
    "number_of_disbursements_received", "total_disbursement_amount_received", "id_mapper_resolution_status",
    "funds_available_with_bank", "funds_blocked_with_bank", "shipment_status", "number_of_disbursements_shipped",
    "number_of_disbursements_failed", "number_of_disbursements_reconciled", "number_of_disbursements_reversed",
    "number_of_disbursements_unreconciled", "number_of_statement_lines_unmatched",
    "funds_available_latest_error_code", "funds_blocked_latest_error_code", "shipment_latest_error_code",
)

_TABLE_COLUMNS = (
    ("envelope", "disbursement_envelope_id"), ("program", "benefit_program_mnemonic"),
    ("cycle", "cycle_code_mnemonic"), ("due", "disbursement_schedule_date"), ("received", "received"),
    ("funds", "funds"), ("shipped", "number_of_disbursements_shipped"),
    ("failed", "number_of_disbursements_failed"), ("reconciled", "number_of_disbursements_reconciled"),
    ("reversed", "number_of_disbursements_reversed"), ("unmatched", "number_of_statement_lines_unmatched"),
    ("state", "state"),
)


def envelope_status(database_url: str, envelope_id: str | None = None) -> list[dict[str, Any]]:
    query = f"SELECT {', '.join(STATUS_COLUMNS)} FROM bridge.envelope_status"
    params: tuple = ()
    if envelope_id:
        query += " WHERE disbursement_envelope_id = %s"
        params = (envelope_id,)
    query += " ORDER BY disbursement_schedule_date, disbursement_envelope_id"
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def envelope_state(row: dict[str, Any]) -> str:
    """One word an operator can act on."""
    if row["cancellation_status"] == "CANCELLED":
        return "CANCELLED"
    for column in ("funds_available_with_bank", "funds_blocked_with_bank", "shipment_status",
                   "id_mapper_resolution_status"):
        if row.get(column) == "ERROR":
            return f"ERROR ({column.replace('_with_bank', '').replace('_', ' ')})"
    if row.get("funds_available_with_bank") == "FUNDS_NOT_AVAILABLE":
        return "WAITING FOR FUNDS"
    if row.get("shipment_status") == "COMPLETED":
        if row["number_of_disbursements_unreconciled"] == 0:
            return "RECONCILED"
        return "SHIPPED"
    if row.get("shipment_status") == "IN_PROGRESS":
        return "SHIPPING"
    if row["number_of_disbursements_received"] < row["declared_number_of_disbursements"]:
        return "RECEIVING"
    return "READY"


def format_status_table(rows: list[dict[str, Any]]) -> str:
    cells = []
    for row in rows:
        view = dict(row)
        view["received"] = f"{row['number_of_disbursements_received']}/{row['declared_number_of_disbursements']}"
        view["funds"] = f"{row['funds_available_with_bank']}/{row['funds_blocked_with_bank']}"
        view["state"] = envelope_state(row)
        cells.append([str(view.get(key, "")) for _title, key in _TABLE_COLUMNS])
    titles = [title for title, _key in _TABLE_COLUMNS]
    widths = [max(len(titles[i]), *(len(c[i]) for c in cells)) for i in range(len(titles))]
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)) for cell in cells]
    return "\n".join(lines)
