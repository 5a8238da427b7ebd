"""PBMS intake as an asset: validate all pending staged rows, register accepted envelopes as partitions."""


import dagster as dg

from assets.metadata import markdown_list, table
from bridge_pipelines.intake.service import rejected_examples, run_intake
from bridge_pipelines.partitions import envelope_partitions
from resources import BridgeDatabase, BridgeSettings


def register_envelope_partitions(instance: dg.DagsterInstance, envelope_ids: list[str]) -> list[str]:
    """Add the envelopes that are not partitions yet; returns the ones added."""
    known = set(instance.get_dynamic_partitions(envelope_partitions.name))
    new = [envelope_id for envelope_id in envelope_ids if envelope_id not in known]
    if new:
        instance.add_dynamic_partitions(envelope_partitions.name, new)
    return new


@dg.asset(
    group_name="intake",
    kinds={"postgres"},
    owners=["team:bridge-operations"],
    description=(
        "Validates every pending row PBMS staged (programs, envelopes, amendments, disbursements, cancellations) "
        "in one transaction: each ends ACCEPTED or REJECTED with an error code. Accepted envelopes become "
        "`envelope` partitions."
    ),
)
def pbms_intake(context: dg.AssetExecutionContext, database: BridgeDatabase, bridge_settings: BridgeSettings):
    settings = bridge_settings.settings()
    business_date = bridge_settings.current_business_date()
    with database.connect() as conn:
        summary = run_intake(conn, business_date, settings.disbursement_sla_days)
        envelope_ids = [row[0] for row in conn.execute(
            "SELECT disbursement_envelope_id FROM bridge.disbursement_envelope ORDER BY created_at")]
        rejected = rejected_examples(conn, limit=20) if summary.rejected else []
    added = register_envelope_partitions(context.instance, envelope_ids)
    context.log.info(
        f"intake for business date {business_date}: {summary.total_processed} staged rows, "
        f"accepted {summary.accepted}, rejected {summary.rejected_by_code}; {len(added)} new envelope partition(s)"
    )
    metadata: dict[str, object] = {
        "rows_processed": summary.total_processed,
        "rows_accepted": sum(summary.accepted.values()),
        "rows_rejected": sum(summary.rejected.values()),
        "disbursements_accepted": summary.accepted.get("disbursement", 0),
        "disbursements_rejected": summary.rejected.get("disbursement", 0),
        "envelopes_accepted": summary.accepted.get("disbursement_envelope", 0),
        "new_envelope_partitions": len(added),
        "seconds": round(summary.seconds, 3),
        "business_date": business_date.isoformat(),
        "summary": markdown_list("Rejected by code", summary.rejected_by_code or {"none": 0}),
    }
    for code, count in summary.rejected_by_code.items():
        metadata[f"rejected_{code}"] = count
    if rejected:
        metadata["first_rejected"] = table(
            rejected, ["staging_table", "staging_id", "intake_error_code", "intake_error_detail"])
    return dg.MaterializeResult(metadata=metadata)
