"""Bank statements, one partition per statement file: parse and check, then reconcile back to disbursements."""

import hashlib

import dagster as dg

from assets.metadata import markdown_list, table
from bridge_pipelines.partitions import statement_partitions
from bridge_pipelines.reconciliation.audit import envelopes_not_adding_up
from bridge_pipelines.reconciliation.writeback import reconcile_statement
from bridge_pipelines.statements.importing import check_statement, parse_statement_file, record_statement
from bridge_pipelines.statements.inbox import file_of_statement, quarantine, safe_inbox_path, statement_lock
from bridge_pipelines.statements.model import ParsedStatementFile
from bridge_pipelines.statements.sequence import sequence_gaps
from resources import BridgeDatabase, StatementInbox

OWNERS = ["team:bridge-operations"]


# statement_job runs both assets in one process (in_process_executor): the file statement_lines parsed is handed to
# statement_reconciliation here, keyed by the file's sha256 (the parse of identical bytes is identical), instead of
# being read back from PostgreSQL and parsed again (about 5 s for a 1,000,000-line file). One entry only; on a miss
# (reconciliation re-run on its own, another process) the stored file is read and parsed as before.
_parsed_files: dict[str, ParsedStatementFile] = {}


@dg.asset(
    partitions_def=statement_partitions, group_name="statements", kinds={"python", "postgres"}, owners=OWNERS,
    description="Parses one statement file (MT940 or camt.053) and checks its integrity: every entry parsed, "
                "balances close per page, pages chain, the account is a program funding account. A file failing a "
                "check is moved to quarantine/ with a reason file and recorded in ERROR; nothing of it is applied.",
)
def statement_lines(context: dg.AssetExecutionContext, database: BridgeDatabase,
                    inbox: StatementInbox) -> dg.MaterializeResult:
    statement_id = context.partition_key
    folder = inbox.folder()
    with database.connect() as conn, statement_lock(conn, statement_id):
        registered = file_of_statement(conn, statement_id)
        if registered is None:
            raise dg.Failure(f"statement {statement_id}: no file is registered for it in the inbox")
        file_name, sha256 = registered
        path = safe_inbox_path(folder, file_name)
        if not path.exists():
            raise dg.Failure(f"statement {statement_id}: file {file_name} is no longer in the inbox {folder}")
        if path.is_symlink():
            raise dg.Failure(f"statement {statement_id}: {file_name} became a symbolic link after it was registered; "
                             "it is not read")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise dg.Failure(f"statement {statement_id}: {file_name} changed after it was registered (content hash "
                             "differs); drop the new version under a new name")
        outcome = check_statement(conn, statement_id, data)
        with conn.transaction():
            record_statement(conn, outcome, file_name, sha256, data)
            conn.execute("UPDATE bridge.inbox_file SET inbox_status = %s, detail = %s WHERE statement_id = %s "
                         "AND file_name = %s AND inbox_status IN ('NEW', 'IMPORTED')",
                         ("IMPORTED" if outcome.ok else "QUARANTINED",
                          "parsed" if outcome.ok else f"{outcome.error_code}: {outcome.error_detail}", statement_id,
                          file_name))
        account = conn.execute("SELECT account_number FROM bridge.account_statement WHERE statement_id = %s",
                               (statement_id,)).fetchone()[0]
        gaps = sequence_gaps(conn, account) if account else []
    _parsed_files.clear()
    if outcome.ok:
        _parsed_files[sha256] = outcome.parsed
    if not outcome.ok:
        quarantine(folder, file_name, f"{outcome.error_code}: {outcome.error_detail}")
        context.log.warning(f"statement {statement_id} ({file_name}) quarantined: {outcome.error_code}")
    parsed = outcome.parsed
    return dg.MaterializeResult(metadata={
        "file": file_name, "format": parsed.format, "pages": len(parsed.pages), "lines": parsed.lines.height,
        "status": "PARSED" if outcome.ok else "QUARANTINED",
        "accounts": ", ".join(sorted({p.account or "?" for p in parsed.pages})),
        "sequence_gaps": len(gaps),
        "missing_statements": ", ".join(f"{g['first_missing']}-{g['last_missing']}" for g in gaps[:20]) or "none",
        "summary": markdown_list(f"Statement {statement_id}", {
            "file": file_name, "pages": len(parsed.pages), "lines": parsed.lines.height,
            "problem": f"{outcome.error_code}: {outcome.error_detail}" if not outcome.ok else "none"}),
    })


@dg.asset(
    partitions_def=statement_partitions, group_name="reconciliation", kinds={"polars", "postgres"}, owners=OWNERS,
    deps=[statement_lines],
    description="Reconciles every line of the statement to the disbursements the bridge shipped (vectorised "
                "Polars join): debits -> RECONCILED, reversals and returns -> REVERSED with the reason, batch "
                "bookings, and error-recon lines (unknown reference, duplicate, reversal without debit, amount or "
                "currency mismatch). Lines that are not ours are kept as unrelated. One transaction.",
)
def statement_reconciliation(context: dg.AssetExecutionContext, database: BridgeDatabase) -> dg.MaterializeResult:
    statement_id = context.partition_key
    with database.connect() as conn, statement_lock(conn, statement_id):
        row = conn.execute("SELECT statement_process_status, file_sha256, statement_process_error_code "
                           "FROM bridge.account_statement WHERE statement_id = %s", (statement_id,)).fetchone()
        if row is None:
            raise dg.Failure(f"statement {statement_id} was not imported (run statement_lines first)")
        status, sha256, error_code = row
        if status == "ERROR":
            return dg.MaterializeResult(metadata={"status": "QUARANTINED", "error_code": error_code or "",
                                                  "summary": dg.MetadataValue.md(
                                                      f"Statement {statement_id} is quarantined ({error_code}): "
                                                      "nothing reconciled. Fix the file and drop it again.")})
        parsed = _parsed_files.pop(sha256, None)
        if parsed is None:
            raw_file = conn.execute("SELECT raw_file FROM bridge.account_statement WHERE statement_id = %s",
                                    (statement_id,)).fetchone()[0]
            parsed = parse_statement_file(bytes(raw_file))
        summary = reconcile_statement(conn, statement_id, parsed)
    rate = summary.lines / summary.seconds if summary.seconds else 0.0
    context.log.info(f"statement {statement_id}: {summary.lines} lines in {summary.seconds:.2f} s ({rate:,.0f}/s)")
    metadata = {
        "lines": summary.lines, "lines_reconciled": summary.reconciled_lines,
        "lines_in_error": summary.error_lines, "lines_unrelated": summary.unrelated_lines,
        "disbursements_reconciled": summary.disbursements_reconciled,
        "disbursements_reversed": summary.disbursements_reversed, "seconds": round(summary.seconds, 3),
        "lines_per_second": round(rate, 1), "envelopes": ", ".join(summary.envelopes[:20]),
        "summary": markdown_list(f"Statement {statement_id}: reconciliation", {
            "lines": summary.lines, "reconciled": summary.disbursements_reconciled,
            "reversed": summary.disbursements_reversed, "unrelated": summary.unrelated_lines,
            **{f"error {k}": v for k, v in summary.errors_by_reason.items()}}),
    }
    for reason, count in summary.errors_by_reason.items():
        metadata[f"error_{reason}"] = count
    if summary.first_errors:
        metadata["first_unmatched"] = table(summary.first_errors, ["page", "entry_sequence", "mark", "amount",
                                                                   "error_reason", "error_detail"])
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=statement_lines, partitions_def=statement_partitions,
                description="Per page: opening balance + lines = closing balance, every entry parsed, pages chain.")
def statement_balances_close(context: dg.AssetCheckExecutionContext,
                             database: BridgeDatabase) -> dg.AssetCheckResult:
    with database.connect() as conn:
        status, code, detail = conn.execute(
            "SELECT statement_process_status, statement_process_error_code, statement_process_error_detail "
            "FROM bridge.account_statement WHERE statement_id = %s", (context.partition_key,)).fetchone()
    return dg.AssetCheckResult(passed=status != "ERROR", metadata={
        "status": status, "error_code": code or "", "detail": (detail or "")[:500]})


@dg.asset_check(asset=statement_reconciliation, partitions_def=statement_partitions,
                description="Every line is reconciled, unrelated or in error-recon; for every envelope it touched, "
                            "the reconciled and reversed counters equal a recount of its recorded reconciliations.")
def reconciliation_adds_up(context: dg.AssetCheckExecutionContext, database: BridgeDatabase) -> dg.AssetCheckResult:
    statement_id = context.partition_key
    with database.connect() as conn:
        lines, reconciled, unrelated, errors, status = conn.execute(
            "SELECT number_of_lines, number_of_lines_reconciled, number_of_lines_unrelated, number_of_lines_in_error, "
            "statement_process_status FROM bridge.account_statement WHERE statement_id = %s",
            (statement_id,)).fetchone()
        if status != "RECONCILED":
            return dg.AssetCheckResult(passed=True, metadata={"status": status, "note": "not reconciled"})
        bad_envelopes = envelopes_not_adding_up(conn, statement_id)
    lines_add_up = lines == (reconciled or 0) + (unrelated or 0) + (errors or 0)
    return dg.AssetCheckResult(passed=lines_add_up and not bad_envelopes, metadata={
        "lines": lines, "reconciled": reconciled, "unrelated": unrelated, "in_error": errors,
        "envelopes_not_adding_up": ", ".join(bad_envelopes)})
