"""Jobs: one per stage of work; partitioning comes from the assets."""

import dagster as dg

intake_job = dg.define_asset_job(
    "intake_job", selection=dg.AssetSelection.assets("pbms_intake"),
    description="Validate pending staged rows from PBMS.")

# All steps of an envelope in one process: they share nothing in memory (all state is in PostgreSQL), but one
# process per run avoids a process start per step.
disbursement_job = dg.define_asset_job(
    "disbursement_job",
    selection=dg.AssetSelection.assets("account_resolution", "envelope_funds", "envelope_payments"),
    executor_def=dg.in_process_executor,
    description="Resolve accounts, check and block funds, ship payments, for one envelope.")

statement_job = dg.define_asset_job(
    "statement_job",
    selection=dg.AssetSelection.assets("statement_lines", "statement_reconciliation"),
    executor_def=dg.in_process_executor,
    description="Parse, check and reconcile one statement file.")
