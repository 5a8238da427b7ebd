"""The synchronous PBMS API: OpenG2P G2P Bridge 1.x endpoints over the bridge's own intake rules."""

from bridge_pipelines.api.app import create_api_app

__all__ = ["create_api_app"]
