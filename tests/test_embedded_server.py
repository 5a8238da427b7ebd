"""The embedded server runs with the settings the bridge gives it (some only take effect after its restart)."""

from __future__ import annotations

import psycopg

from bridge_pipelines.db.server import LARGE_MACHINE_BYTES, embedded_settings


def test_the_embedded_server_runs_with_its_settings(server_url: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name, value in embedded_settings().items():
            assert conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] == value, name
        assert not conn.execute("SELECT count(*) FROM pg_settings WHERE pending_restart").fetchone()[0]


def test_shared_buffers_follow_the_machines_memory() -> None:
    assert embedded_settings(LARGE_MACHINE_BYTES)["shared_buffers"] == "3GB"
    assert embedded_settings(LARGE_MACHINE_BYTES - 1)["shared_buffers"] == "1GB"
    assert embedded_settings(0)["wal_buffers"] == "64MB"
