"""PBMS intake: set-based validation of staged rows into the core tables."""
