"""Picks up each new statement file in the inbox once.

Complete files only (temporary names and dotfiles are ignored); every new file is registered in
bridge.inbox_file, and its run key is its content hash, so an identical file re-sent (under any name) does nothing
and the registration says so. Refused files (symlinks, oversize) go to quarantine/ with a reason.
"""

import dagster as dg

from bridge_pipelines.jobs import statement_job
from bridge_pipelines.partitions import statement_partitions
from bridge_pipelines.statements.inbox import register_new_files
from resources import BridgeDatabase, StatementInbox


@dg.sensor(job=statement_job, minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Imports each new statement file dropped into the inbox, once.")
def statement_sensor(context: dg.SensorEvaluationContext, database: BridgeDatabase, inbox: StatementInbox):
    with database.connect() as conn:
        registrations = register_new_files(conn, inbox.folder(), inbox.max_bytes())
    for item in registrations:
        if item.status != "NEW":
            context.log.info(f"{item.file_name}: {item.status}: {item.detail}")
    new = [item for item in registrations if item.status == "NEW"]
    if not new:
        return dg.SensorResult(skip_reason="no new statement file" if not registrations else
                               f"{len(registrations)} file(s) seen, none new: " +
                               "; ".join(f"{r.file_name}: {r.detail}" for r in registrations[:5]))
    # Partitions are added here, before the run requests are returned, so that the requests validate the same way
    # under the daemon and under `bridge process`.
    known = set(context.instance.get_dynamic_partitions(statement_partitions.name))
    missing = [item.statement_id for item in new if item.statement_id not in known]
    if missing:
        context.instance.add_dynamic_partitions(statement_partitions.name, missing)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=item.statement_id, run_key=f"statement:{item.sha256}",
                                    tags={"bridge/statement_file": item.file_name[:200]}) for item in new],
    )
