"""Recording failed runs where operators look: bridge.run_failure (and the logs), naming envelope/statement and step."""

from __future__ import annotations

import psycopg


def record_run_failure(conn: psycopg.Connection, run_id: str, job_name: str, partition_key: str | None,
                       step_key: str | None, message: str | None) -> None:
    conn.execute(
        """INSERT INTO bridge.run_failure (run_id, job_name, partition_key, step_key, error_message)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING""",
        (run_id, job_name, partition_key, step_key, (message or "")[:4000]))


def recent_failures(conn: psycopg.Connection, limit: int = 20) -> list[tuple]:
    return conn.execute(
        "SELECT failed_at, job_name, partition_key, step_key, error_message FROM bridge.run_failure "
        "ORDER BY failed_at DESC LIMIT %s", (limit,)).fetchall()
