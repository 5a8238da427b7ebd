"""Planner settings for one statement inside a transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


@contextmanager
def rows_by_primary_key(conn: psycopg.Connection) -> Iterator[None]:
    """Hash and merge joins off for the statements inside the block, then back to what they were.

    For an UPDATE of a listed set of rows that should find each row by its primary key: the planner may cost a hash
    join (reading every row of the table, of every envelope and cycle kept) or a merge join (reading the index from its
    first entry up to the last listed row) as cheaper, and both read far more than the list. Must run inside a
    transaction: the settings are the transaction's own (set_config with is_local), so a transaction that fails
    drops them with everything else; they are put back only when the block ends normally."""
    hash_join, merge_join = conn.execute(
        "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')").fetchone()
    conn.execute("SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)")
    yield
    conn.execute("SELECT set_config('enable_hashjoin', %s, true), set_config('enable_mergejoin', %s, true)",
                 (hash_join, merge_join))
