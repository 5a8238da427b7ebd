"""Jobs: one per stage of work; partitioning comes from the assets."""

import dagster as dg

intake_job = dg.define_asset_job(
    "intake_job", selection=dg.AssetSelection.assets("pbms_intake"),
    description="Validate pending staged rows from PBMS.")
