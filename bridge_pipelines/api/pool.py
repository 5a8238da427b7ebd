"""A small pool of autocommit connections for the API (psycopg_pool is not a dependency).

A connection that saw an error, or is not idle when handed back, is closed rather than reused: its session may
hold the intake's advisory lock or a broken transaction, and closing it releases both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.pq import TransactionStatus


class PoolExhausted(RuntimeError):
    pass


class ConnectionPool:
    def __init__(self, database_url: str, max_size: int = 8, wait_seconds: float = 60.0,
                 lock_timeout_seconds: float = 60.0) -> None:
        self.database_url = database_url
        self.max_size = max_size
        self.wait_seconds = wait_seconds
        self.lock_timeout_ms = int(lock_timeout_seconds * 1000)
        self._idle: list[psycopg.Connection] = []
        self._in_use = 0
        self._closed = False
        self._cond = threading.Condition()

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.database_url, autocommit=True, application_name="bridge-api")
        # Waits for the intake lock (held by a large intake run) end in a clear 503 rather than hang forever.
        conn.execute(f"SET lock_timeout = {self.lock_timeout_ms}")
        return conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self._cond:
            if self._closed:
                raise PoolExhausted("the API is shutting down")
            if not self._cond.wait_for(lambda: self._idle or self._in_use < self.max_size, self.wait_seconds):
                raise PoolExhausted("all database connections are busy")
            conn = self._idle.pop() if self._idle else None
            self._in_use += 1
        healthy = False
        try:
            if conn is None or conn.closed:
                conn = self._connect()
            yield conn
            healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        finally:
            with self._cond:
                self._in_use -= 1
                if healthy and not self._closed and conn is not None:
                    self._idle.append(conn)
                    conn = None
                self._cond.notify()
            if conn is not None and not conn.closed:
                conn.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for conn in idle:
            conn.close()
