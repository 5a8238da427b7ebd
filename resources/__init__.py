"""Dagster resources: thin ConfigurableResource wrappers around the bridge's core clients."""

from resources.bank import IdMapper, SponsorBank
from resources.database import BridgeDatabase
from resources.inbox import StatementInbox
from resources.settings import BridgeSettings

__all__ = ["BridgeDatabase", "BridgeSettings", "IdMapper", "SponsorBank", "StatementInbox"]
