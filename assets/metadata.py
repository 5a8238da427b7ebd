"""Helpers to turn core results into Dagster metadata operators can read (and Dagster can plot)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import dagster as dg


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dg.MetadataValue:
    """A metadata table (all cells as text/ints); an empty table still shows its columns."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name=c, type="string") for c in columns])
    records = [dg.TableRecord({c: ("" if row.get(c) is None else str(_cell(row.get(c)))) for c in columns})
               for row in rows]
    return dg.MetadataValue.table(records=records, schema=schema)


def amount(value: Decimal | None) -> dg.MetadataValue:
    """Amounts are shown as exact text; a float copy is kept only for Dagster's plots (`*_plot` keys)."""
    return dg.MetadataValue.text(str(value if value is not None else Decimal(0)))


def markdown_list(title: str, items: Mapping[str, Any]) -> dg.MetadataValue:
    lines = [f"**{title}**", ""] + [f"- {key}: {_cell(value)}" for key, value in items.items()]
    return dg.MetadataValue.md("\n".join(lines))
