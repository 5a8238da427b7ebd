"""Starts an intake run when PBMS has staged rows that are still PENDING.

The run key is built from the pending set (highest staging_id and count per table): a new staged row, or a row
that committed late with a lower id, gives a new key; an unchanged pending set (a run in progress, or a failed run
an operator must look at) gives the same key, and Dagster does not start it twice.
"""


import hashlib
import json

import dagster as dg

from bridge_pipelines.intake.service import STAGING_TABLES
from bridge_pipelines.jobs import intake_job
from resources import BridgeDatabase

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
    fingerprint = json.dumps(pending, sort_keys=True)
    run_key = "intake-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=run_key, tags={"bridge/pending_rows": str(total)})],
        cursor=fingerprint,
    )
