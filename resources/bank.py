"""The sponsor bank and the ID mapper as Dagster resources (connection details and tokens from the environment)."""

from __future__ import annotations

import dagster as dg

from bridge_pipelines.bank.protocol import SponsorBankConnector, connector_for
from bridge_pipelines.config import load_settings
from bridge_pipelines.disbursement.resolution import Resolver


class SponsorBank(dg.ConfigurableResource):
    """Chooses the connector for a program's sponsor bank code (BRIDGE_BANK_URL / BRIDGE_BANK_TOKEN)."""

    def connector(self, sponsor_bank_code: str) -> SponsorBankConnector:
        return connector_for(sponsor_bank_code, load_settings())


class IdMapper(dg.ConfigurableResource):
    """The ID mapper client (BRIDGE_MAPPER_URL / BRIDGE_MAPPER_TOKEN)."""

    def resolver(self) -> Resolver:
        from bridge_pipelines.bank.mapper_client import IdMapperClient

        client = IdMapperClient.from_settings(load_settings())
        return client.resolve
