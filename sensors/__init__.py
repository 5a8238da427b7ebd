"""Sensors: event-driven starts of intake, envelope and statement runs. No per-row work in a tick."""
