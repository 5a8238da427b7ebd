"""Starts the disbursement pipeline for envelopes that are due and complete, and resumes unfinished ones.

Due: accepted, not cancelled, every declared disbursement received (count and amount), business date on or after
the schedule date. Resumed: started but not finished, with no process holding the envelope's lock (the run died),
not in an ERROR state (those wait for an operator), and waiting-for-funds envelopes after a pause. The run key
carries the number of runs already started, so each situation gives exactly one run.
"""

import dagster as dg

from bridge_pipelines.disbursement.envelopes import pipeline_candidates
from bridge_pipelines.jobs import disbursement_job
from bridge_pipelines.partitions import envelope_partitions
from resources import BridgeDatabase, BridgeSettings


@dg.sensor(job=disbursement_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Starts (or resumes) the disbursement pipeline of due, complete envelopes.")
def envelope_ready_sensor(context: dg.SensorEvaluationContext, database: BridgeDatabase,
                          bridge_settings: BridgeSettings):
    import os

    funds_retry_seconds = int(os.environ.get("BRIDGE_FUNDS_RETRY_SECONDS", "300"))
    with database.connect() as conn:
        candidates = pipeline_candidates(conn, bridge_settings.current_business_date(),
                                         funds_retry_seconds=funds_retry_seconds)
    if not candidates:
        return dg.SensorResult(skip_reason="no envelope is due, waiting or unfinished")
    known = set(context.instance.get_dynamic_partitions(envelope_partitions.name))
    missing = [c["envelope_id"] for c in candidates if c["envelope_id"] not in known]
    if missing:
        context.instance.add_dynamic_partitions(envelope_partitions.name, missing)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=c["envelope_id"],
                          run_key=f"disburse:{c['envelope_id']}:{c['pipeline_runs']}",
                          tags={"bridge/envelope": c["envelope_id"], "bridge/reason": c["reason"]})
            for c in candidates
        ],
    )
