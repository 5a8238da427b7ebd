"""Picks up each new statement file in the inbox once.

Complete files only (temporary names and dotfiles are ignored); every new file is registered in
bridge.inbox_file, and its run key is its content hash, so an identical file re-sent (under any name) does nothing
and the registration says so. Refused files (symlinks, oversize) go to quarantine/ with a reason.

A statement whose run failed or died before it was reconciled (no process holds its lock) is run again, at most
three times in all; after that it waits for an operator (re-run the partition in the UI).
"""

import dagster as dg

from bridge_pipelines.jobs import statement_job
from bridge_pipelines.partitions import statement_partitions
from bridge_pipelines.statements.inbox import register_new_files, statement_lock_free, unfinished_statements
from resources import BridgeDatabase, StatementInbox

STATEMENT_TAG = "bridge/statement"
MAX_ATTEMPTS = 3


@dg.sensor(job=statement_job, minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Imports each new statement file dropped into the inbox, once.")
def statement_sensor(context: dg.SensorEvaluationContext, database: BridgeDatabase, inbox: StatementInbox):
    with database.connect() as conn:
        registrations = register_new_files(conn, inbox.folder(), inbox.max_bytes())
        new_ids = {item.statement_id for item in registrations if item.status == "NEW"}
        retries = []
        for statement_id, sha256, file_name in unfinished_statements(conn):
            if statement_id in new_ids:
                continue
            runs = context.instance.get_runs(filters=dg.RunsFilter(tags={STATEMENT_TAG: statement_id}), limit=10)
            if not runs:
                retries.append((statement_id, sha256, file_name, 0))
                continue
            latest = runs[0]
            failed = latest.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
            died = latest.status == dg.DagsterRunStatus.STARTED and statement_lock_free(conn, statement_id)
            if (failed or died) and len(runs) < MAX_ATTEMPTS:
                retries.append((statement_id, sha256, file_name, len(runs)))
    for item in registrations:
        if item.status != "NEW":
            context.log.info(f"{item.file_name}: {item.status}: {item.detail}")
    new = [item for item in registrations if item.status == "NEW"]
    if not new and not retries:
        return dg.SensorResult(skip_reason="no new statement file" if not registrations else
                               f"{len(registrations)} file(s) seen, none new: " +
                               "; ".join(f"{r.file_name}: {r.detail}" for r in registrations[:5]))
    # Partitions are added here, before the run requests are returned, so that the requests validate the same way
    # under the daemon and under `bridge process`. A statement to run again may lack its partition too: registered
    # by a tick that ended before it added it (or by `register_new_files` called outside the sensor).
    known = set(context.instance.get_dynamic_partitions(statement_partitions.name))
    wanted = [item.statement_id for item in new] + [statement_id for statement_id, *_ in retries]
    missing = list(dict.fromkeys(key for key in wanted if key not in known))
    if missing:
        context.instance.add_dynamic_partitions(statement_partitions.name, missing)
    requests = [dg.RunRequest(partition_key=item.statement_id, run_key=f"statement:{item.sha256}:r{item.registration_id}",
                              tags={"bridge/statement_file": item.file_name[:200], STATEMENT_TAG: item.statement_id})
                for item in new]
    requests += [dg.RunRequest(partition_key=statement_id, run_key=f"statement:{sha256}:{attempt}",
                               tags={"bridge/statement_file": file_name[:200], STATEMENT_TAG: statement_id,
                                     "bridge/attempt": str(attempt + 1)})
                 for statement_id, sha256, file_name, attempt in retries]
    return dg.SensorResult(run_requests=requests)
