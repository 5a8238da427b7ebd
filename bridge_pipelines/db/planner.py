"""Planner settings for one statement of a transaction, and updates of rows by their address.

A bulk state change lists the rows it moves (a temp table of ids, from rows read earlier): the planner prefers to
hash the list against the whole table (every disbursement of every envelope and cycle kept) or to merge it with the
table's index from its first entry. Both read far more than the list; each listed row on its own is what it takes.
Where the rows were read in the same run, their address (ctid) is known: a TID scan then fetches each row without
reading any index (at 1,000,000 rows ~40 % less than by primary key). An address holds the row version that was read;
once the row changes (another transaction moved it, a VACUUM FULL rewrote the table) it holds nothing or another row,
so every update by address also compares the row's id and state, and whatever it misses is looked up by primary key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg

# Each listed row by primary key: no hash join over the table, no merge join along its index.
BY_PRIMARY_KEY = {"enable_hashjoin": "off", "enable_mergejoin": "off"}
# Each listed row at its address (a TID scan): no index lookup either.
BY_ADDRESS = {**BY_PRIMARY_KEY, "enable_indexscan": "off", "enable_bitmapscan": "off"}


@contextmanager
def planner_settings(conn: psycopg.Connection, settings: Mapping[str, str]) -> Iterator[None]:
    """The statements inside the block are planned with `settings`; the ones after it with the settings from before.
    Inside a transaction (set_config's is_local): if the block fails, the transaction's rollback drops them."""
    names = list(settings)
    saved = conn.execute("SELECT " + ", ".join("current_setting(%s)" for _ in names), names).fetchone()
    conn.execute("SELECT " + ", ".join("set_config(%s, %s, true)" for _ in names),
                 [value for name in names for value in (name, settings[name])])
    yield
    conn.execute("SELECT " + ", ".join("set_config(%s, %s, true)" for _ in names),
                 [value for pair in zip(names, saved) for value in pair])
