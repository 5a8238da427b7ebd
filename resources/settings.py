"""Run-time settings (business date, SLA days, batch sizes...) as a Dagster resource.

Values come from the environment (bridge_pipelines.config) when the resource is used, so a run always sees the
configuration of the process that executes it; `business_date` can be overridden per run for replays.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from bridge_pipelines.config import Settings, load_settings


class BridgeSettings(dg.ConfigurableResource):
    business_date: str = ""  # YYYY-MM-DD; empty: BRIDGE_BUSINESS_DATE, else today (UTC)

    def settings(self) -> Settings:
        return load_settings()

    def current_business_date(self) -> date:
        return date.fromisoformat(self.business_date) if self.business_date else load_settings().business_date
