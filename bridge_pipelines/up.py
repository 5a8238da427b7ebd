"""`bridge up`: the whole system on one machine, stopped cleanly with Ctrl-C.

Database (embedded unless BRIDGE_DATABASE_URL), migrations, Dagster instance, then child processes: the example
bank and mapper (unless BRIDGE_BANK_URL / BRIDGE_MAPPER_URL point elsewhere), the Dagster webserver and the
Dagster daemon (which runs the sensors). Children get the resolved URLs in their environment, so every process
talks to the same database and bank.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bridge_pipelines.config import Settings
from bridge_pipelines.dagster_home import ensure_dagster_home
from bridge_pipelines.db.migrate import migrate
from bridge_pipelines.db.server import resolve_database_url, stop_embedded_server
from bridge_pipelines.paths import PROJECT_ROOT

WORKSPACE = PROJECT_ROOT / "workspace.yaml"


def _wait_for_http(url: str, seconds: float, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def prepare_dagster_storage() -> None:
    """Create (or migrate) Dagster's tables once, here, before the webserver and the daemon start: both would
    otherwise race to create them in an empty database, and the loser exits."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def child_environment(settings: Settings, database_url: str, with_bank: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["BRIDGE_HOME"] = str(settings.home)
    env["BRIDGE_DATABASE_URL"] = database_url
    env["DAGSTER_HOME"] = str(settings.dagster_home)
    env["BRIDGE_STATEMENT_INBOX"] = str(settings.statement_inbox)
    if with_bank:
        env.setdefault("BRIDGE_BANK_URL", f"http://{settings.host}:{settings.bank_port}")
        env.setdefault("BRIDGE_MAPPER_URL", f"http://{settings.host}:{settings.mapper_port}")
    return env


def run_everything(settings: Settings, with_bank: bool = True) -> int:
    embedded = settings.database_url is None
    database_url = resolve_database_url(settings)
    applied = migrate(database_url)
    print(f"database: {database_url}" + (f" (applied {', '.join(applied)})" if applied else ""))
    ensure_dagster_home(settings, database_url)
    prepare_dagster_storage()
    settings.statement_inbox.mkdir(parents=True, exist_ok=True)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    start_bank = with_bank and not (settings.bank_url and settings.mapper_url)
    env = child_environment(settings, database_url, start_bank)
    bin_dir = Path(sys.executable).parent
    children: list[tuple[str, subprocess.Popen]] = []

    def start(name: str, command: list[str]) -> subprocess.Popen:
        log_file = open(logs / f"{name}.log", "ab")
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        children.append((name, process))
        return process

    try:
        if start_bank:
            bank = start("example-bank", [sys.executable, "-m", "bridge_pipelines.cli", "bank"])
            if not _wait_for_http(f"{env['BRIDGE_BANK_URL']}/health", 30, bank):
                print(f"the example bank did not start: see {logs / 'example-bank.log'}:\n"
                      + _tail(logs / "example-bank.log"), file=sys.stderr)
                return 1
            print(f"example bank: {env['BRIDGE_BANK_URL']}   example ID mapper: {env['BRIDGE_MAPPER_URL']}")
        if settings.api_tokens:  # the PBMS API only when tokens are configured
            api = start("pbms-api", [sys.executable, "-m", "bridge_pipelines.cli", "api"])
            api_url = f"http://{settings.host}:{settings.api_port}{settings.api_root_path}"
            if not _wait_for_http(f"{api_url}/ping", 30, api):
                print(f"the PBMS API did not start: see {logs / 'pbms-api.log'}", file=sys.stderr)
                return 1
            print(f"PBMS API: {api_url}")
        webserver = start("dagster-webserver", [
            str(bin_dir / "dagster-webserver"), "-w", str(WORKSPACE), "-h", settings.host, "-p", str(settings.ui_port)])
        start("dagster-daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(WORKSPACE)])
        ui = f"http://{settings.host}:{settings.ui_port}"
        if not _wait_for_http(f"{ui}/server_info", 120, webserver):
            print(f"the Dagster UI did not start: see {logs / 'dagster-webserver.log'}:\n"
                  + _tail(logs / "dagster-webserver.log"), file=sys.stderr)
            return 1
        print(f"Dagster UI: {ui}   (logs in {logs}; Ctrl-C stops everything)")
        print(f"statement inbox: {settings.statement_inbox}")
        while True:
            for name, process in children:
                if process.poll() is not None:
                    print(f"{name} stopped unexpectedly (exit {process.returncode}): see {logs / (name + '.log')}",
                          file=sys.stderr)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping...")
        return 0
    finally:
        for _name, process in reversed(children):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _name, process in reversed(children):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if embedded:
            stop_embedded_server(settings.home)
