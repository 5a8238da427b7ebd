"""The example ID mapper (G2P Connect-style resolve): a separate party the bridge talks to over HTTP."""

from bridge_pipelines.bank.example_mapper.directory import UNRESOLVABLE_PREFIX, address_type_for, resolve_id, resolve_ids
from bridge_pipelines.bank.example_mapper.server import create_mapper_app

__all__ = ["UNRESOLVABLE_PREFIX", "address_type_for", "create_mapper_app", "resolve_id", "resolve_ids"]
