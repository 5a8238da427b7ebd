"""The Dagster instance: $DAGSTER_HOME/dagster.yaml with dagster-postgres storage in database `dagster`.

The bridge writes dagster.yaml when it is absent (or when it wrote it itself and the database moved); a file an
operator wrote is never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from bridge_pipelines.config import Settings
from bridge_pipelines.db.server import dagster_storage_url

MARKER = "# written by the bridge: edit freely, then remove this line so the bridge leaves it alone"


def dagster_yaml(storage_url: str, max_concurrent_runs: int = 4) -> str:
    return f"""{MARKER}
storage:
  postgres:
    postgres_url: "{storage_url}"
concurrency:
  runs:
    max_concurrent_runs: {max_concurrent_runs}
    tag_concurrency_limits:
      # at most one run per envelope and per statement at a time
      - key: "dagster/partition"
        value:
          applyLimitPerUniqueValue: true
        limit: 1
  pools:
    # pool "sponsor_bank": steps that call the sponsor bank
    default_limit: 2
telemetry:
  enabled: false
"""


def ensure_dagster_home(settings: Settings, database_url: str) -> Path:
    """Create $DAGSTER_HOME with its dagster.yaml and export DAGSTER_HOME for Dagster in this process."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    storage = (dagster_storage_url(settings.dagster_database_url, same_database=True)
               if settings.dagster_database_url else dagster_storage_url(database_url))
    wanted = dagster_yaml(storage)
    if not config.exists() or (config.read_text().startswith(MARKER) and config.read_text() != wanted):
        temp = config.with_suffix(".yaml.tmp")
        temp.write_text(wanted)
        temp.replace(config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
