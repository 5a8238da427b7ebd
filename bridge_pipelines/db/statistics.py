"""Planner statistics after bulk changes.

A stage that moves a whole envelope from one state to the next (a million rows at a time) leaves the table's
statistics describing the state before it until autovacuum analyses the table, which may be minutes later or never
before the next stage starts. Plans built on them can be catastrophic: with statistics saying that no disbursement is
RESOLVED, the planner expects one such row and picks nested loops that run once per row of the envelope (a 10,000
payment batch took 406 s instead of 0.2 s). ANALYZE reads a fixed sample (30,000 rows at the default target), so it
costs a fraction of a second whatever the table's size.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

# Below this many changed rows the statistics cannot mislead the planner enough to matter.
ANALYZE_AFTER_ROWS = 10_000


def refresh_statistics(conn: psycopg.Connection, table: str, changed_rows: int) -> bool:
    """ANALYZE `table` ("schema.name") when `changed_rows` rows just changed state. Returns whether it ran."""
    if changed_rows < ANALYZE_AFTER_ROWS:
        return False
    schema, name = table.split(".")
    conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
    return True
