"""`bridge up` on a fresh BRIDGE_HOME: embedded PostgreSQL, migrations, example bank and mapper, Dagster webserver and
daemon; the UI answers and the intake sensor is live; Ctrl-C stops everything, the embedded server included."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bridge_pipelines.paths import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_line(process: subprocess.Popen, needle: str, seconds: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line.rstrip())
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not printed; output so far:\n" + "\n".join(seen))


@pytest.mark.slow
def test_bridge_up_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    home = Path(f"/tmp/bridge-up-{os.getpid()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "DAGSTER_"))}
    ports = {name: free_port() for name in ("BRIDGE_UI_PORT", "BRIDGE_BANK_PORT", "BRIDGE_MAPPER_PORT")}
    env.update({"BRIDGE_HOME": str(home), **{k: str(v) for k, v in ports.items()}, "PYTHONUNBUFFERED": "1"})
    bridge = Path(sys.executable).parent / "bridge"
    process = subprocess.Popen([str(bridge), "up"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output = wait_for_line(process, "Dagster UI:", 240)
        assert any("example bank:" in line for line in output)
        ui = f"http://127.0.0.1:{ports['BRIDGE_UI_PORT']}"
        assert httpx.get(f"{ui}/server_info", timeout=10).status_code == 200
        sensors = httpx.post(f"{ui}/graphql", timeout=30, json={"query": """
            { sensorsOrError { ... on Sensors { results { name sensorState { status } } } } }"""}).json()
        states = {s["name"]: s["sensorState"]["status"] for s in sensors["data"]["sensorsOrError"]["results"]}
        assert states.get("intake_sensor") == "RUNNING", states
        assert httpx.get(f"http://127.0.0.1:{ports['BRIDGE_BANK_PORT']}/health", timeout=10).status_code == 200
        url = subprocess.run([str(bridge), "db", "url"], env=env, capture_output=True, text=True, timeout=60)
        assert url.returncode == 0 and str(home / "pgdata") in url.stdout
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert process.returncode == 0
    assert not (home / "pgdata" / "postmaster.pid").exists(), "the embedded server should be stopped"
    import shutil

    shutil.rmtree(home, ignore_errors=True)
