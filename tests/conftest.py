"""Shared fixtures: a real PostgreSQL (the embedded server) for the whole session, a fresh migrated database per
test (cloned from a migrated template, so it is cheap), and the bridge's environment pointed at temp folders."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bridge_pipelines.db.migrate import migrate
from bridge_pipelines.db.server import embedded_server_url, stop_embedded_server, with_database

TEMPLATE = "bridge_test_template"
_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Short path: the server's Unix socket lives in the data directory and socket paths are limited to ~100 bytes.
    home = Path(f"/tmp/bridge-test-{os.getpid()}")
    home.mkdir(exist_ok=True)
    yield home
    stop_embedded_server(home, mode="immediate")  # a throw-away server: skip the shutdown checkpoint
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(pg_home: Path) -> str:
    """URL of the session's embedded server (database `postgres`), with a migrated template database."""
    url = embedded_server_url(pg_home)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    migrate(with_database(url, TEMPLATE))
    return url


def create_database(server_url: str) -> str:
    name = f"bridge_test_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return with_database(server_url, name)


@pytest.fixture
def database_url(server_url: str) -> str:
    """A fresh, migrated bridge database for this test."""
    return create_database(server_url)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def bridge_env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Environment for code that reads Settings: its own home, inbox and database."""
    monkeypatch.setenv("BRIDGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BRIDGE_STATEMENT_INBOX", str(tmp_path / "inbox"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    for name in ("BRIDGE_BUSINESS_DATE", "BRIDGE_DISBURSEMENT_SLA_DAYS", "BRIDGE_BANK_URL", "BRIDGE_MAPPER_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def dagster_database_url(server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty database for a Dagster instance with dagster-postgres storage (BRIDGE_DAGSTER_DATABASE_URL)."""
    name = f"dagster_test_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    monkeypatch.setenv("BRIDGE_DAGSTER_DATABASE_URL", url)
    return url
