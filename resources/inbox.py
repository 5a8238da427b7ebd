"""The statement inbox as a Dagster resource (a local folder; an object store or SFTP drop later)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from bridge_pipelines.config import load_settings


class StatementInbox(dg.ConfigurableResource):
    """path empty: BRIDGE_STATEMENT_INBOX (default $BRIDGE_HOME/inbox)."""

    path: str = ""

    def folder(self) -> Path:
        folder = Path(self.path) if self.path else load_settings().statement_inbox
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def max_bytes(self) -> int:
        return load_settings().statement_max_bytes
