"""The one Definitions object of the bridge's code location."""

from __future__ import annotations

import dagster as dg

from assets.intake import pbms_intake
from bridge_pipelines.jobs import intake_job
from resources import BridgeDatabase, BridgeSettings
from sensors.intake import intake_sensor

defs = dg.Definitions(
    assets=[pbms_intake],
    jobs=[intake_job],
    sensors=[intake_sensor],
    resources={
        "database": BridgeDatabase(),
        "bridge_settings": BridgeSettings(),
    },
)
