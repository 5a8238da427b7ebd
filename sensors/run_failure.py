"""Records every failed run in bridge.run_failure and the logs, naming the envelope or statement and the step."""

import dagster as dg

from bridge_pipelines.run_failures import record_run_failure
from resources import BridgeDatabase


@dg.run_failure_sensor(name="run_failure_sensor", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Records failed runs (job, partition, step, error) in bridge.run_failure.")
def run_failure_sensor(context: dg.RunFailureSensorContext, database: BridgeDatabase):
    run = context.dagster_run
    partition = run.tags.get("dagster/partition")
    steps = [event.step_key for event in context.get_step_failure_events()]
    message = context.failure_event.message
    if context.get_step_failure_events():
        error = context.get_step_failure_events()[0].event_specific_data.error
        message = error.message if error else message
    with database.connect() as conn:
        record_run_failure(conn, run.run_id, run.job_name, partition, ", ".join(s for s in steps if s), message)
    context.log.error(f"run {run.run_id} of {run.job_name} failed"
                      + (f" for {partition}" if partition else "") + (f" in {', '.join(steps)}" if steps else "")
                      + f": {message}")
