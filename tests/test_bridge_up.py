"""The README walkthrough, for real: `bridge up` on a fresh BRIDGE_HOME (embedded PostgreSQL, migrations, example bank
and mapper, Dagster webserver and daemon), `bridge demo`, `bridge process` (with the business date moved to the
schedule date), `bridge bank close-day`, `bridge process`; then Chromium (Playwright, Debian's browser) looks at
the Dagster UI: the bridge's assets are in the graph, the envelope partition is materialised, the asset checks
passed. Ctrl-C stops everything, the embedded server included. Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bridge_pipelines.paths import PROJECT_ROOT

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
BRIDGE = Path(sys.executable).parent / "bridge"


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


def bridge(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BRIDGE), *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"bridge {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def wait_for_status(env: dict, envelope: str, done, seconds: float = 180) -> dict:
    """Run `bridge process` and read `bridge status` until `done(row)`: the daemon of `bridge up` may be doing the
    same work at the same time, and whichever path takes a run, the other finds nothing left to do."""
    deadline = time.monotonic() + seconds
    while True:
        bridge(env, "process")
        status = subprocess.run([str(BRIDGE), "status", envelope, "--json"], env=env, capture_output=True, text=True,
                                timeout=120)
        rows = json.loads(status.stdout) if status.returncode == 0 else []  # 2: not accepted yet
        if rows and done(rows[0]):
            return rows[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"envelope {envelope} did not get there: {rows}")
        time.sleep(3)


def graphql(ui: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{ui}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    assert response.status_code == 200, response.text[:2000]
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def check_states(ui: str, asset: str, partition: str) -> dict[str, str]:
    data = graphql(ui, """
        query ($key: AssetKeyInput!) {
          assetNodeOrError(assetKey: $key) { ... on AssetNode {
            assetChecksOrError { ... on AssetChecks { checks { name
              executionForLatestMaterialization { status evaluation { success } } } } }
            assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions } }
          } } }""", {"key": {"path": [asset]}})
    node = data["assetNodeOrError"]
    checks = node["assetChecksOrError"]["checks"]
    return {c["name"]: (c["executionForLatestMaterialization"] or {}).get("status") for c in checks} | {
        "__materialized__": partition in node["assetPartitionStatuses"]["materializedPartitions"]}


@pytest.mark.slow
def test_walkthrough_and_the_ui_in_a_browser(tmp_path: Path) -> None:
    if os.environ.get("CI") != "true" and not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    home = Path(f"/tmp/bridge-up-{os.getpid()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "DAGSTER_"))}
    ports = {name: free_port() for name in ("BRIDGE_UI_PORT", "BRIDGE_BANK_PORT", "BRIDGE_MAPPER_PORT")}
    env.update({"BRIDGE_HOME": str(home), **{k: str(v) for k, v in ports.items()}, "PYTHONUNBUFFERED": "1",
                "BRIDGE_BANK_FAILURE_RATE": "0.05"})
    up = subprocess.Popen([str(BRIDGE), "up"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output = wait_for_line(up, "Dagster UI:", 300)
        assert any("example bank:" in line for line in output)
        ui = f"http://127.0.0.1:{ports['BRIDGE_UI_PORT']}"
        assert httpx.get(f"{ui}/server_info", timeout=10).status_code == 200
        repositories = graphql(ui, """{ repositoriesOrError { ... on RepositoryConnection { nodes {
            sensors { name sensorState { status } } } } } }""")
        states = {s["name"]: s["sensorState"]["status"]
                  for node in repositories["repositoriesOrError"]["nodes"] for s in node["sensors"]}
        assert states.get("intake_sensor") == "RUNNING", states
        url = bridge(env, "db", "url").stdout
        assert str(home / "pgdata") in url

        demo = json.loads(bridge(env, "demo", "--disbursements", "200").stdout.split("\nstaged")[0])
        envelope, due = demo["envelope"], demo["schedule_date"]
        # intake: `bridge process` or the daemon's intake sensor, whichever comes first (both paths agree)
        wait_for_status(env, envelope, lambda row: row["number_of_disbursements_received"] == 200)
        env_due = {**env, "BRIDGE_BUSINESS_DATE": due, "BRIDGE_BANK_URL": f"http://127.0.0.1:{ports['BRIDGE_BANK_PORT']}",
                   "BRIDGE_MAPPER_URL": f"http://127.0.0.1:{ports['BRIDGE_MAPPER_PORT']}"}
        with httpx.Client(base_url=env_due["BRIDGE_BANK_URL"],
                          headers={"Authorization": "Bearer example-bank-token"}) as bank:
            assert bank.post("/accounts", json={"account_number": demo["sponsor_account"], "currency": "USD",
                                                "amount": "10000000.00"}).status_code == 200
        shipped = bridge(env_due, "process").stdout
        assert "disbursement_job" in shipped and "FAILED" not in shipped, shipped
        closed = bridge(env_due, "bank", "close-day").stdout
        assert closed.strip(), "the bank wrote a statement"
        # the statement: imported by `bridge process` or by the daemon's statement sensor, whichever is first
        status = wait_for_status(env_due, envelope, lambda row: row["number_of_disbursements_unreconciled"] == 0)
        assert status["number_of_disbursements_shipped"] == 200, (status, shipped)

        assert check_states(ui, "account_resolution", envelope)["received_equals_declared"] == "SUCCEEDED"
        payments = check_states(ui, "envelope_payments", envelope)
        assert payments["__materialized__"] and payments["shipment_adds_up"] == "SUCCEEDED", payments

        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{ui}/assets", wait_until="networkidle", timeout=60_000)
            skip = page.get_by_role("button", name="Skip")  # Dagster's one-time community pop-up
            if skip.count():
                skip.first.click()
            for name in ("pbms_intake", "account_resolution", "envelope_funds", "envelope_payments",
                         "statement_lines", "statement_reconciliation"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "asset-catalog.png"), full_page=True)
            page.goto(f"{ui}/assets/envelope_payments?view=partitions", wait_until="networkidle", timeout=60_000)
            page.get_by_text(envelope).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "envelope-partitions.png"), full_page=True)
            page.goto(f"{ui}/assets/account_resolution?view=checks", wait_until="networkidle", timeout=60_000)
            page.get_by_text("received_equals_declared").first.wait_for(timeout=60_000)
            page.get_by_text("Succeeded").first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "asset-checks.png"), full_page=True)
            browser.close()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            raise
    assert up.returncode == 0
    assert not (home / "pgdata" / "postmaster.pid").exists(), "the embedded server should be stopped"
    shutil.rmtree(home, ignore_errors=True)
