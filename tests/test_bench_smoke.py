"""Smoke run of the cycle benchmark at a small size: it completes and its figures are sane (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIZE = 2000
STAGES = ["stage", "intake", "ship", "statement", "reconcile", "reintake"]


def test_bench_cycle_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    # its own short home: the embedded server's socket path must stay short
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_cycle.py"), "--size", str(SIZE), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(out.read_text())

    assert result["size"] == SIZE
    stages = {s["name"]: s for s in result["stages"]}
    assert list(stages) == STAGES
    for name, stage in stages.items():
        assert stage["seconds"] > 0, name
        assert stage["rows"] > 0 and stage["rows_per_second"] > 0, name
        # seconds are rounded to the millisecond, rows/s computed before rounding
        low, high = stage["rows"] / (stage["seconds"] + 0.0006), stage["rows"] / max(stage["seconds"] - 0.0006, 1e-6)
        assert low * 0.999 <= stage["rows_per_second"] <= high * 1.001, name
        assert stage["peak_rss_bench_mb"] > 0 and stage["peak_rss_postgres_mb"] > 0, name
        assert stage["database_size_mb"] > 0, name
    # the example bank runs in its own process, measured apart; the untimed settling before ship and statement
    assert stages["ship"]["peak_rss_bank_process_mb"] > 0 and stages["ship"]["cpu_seconds_bank_process"] > 0
    assert set(result["settle_seconds_before"]) == {"ship", "statement"}
    for name in ("stage", "intake", "reintake", "ship"):
        assert stages[name]["rows"] == SIZE, name
    assert stages["reintake"]["duplicates_ignored"] == SIZE and stages["reintake"]["new_rows"] == 0
    assert stages["ship"]["shipped"] + stages["ship"]["failed_at_bank"] == SIZE
    assert stages["statement"]["rows"] >= SIZE  # one :61: line per payment, plus reversals and the fee
    assert stages["reconcile"]["rows"] == stages["statement"]["rows"]

    for name in ("intake", "reintake", "ship", "reconcile"):  # the process() stages: wall = core + orchestration
        stage = stages[name]
        assert 0 < stage["core_seconds"] <= stage["process_seconds"] <= stage["seconds"] + 0.01, name
        assert stage["orchestration_seconds"] == pytest.approx(stage["process_seconds"] - stage["core_seconds"],
                                                               abs=0.01), name
        assert stage["sensor_ticks"] >= 3, name

    e2e = result["end_to_end"]
    parts = ("intake", "ship", "statement", "reconcile")
    assert e2e["seconds"] == pytest.approx(sum(stages[n]["seconds"] for n in parts), abs=0.01)
    assert 0 < e2e["core_seconds"] <= e2e["seconds"] + 0.01
    assert 0 <= e2e["orchestration_share"] < 1
    assert e2e["orchestration_seconds"] == pytest.approx(
        sum(stages[n]["orchestration_seconds"] for n in parts if "orchestration_seconds" in stages[n]), abs=0.01)
    assert e2e["openg2p_seconds"] > 0 and all(v > 0 for v in e2e["ratio_to_openg2p"].values())

    correctness = result["correctness"]
    flags = {k: v for k, v in correctness.items() if isinstance(v, bool)}
    assert flags and all(flags.values()), flags
    assert correctness["states"].get("RECONCILED", 0) + correctness["states"].get("REVERSED", 0) == SIZE
    assert correctness["ledger_debits"] == SIZE


def test_bench_intake_smoke(tmp_path: Path) -> None:
    """The intake benchmark: intake and re-intake of SIZE staged rows with a server setting changed for the run."""
    out = tmp_path / "intake.json"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_intake.py"), "--size", str(SIZE), "--reintake",
         "--setting", "work_mem=32MB", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["size"] == SIZE and result["settings"] == {"work_mem": "32MB"}
    for name in ("intake", "reintake"):
        seconds, rate = result[f"{name}_seconds"], result[f"{name}_rows_per_second"]
        assert seconds > 0 and SIZE / (seconds + 0.0006) * 0.999 <= rate <= SIZE / max(seconds - 0.0006, 1e-6) * 1.001
    assert result["stage_seconds"] > 0 and result["database_size_mb"] > 0
    # every staged row ACCEPTED, SIZE disbursements and the envelope's counter; after the re-intake SIZE identical
    # duplicates and no new disbursement (bench_cycle.intake_problems, what bench_cycle.py checks after its intakes)
    assert result["correctness"] == {"ok": True, "problems": []}
