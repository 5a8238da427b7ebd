"""Starts an intake run when PBMS has staged rows that are still PENDING.

The pending set (highest staging_id and count per table) is fingerprinted: a new staged row, or a row that committed
late with a lower id, gives a new fingerprint and a new run. The same fingerprint is run again only when its last run
failed or died (no process holds the intake lock while its run is still marked started), at most three times: a run
that fails every time waits for an operator (the failure is in bridge.run_failure and the run's logs).
"""

import hashlib
import json

import dagster as dg

from bridge_pipelines.db.locks import advisory_lock_free
from bridge_pipelines.intake.service import INTAKE_LOCK, STAGING_TABLES
from bridge_pipelines.jobs import intake_job
from resources import BridgeDatabase

MAX_ATTEMPTS_PER_PENDING_SET = 3
FINGERPRINT_TAG = "bridge/intake_fingerprint"

_PENDING_SQL = " UNION ALL ".join(
    f"SELECT '{table}', coalesce(max(staging_id), 0), count(*) FROM staging.{table} WHERE intake_status = 'PENDING'"
    for table in STAGING_TABLES
)


@dg.sensor(job=intake_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Starts an intake run when PBMS has staged rows that are still PENDING.")
def intake_sensor(context: dg.SensorEvaluationContext, database: BridgeDatabase):
    with database.connect() as conn:
        pending = {table: (high, count) for table, high, count in conn.execute(_PENDING_SQL)}
        total = sum(count for _high, count in pending.values())
        if total == 0:
            return dg.SensorResult(skip_reason="no pending staged rows", cursor=context.cursor)
        fingerprint = hashlib.sha256(json.dumps(pending, sort_keys=True).encode()).hexdigest()[:16]
        earlier = context.instance.get_runs(filters=dg.RunsFilter(tags={FINGERPRINT_TAG: fingerprint}), limit=10)
        if earlier:
            latest = earlier[0]
            finished_badly = latest.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
            died = latest.status == dg.DagsterRunStatus.STARTED and advisory_lock_free(conn, INTAKE_LOCK)
            if not (finished_badly or died):
                return dg.SensorResult(skip_reason=f"intake run {latest.run_id} for these rows is {latest.status.value}",
                                       cursor=fingerprint)
            if len(earlier) >= MAX_ATTEMPTS_PER_PENDING_SET:
                return dg.SensorResult(
                    skip_reason=f"intake failed {len(earlier)} times for the same pending rows (last run "
                                f"{latest.run_id}); fix the cause, then stage again or re-run pbms_intake",
                    cursor=fingerprint)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"intake-{fingerprint}-{len(earlier)}",
                                    tags={"bridge/pending_rows": str(total), FINGERPRINT_TAG: fingerprint})],
        cursor=fingerprint,
    )
