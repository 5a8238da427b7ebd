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
        with psycopg.connect(self.resolved_url(), autocommit=autocommit) as conn:
            yield conn
