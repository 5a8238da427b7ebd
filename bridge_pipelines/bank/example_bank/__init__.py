"""The example sponsor bank: a separate party with real accounts and a ledger (schema example_bank), an HTTP API,
destination failure simulation and end-of-day MT940 (or camt.053) statements into the bridge's inbox."""

from __future__ import annotations

from bridge_pipelines.bank.example_bank.failures import FAILURE_REASONS, RETURN_REASON_CODES, failure_reason_for
from bridge_pipelines.bank.example_bank.server import create_bank_app, request_close_day, run_example_servers

__all__ = [
    "FAILURE_REASONS",
    "RETURN_REASON_CODES",
    "create_bank_app",
    "failure_reason_for",
    "request_close_day",
    "run_example_servers",
]
