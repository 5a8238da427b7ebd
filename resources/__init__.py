"""Dagster resources: thin ConfigurableResource wrappers around the bridge's core clients."""

from resources.database import BridgeDatabase
from resources.settings import BridgeSettings

__all__ = ["BridgeDatabase", "BridgeSettings"]
