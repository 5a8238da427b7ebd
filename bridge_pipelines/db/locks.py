"""Session-level PostgreSQL advisory locks: held while a process works on something (an intake run, an envelope, a
statement) and released by PostgreSQL when that process dies, which is how sensors tell a dead run from a live one.

A key is either one bigint, or a class number plus a name (hashed with hashtext; a collision only serialises two
unrelated things, it never lets two workers share one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


def _call(function: str, key: tuple[int] | tuple[int, str]) -> str:
    return f"SELECT {function}(%s)" if len(key) == 1 else f"SELECT {function}(%s, hashtext(%s))"


@contextmanager
def advisory_lock(conn: psycopg.Connection, *key: int | str) -> Iterator[None]:
    """Hold the lock for the block (waits while another session holds it)."""
    conn.execute(_call("pg_advisory_lock", key), key)
    try:
        yield
    finally:
        conn.execute(_call("pg_advisory_unlock", key), key)


def advisory_lock_free(conn: psycopg.Connection, *key: int | str) -> bool:
    """True when no other session holds the lock (probed by taking and releasing it at once)."""
    got = conn.execute(_call("pg_try_advisory_lock", key), key).fetchone()[0]
    if got:
        conn.execute(_call("pg_advisory_unlock", key), key)
    return got
