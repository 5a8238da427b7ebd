"""The bridge's PostgreSQL as a Dagster resource."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from bridge_pipelines.config import load_settings
from bridge_pipelines.db.server import libpq_url, resolve_database_url


class BridgeDatabase(dg.ConfigurableResource):
    """Connections to the bridge database. `url` empty: BRIDGE_DATABASE_URL, else the embedded server."""

    url: str = ""

    def resolved_url(self) -> str:
        return libpq_url(self.url) if self.url else resolve_database_url(load_settings())

    @contextmanager
    def connect(self, autocommit: bool = True) -> Iterator[psycopg.Connection]:
        # prepare_threshold=None: no server-side prepared statements. The bridge runs few, set-based statements, many
        # over temp tables whose size changes from call to call; a cached generic plan for those is a risk (one
        # chosen for a 10-row temp table was used for 10,000 rows) and saves nothing worth having.
        with psycopg.connect(self.resolved_url(), autocommit=autocommit, prepare_threshold=None) as conn:
            yield conn
