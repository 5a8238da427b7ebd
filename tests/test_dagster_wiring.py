"""The Dagster code location loads and validates, and `bridge process` drives intake end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg

from bridge_pipelines.paths import PROJECT_ROOT
from tests.intake_helpers import BUSINESS_DATE, disbursement, envelope, program


def test_definitions_validate(bridge_env: Path) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    env = dict(os.environ)
    env.pop("DAGSTER_HOME")  # validate with a temporary instance, as a developer would
    result = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_process_runs_intake_once_and_registers_envelope(bridge_env: Path, db: psycopg.Connection,
                                                         monkeypatch) -> None:
    from bridge_pipelines.definitions import defs
    from bridge_pipelines.process import process

    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", BUSINESS_DATE.isoformat())
    program(db)
    envelope(db)
    for i in range(3):
        disbursement(db, f"D{i}")
    database_url = os.environ["BRIDGE_DATABASE_URL"]
    with dg.DagsterInstance.ephemeral() as instance:
        report = process(instance, defs, database_url)
        assert report.success, report.runs
        assert [run.job_name for run in report.runs] == ["intake_job"]
        assert instance.get_dynamic_partitions("envelope") == ["ENV-1"]
        # nothing new staged: a second pass does nothing
        again = process(instance, defs, database_url)
        assert again.runs == []
        materialization = instance.get_latest_materialization_event(dg.AssetKey("pbms_intake"))
        metadata = materialization.asset_materialization.metadata
        assert metadata["disbursements_accepted"].value == 3
    statuses = db.execute("SELECT DISTINCT intake_status FROM staging.disbursement").fetchall()
    assert statuses == [("ACCEPTED",)]


def test_bridge_process_cli_with_postgres_instance(bridge_env: Path, db: psycopg.Connection,
                                                    dagster_database_url: str, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", BUSINESS_DATE.isoformat())
    program(db)
    envelope(db)
    disbursement(db, "D1")
    bridge = Path(sys.executable).parent / "bridge"
    first = subprocess.run([str(bridge), "process"], capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "intake_job: ok" in first.stdout
    second = subprocess.run([str(bridge), "process"], capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to do" in second.stdout
    status = subprocess.run([str(bridge), "status", "--json"], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ))
    assert status.returncode == 0, status.stderr
    assert '"disbursement_envelope_id": "ENV-1"' in status.stdout
