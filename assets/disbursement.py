"""The disbursement pipeline, one partition per envelope: resolve accounts -> check and block funds -> ship.

Each step holds the envelope's advisory lock while it works (a dead process releases it), and is safe to run again:
it continues from what is recorded in PostgreSQL.
"""

from contextlib import contextmanager

import dagster as dg

from assets.metadata import amount, markdown_list
from bridge_pipelines.bank.protocol import ServiceRequestRejected
from bridge_pipelines.disbursement.envelopes import begin_pipeline_run, envelope_lock, load_envelope, received_audit
from bridge_pipelines.disbursement.funds import FundsBlockFailed, FundsNotAvailable, check_and_block_funds, release_unspent_block
from bridge_pipelines.disbursement.resolution import record_mapper_error, resolve_accounts
from bridge_pipelines.disbursement.retry import AttemptsExhausted
from bridge_pipelines.disbursement.shipping import ShipmentIncomplete, ship_envelope
from bridge_pipelines.faults import fault_point
from bridge_pipelines.partitions import envelope_partitions
from resources import BridgeDatabase, BridgeSettings, IdMapper, SponsorBank

GROUP = "disbursement"
OWNERS = ["team:bridge-operations"]


@contextmanager
def envelope_step(database: BridgeDatabase, envelope_id: str):
    with database.connect() as conn, envelope_lock(conn, envelope_id):
        yield conn


@contextmanager
def bank_connection(sponsor_bank: SponsorBank, sponsor_bank_code: str):
    bank = sponsor_bank.connector(sponsor_bank_code)
    try:
        yield bank
    finally:
        bank.close()


@dg.asset(
    partitions_def=envelope_partitions, group_name=GROUP, kinds={"postgres", "python"}, owners=OWNERS,
    description="Starts disbursing the envelope (PBMS can no longer change it) and gives every disbursement a "
                "financial address: through the ID mapper when the program requires it, else from the "
                "beneficiary id. Unresolvable beneficiaries become RESOLUTION_FAILED with the reason.",
)
def account_resolution(context: dg.AssetExecutionContext, database: BridgeDatabase, bridge_settings: BridgeSettings,
                       id_mapper: IdMapper) -> dg.MaterializeResult:
    envelope_id = context.partition_key
    settings = bridge_settings.settings()
    with envelope_step(database, envelope_id) as conn:
        envelope = begin_pipeline_run(conn, envelope_id, bridge_settings.current_business_date())
        resolver = id_mapper.resolver() if envelope.mapper_required else None
        try:
            result = resolve_accounts(conn, envelope, resolver, settings.mapper_batch_size, progress=context.log.info)
        except (AttemptsExhausted, ServiceRequestRejected) as error:
            record_mapper_error(conn, envelope_id, getattr(error, "code", "MAPPER_ERROR"), final=True)
            raise dg.Failure(f"envelope {envelope_id}, step account_resolution: {error}. "
                             f"Fix the mapper, then `bridge retry {envelope_id} resolution`.") from error
    fault_point("between_steps")
    metadata = {
        "resolved": result.resolved, "resolution_failed": result.failed, "mapper_batches": result.batches,
        "seconds": round(result.seconds, 3), "uses_id_mapper": envelope.mapper_required,
        "summary": markdown_list(f"Envelope {envelope_id}: resolution", {
            "resolved": result.resolved, "failed": result.failed, **result.failed_by_reason}),
    }
    for reason, count in result.failed_by_reason.items():
        metadata[f"failed_{reason}"] = count
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=envelope_partitions, group_name=GROUP, kinds={"python"}, owners=OWNERS, deps=[account_resolution],
    pool="sponsor_bank",
    description="One funds check and one funds block with the sponsor bank for the amount to be shipped. Waits "
                "(visible as FUNDS_NOT_AVAILABLE, retried by the envelope sensor) when the account is short.",
)
def envelope_funds(context: dg.AssetExecutionContext, database: BridgeDatabase, bridge_settings: BridgeSettings,
                   sponsor_bank: SponsorBank) -> dg.MaterializeResult:
    envelope_id = context.partition_key
    settings = bridge_settings.settings()
    with envelope_step(database, envelope_id) as conn:
        envelope = load_envelope(conn, envelope_id)
        if envelope.cancelled:
            return dg.MaterializeResult(metadata={"cancelled": True, "summary": dg.MetadataValue.md(
                f"Envelope {envelope_id} is cancelled: no funds are checked or blocked.")})
        try:
            with bank_connection(sponsor_bank, envelope.sponsor_bank_code) as bank:
                result = check_and_block_funds(conn, envelope, bank, settings.bank_max_attempts)
        except (FundsNotAvailable, FundsBlockFailed) as error:
            raise dg.Failure(f"envelope {envelope_id}, step envelope_funds: {error}") from error
        except (AttemptsExhausted, ServiceRequestRejected) as error:
            raise dg.Failure(f"envelope {envelope_id}, step envelope_funds: {error}. "
                             f"When the bank answers again: `bridge retry {envelope_id} funds`.") from error
    fault_point("between_steps")
    return dg.MaterializeResult(metadata={
        "amount_to_ship": amount(result.amount_to_ship),
        "amount_to_ship_plot": float(result.amount_to_ship),
        "block_reference": result.block_reference or "",
        "already_blocked": result.already_blocked,
        "summary": dg.MetadataValue.md(
            f"Envelope {envelope_id}: {result.amount_to_ship} {envelope.currency} "
            + ("blocked" if result.blocked else "nothing to block") + f" (block {result.block_reference})."),
    })


@dg.asset(
    partitions_def=envelope_partitions, group_name=GROUP, kinds={"python"}, owners=OWNERS, deps=[envelope_funds],
    pool="sponsor_bank",
    description="Ships the envelope's payments to the sponsor bank in batches (intent recorded before each call, "
                "acknowledgement after; a retry re-sends the same batch ids and references, never paying twice). "
                "Releases what is left of the funds block when done or when the envelope was cancelled.",
)
def envelope_payments(context: dg.AssetExecutionContext, database: BridgeDatabase, bridge_settings: BridgeSettings,
                      sponsor_bank: SponsorBank) -> dg.MaterializeResult:
    envelope_id = context.partition_key
    settings = bridge_settings.settings()
    with envelope_step(database, envelope_id) as conn:
        envelope = load_envelope(conn, envelope_id)
        block_reference = conn.execute(
            "SELECT funds_blocked_reference_number FROM bridge.disbursement_envelope_batch_status "
            "WHERE disbursement_envelope_id = %s", (envelope_id,)).fetchone()[0]
        try:
            with bank_connection(sponsor_bank, envelope.sponsor_bank_code) as bank:
                result = ship_envelope(conn, envelope, bank, block_reference, settings.payment_batch_size,
                                       settings.bank_max_attempts, progress=context.log.info)
                released = release_unspent_block(conn, envelope, bank, settings.bank_max_attempts) \
                    if result.completed else None
        except (AttemptsExhausted, ServiceRequestRejected, ShipmentIncomplete) as error:
            raise dg.Failure(f"envelope {envelope_id}, step envelope_payments: {error}. "
                             f"When the bank answers again: `bridge retry {envelope_id} shipment` "
                             "(the same batches are re-sent; the bank de-duplicates).") from error
    rate = result.shipped / result.seconds if result.seconds else 0.0
    metadata = {
        "shipped": result.shipped, "failed": result.failed, "batches_sent": result.batches_sent,
        "batches_planned": result.batches_planned, "completed": result.completed,
        "bank_seconds": round(result.bank_seconds, 3), "payments_per_second": round(rate, 1),
        "released_amount": amount(released) if released is not None else "",
        "summary": markdown_list(f"Envelope {envelope_id}: shipment", {
            "shipped": result.shipped, "failed at the bank": result.failed, **result.failed_by_reason,
            "completed": result.completed}),
    }
    for reason, count in result.failed_by_reason.items():
        metadata[f"failed_{reason}"] = count
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=account_resolution, blocking=True, partitions_def=envelope_partitions,
                description="Received = declared (count and amount), and the counters equal a recount of the rows.")
def received_equals_declared(context: dg.AssetCheckExecutionContext, database: BridgeDatabase) -> dg.AssetCheckResult:
    envelope_id = context.partition_key
    with database.connect() as conn:
        audit = received_audit(conn, envelope_id)
    if audit is None:
        return dg.AssetCheckResult(passed=False, metadata={"problem": f"envelope {envelope_id} does not exist"})
    return dg.AssetCheckResult(passed=audit.adds_up, metadata={
        "declared": audit.declared, "received": audit.received, "rows": audit.rows,
        "declared_total": str(audit.declared_total), "received_total": str(audit.received_total),
        "rows_total": str(audit.rows_total), "cancellation": "CANCELLED" if audit.cancelled else "NOT_CANCELLED"})


@dg.asset_check(asset=envelope_payments, partitions_def=envelope_partitions,
                description="Shipped + cancelled + failed = received, and the envelope counters equal a recount.")
def shipment_adds_up(context: dg.AssetCheckExecutionContext, database: BridgeDatabase) -> dg.AssetCheckResult:
    envelope_id = context.partition_key
    with database.connect() as conn:
        counts = dict(conn.execute(
            "SELECT disbursement_status, count(*) FROM bridge.disbursement WHERE disbursement_envelope_id = %s "
            "GROUP BY 1", (envelope_id,)).fetchall())
        shipped_counter, failed_counter, completed = conn.execute(
            "SELECT number_of_disbursements_shipped, number_of_disbursements_failed, shipment_status = 'COMPLETED' "
            "FROM bridge.disbursement_envelope_batch_status WHERE disbursement_envelope_id = %s",
            (envelope_id,)).fetchone()
    shipped = counts.get("SHIPPED", 0) + counts.get("REVERSED", 0)  # reconciled ones stay SHIPPED (migration 0020)
    failed = counts.get("FAILED", 0) + counts.get("RESOLUTION_FAILED", 0)
    cancelled = counts.get("CANCELLED", 0)
    total = sum(counts.values())
    unfinished = counts.get("RECEIVED", 0) + counts.get("RESOLVED", 0)
    passed = (shipped == shipped_counter and failed == failed_counter
              and shipped + cancelled + failed + unfinished == total and (unfinished == 0 or not completed))
    return dg.AssetCheckResult(passed=passed, metadata={
        "shipped": shipped, "shipped_counter": shipped_counter, "failed": failed, "failed_counter": failed_counter,
        "cancelled": cancelled, "not_yet_shipped": unfinished, "total": total})
