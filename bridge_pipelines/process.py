"""`bridge process`: one pass of the whole system without the Dagster daemon.

Evaluates every sensor once, applies the partitions it asks for, executes the runs it requests in this process
(skipping run keys that already have a run, as the daemon does), and repeats until no sensor asks for anything.
Cursors are kept in the instance's key-value store. A PostgreSQL advisory lock makes two concurrent `bridge process`
calls safe: the second waits for the first, then finds nothing left to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg
import psycopg

from bridge_pipelines.db.locks import advisory_lock
from bridge_pipelines.run_failures import record_run_failure

log = logging.getLogger(__name__)

PROCESS_LOCK = 7_311_940_003
# Upstream first, so that one round can take a staged envelope all the way to the bank.
SENSOR_ORDER = ("intake_sensor", "envelope_ready_sensor", "statement_sensor")
_CURSOR_PREFIX = "bridge/process/sensor_cursor/"


@dataclass
class RunOutcome:
    job_name: str
    run_key: str
    partition_key: str | None
    run_id: str
    success: bool
    error: str | None = None


@dataclass
class ProcessReport:
    rounds: int = 0
    runs: list[RunOutcome] = field(default_factory=list)
    skipped_run_keys: list[str] = field(default_factory=list)
    failed_targets: set[tuple[str, str | None]] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return all(run.success for run in self.runs)


def _failure_message(result) -> str:
    """The first step failure's own message (a dg.Failure description or the exception), else the run's."""
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            if data.error is not None:
                cause = data.error.cause
                return (cause.message if cause is not None else data.error.message).strip()
    failures = [event for event in result.all_events if event.is_failure]
    return failures[0].message if failures else "run failed"


@contextmanager
def process_instance() -> Iterator[dg.DagsterInstance]:
    """The Dagster instance of $DAGSTER_HOME, for one `process`. Its PostgreSQL storage opens a new connection for
    every call by default (so that idle instances hold none); a pass makes hundreds of calls (each event of each run
    is one), about 3.5 ms each just to connect. Here the storage keeps a connection for the pass instead, as Dagster's
    webserver does (`optimize_for_webserver`); no statement timeout is set on it."""
    with dg.DagsterInstance.get() as instance:
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=4)
        yield instance


def _run_exists(instance: dg.DagsterInstance, sensor_name: str, run_key: str) -> bool:
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={"dagster/run_key": run_key, "dagster/sensor_name": sensor_name}), limit=1)
    return bool(runs)


def evaluate_sensor(instance: dg.DagsterInstance, defs: dg.Definitions, sensor: dg.SensorDefinition):
    """One tick of `sensor`, with its cursor kept in the instance."""
    key = _CURSOR_PREFIX + sensor.name
    cursor = instance.run_storage.get_cursor_values({key}).get(key)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, sensor_name=sensor.name,
                                      resources=dict(defs.resources or {}))
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        data = sensor.evaluate_tick(context)
    if data.cursor is not None and data.cursor != cursor:
        instance.run_storage.set_cursor_values({key: data.cursor})
    return data


def process(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    database_url: str,
    max_rounds: int = 50,
) -> ProcessReport:
    report = ProcessReport()
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as lock_conn, advisory_lock(lock_conn, PROCESS_LOCK):
        repository = defs.get_repository_def()
        # Sensors that start runs; run-status sensors react to runs, and `process` reports failures itself.
        sensors = sorted((s for s in repository.sensor_defs if s.has_jobs),
                         key=lambda s: (SENSOR_ORDER.index(s.name) if s.name in SENSOR_ORDER else 99, s.name))
        for _round in range(max_rounds):
            report.rounds += 1
            launched = 0
            for sensor in sensors:
                launched += _tick_and_run(instance, defs, sensor, report, database_url)
            if launched == 0:
                break
    report.seconds = time.perf_counter() - started
    return report


def _tick_and_run(instance: dg.DagsterInstance, defs: dg.Definitions, sensor: dg.SensorDefinition,
                  report: ProcessReport, database_url: str) -> int:
    data = evaluate_sensor(instance, defs, sensor)
    for request in data.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            known = set(instance.get_dynamic_partitions(request.partitions_def_name))
            new = [key for key in request.partition_keys if key not in known]
            if new:
                instance.add_dynamic_partitions(request.partitions_def_name, new)
        elif isinstance(request, dg.DeleteDynamicPartitionsRequest):
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    launched = 0
    for request in data.run_requests or []:
        run_key = request.run_key or ""
        job_name = request.job_name or sensor.job_name
        if run_key and _run_exists(instance, sensor.name, run_key):
            report.skipped_run_keys.append(run_key)
            continue
        if (job_name, request.partition_key) in report.failed_targets:
            # one pass does not retry what already failed in it (the daemon retries on its own schedule)
            report.skipped_run_keys.append(run_key)
            continue
        job = defs.resolve_job_def(job_name)
        tags = {**(request.tags or {}), "dagster/sensor_name": sensor.name}
        if run_key:
            tags["dagster/run_key"] = run_key
        log.info("running %s%s (run key %s)", job_name,
                 f" for partition {request.partition_key}" if request.partition_key else "", run_key)
        result = job.execute_in_process(
            run_config=request.run_config or None, instance=instance, partition_key=request.partition_key,
            tags=tags, raise_on_error=False)
        error = None
        if not result.success:
            error = _failure_message(result)
            report.failed_targets.add((job_name, request.partition_key))
        report.runs.append(RunOutcome(job_name, run_key, request.partition_key, result.run_id, result.success, error))
        if not result.success:
            failed_steps = [event.step_key for event in result.all_events if event.is_step_failure]
            with psycopg.connect(database_url, autocommit=True) as conn:
                record_run_failure(conn, result.run_id, job_name, request.partition_key,
                                   ", ".join(s for s in failed_steps if s), error)
        launched += 1
    return launched
