"""Starts an intake run when PBMS has staged rows that are still PENDING.

The pending set (highest staging_id and count per table) is fingerprinted: a new staged row, or a row that committed
late with a lower id, gives a new fingerprint and a new run. The same fingerprint is run again only when its last run
failed or died (no process holds the intake lock while its run is still marked started), at most three times: a run
that fails every time waits for an operator (the failure is in bridge.run_failure and the run's logs).

The count stops at COUNT_CAP: counting ten million pending rows took the tick 23 s. Beyond the cap a late row with a
lower id does not change the fingerprint; nothing is lost by that: it is still PENDING when the run in progress ends
(or is taken by it), and the pending set then left is small enough to be counted exactly.
"""

import hashlib
import json

import dagster as dg

from bridge_pipelines.db.locks import advisory_lock_free
from bridge_pipelines.intake.service import INTAKE_LOCK, STAGING_TABLES, highest_pending_sql
from bridge_pipelines.jobs import intake_job
from resources import BridgeDatabase

MAX_ATTEMPTS_PER_PENDING_SET = 3
FINGERPRINT_TAG = "bridge/intake_fingerprint"
COUNT_CAP = 100_000


def _pending_sql(cap: int) -> str:
    return " UNION ALL ".join(
        f"SELECT '{table}', coalesce(({highest_pending_sql(table)}), 0), "
        f"(SELECT count(*) FROM (SELECT FROM staging.{table} WHERE intake_status = 'PENDING' LIMIT {cap + 1}) p)"
        for table in STAGING_TABLES)


@dg.sensor(job=intake_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Starts an intake run when PBMS has staged rows that are still PENDING.")
def intake_sensor(context: dg.SensorEvaluationContext, database: BridgeDatabase):
    with database.connect() as conn:
        pending = {table: (high, count) for table, high, count in conn.execute(_pending_sql(COUNT_CAP))}
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
                                    tags={"bridge/pending_rows": _shown(total, pending),
                                          FINGERPRINT_TAG: fingerprint})],
        cursor=fingerprint,
    )


def _shown(total: int, pending: dict[str, tuple[int, int]]) -> str:
    capped = any(count > COUNT_CAP for _high, count in pending.values())
    return f"at least {total:,}" if capped else str(total)
