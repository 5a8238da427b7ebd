"""Benchmark: intake alone, N staged disbursements of one envelope, and (with --reintake) the same N staged again.

    python bench/bench_intake.py [--size 100000] [--reintake] [--setting NAME=VALUE ...] [--explain-slow MS]
                                 [--json PATH] [--keep]

The setup of bench_cycle.py (an embedded PostgreSQL in a temporary folder, or --database-url; a fresh migrated
database), the program, the envelope and N disbursements COPYed into staging by `stage_demo` (PBMS's part, timed
apart), then one `run_intake` timed: no Dagster, no bank. A cycle at 3,000,000 disbursements takes the machine ten
minutes; its intake alone takes two, which is what trying an intake change at scale needs. `--setting` changes the
server's configuration first (ALTER SYSTEM; a restart when the setting needs one: embedded server only), so a
setting can be compared with the server's own (`embedded_settings()`) run after run.

Verified at the end: every staged row accepted, N disbursements and their counters; after the re-intake, every row an
accepted no-op duplicate and no new disbursement. The exit code is 1 if any of that fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_cycle  # noqa: E402  (the setup it uses: server, database, environment)

from bridge_pipelines.config import load_settings  # noqa: E402
from bridge_pipelines.demo import stage_demo  # noqa: E402
from bridge_pipelines.intake.service import run_intake  # noqa: E402

PROGRAM = "BENCH"


def _intake(database_url: str, business_date: date) -> float:
    """Seconds one intake run takes."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        started = time.perf_counter()
        run_intake(conn, business_date, 0)
        return time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = dict(pair.split("=", 1) for pair in args.setting)
    env = bench_cycle.setup_environment(args)
    try:
        business_date = date.today()
        bench_cycle.export_environment(env, business_date, ephemeral_dagster=True)
        applied = bench_cycle.apply_server_settings(env.server_url, env.home, env.embedded, settings)
        bridge_settings = load_settings()
        started = time.perf_counter()
        envelope = stage_demo(env.database_url, bridge_settings, disbursements=args.size, program=PROGRAM,
                              schedule_date=business_date + timedelta(days=1))["envelope"]
        stage_seconds = time.perf_counter() - started
        seconds = _intake(env.database_url, business_date)
        problems = bench_cycle.intake_problems(bench_cycle.intake_counts(env.database_url, envelope), args.size, False)
        result: dict[str, Any] = {
            "benchmark": "bench_intake", "size": args.size,
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": bench_cycle.machine(env.server_url), "settings": applied,
            "stage_seconds": round(stage_seconds, 3), "intake_seconds": round(seconds, 3),
            "intake_rows_per_second": round(args.size / seconds, 1),
        }
        if args.reintake:
            with psycopg.connect(env.database_url, autocommit=True) as conn:
                conn.execute("""INSERT INTO staging.disbursement (disbursement_id, disbursement_envelope_id,
                                    mis_reference_number, beneficiary_id, beneficiary_name, disbursement_amount,
                                    narrative)
                                SELECT disbursement_id, disbursement_envelope_id, mis_reference_number, beneficiary_id,
                                       beneficiary_name, disbursement_amount, narrative
                                FROM staging.disbursement ORDER BY staging_id""")
            seconds = _intake(env.database_url, business_date)
            problems += [f"re-intake: {problem}" for problem in bench_cycle.intake_problems(
                bench_cycle.intake_counts(env.database_url, envelope), args.size, True)]
            result.update(reintake_seconds=round(seconds, 3), reintake_rows_per_second=round(args.size / seconds, 1))
        result["database_size_mb"] = round(bench_cycle.database_size(env.database_url) / 1e6, 1)
        result["correctness"] = {"ok": not problems, "problems": problems}
        return result
    finally:
        log = Path(env.data_dir) / "log" if env.data_dir else None
        if args.explain_slow is not None and log and log.exists():
            target = (Path(args.json).parent if args.json else Path("/tmp")) / "bench_intake_postgres.log"
            shutil.copyfile(log, target)
            print(f"PostgreSQL log with the slow statements' plans: {target}")
        bench_cycle.teardown(env, args.keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="staged disbursements (default 100,000)")
    parser.add_argument("--reintake", action="store_true", help="then stage the same rows again and time that intake")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a server setting for the run (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    parser.add_argument("--home", help="where the embedded server lives (default: a temporary folder)")
    parser.add_argument("--database-url", help="use that server instead of an embedded one")
    parser.add_argument("--keep", action="store_true", help="keep the server, database and files")
    parser.add_argument("--explain-slow", type=int, metavar="MS",
                        help="the plan (auto_explain, ANALYZE, BUFFERS) of every statement slower than MS ms, in the "
                             "server log copied to bench_intake_postgres.log next to --json (or in /tmp)")
    args = parser.parse_args(argv)
    if any("=" not in pair for pair in args.setting):
        parser.error("--setting takes NAME=VALUE")
    # what setup_environment reads besides these
    args.pg_tune, args.log_slow = False, None
    result = run(args)
    line = (f"bench_intake: {args.size:,} disbursements staged in {result['stage_seconds']:.1f} s; intake "
            f"{result['intake_seconds']:.2f} s ({result['intake_rows_per_second']:,.0f}/s)")
    if args.reintake:
        line += f"; re-intake {result['reintake_seconds']:.2f} s ({result['reintake_rows_per_second']:,.0f}/s)"
    print(line + (f"; settings {result['settings']}" if result["settings"] else ""))
    print("correctness: " + ("OK" if result["correctness"]["ok"] else "FAILED: " + "; ".join(
        result["correctness"]["problems"])))
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0 if result["correctness"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
