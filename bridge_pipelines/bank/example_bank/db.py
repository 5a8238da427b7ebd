"""The example bank's database access: a small connection pool and the schema set-up."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

SCHEMA_SQL = Path(__file__).with_name("schema.sql")
_SCHEMA_LOCK = 7_311_940_101  # advisory lock key: concurrent bank start-ups create the schema once

# Per-connection scratch tables for set-based payment processing (emptied at every commit).
_SCRATCH_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS debit_candidate (
    seq                 integer NOT NULL,
    payment_reference   text NOT NULL,
    amount              text NOT NULL,
    beneficiary_name    text,
    pending_return_reason text
) ON COMMIT DELETE ROWS;
"""


def ensure_schema(database_url: str) -> None:
    """Create the example_bank schema if needed (idempotent; safe when several banks start at once)."""
    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(SCHEMA_SQL.read_text(encoding="utf-8"))  # type: ignore[arg-type]


class ConnectionPool:
    """A few long-lived connections shared by the request threads (psycopg_pool is not a dependency)."""

    def __init__(self, database_url: str, max_size: int = 8, connect_timeout: float = 30.0) -> None:
        self._url = database_url
        self._max = max_size
        self._timeout = connect_timeout
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        return self._url

    def _new(self) -> psycopg.Connection:
        conn = psycopg.connect(self._url, application_name="example_bank")
        conn.execute(_SCRATCH_TABLES)  # type: ignore[arg-type]
        conn.commit()
        return conn

    def _take(self) -> psycopg.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self._max:
                self._created += 1
                try:
                    return self._new()
                except BaseException:
                    self._created -= 1
                    raise
        return self._idle.get(timeout=self._timeout)

    def _give_back(self, conn: psycopg.Connection) -> None:
        if self._closed or conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with self._lock:
                self._created -= 1
            conn.close()
            return
        self._idle.put(conn)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection inside a transaction: committed when the block ends, rolled back on an exception."""
        conn = self._take()
        try:
            with conn.transaction():
                yield conn
        except BaseException:
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                try:
                    conn.rollback()
                except psycopg.Error:
                    conn.close()
            raise
        finally:
            self._give_back(conn)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break
