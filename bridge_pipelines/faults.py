"""Fault injection for the crash tests: BRIDGE_FAULT=<point> kills this process (SIGKILL) when it reaches <point>.

SIGKILL is deliberate: no exception handler, `finally` block or atexit hook runs, exactly like a power cut or an
OOM kill. Points are named after where they sit (see FAULT_POINTS).
"""

from __future__ import annotations

import os
import signal

FAULT_POINTS = (
    "intake_before_commit",
    "after_batch_recorded",  # payment batch intent committed, bank not called yet
    "after_bank_call",  # the bank accepted the batch, the acknowledgement is not recorded yet
    "reconciliation_before_commit",  # statement reconciliation computed and written, not committed
    "between_steps",  # after a pipeline step committed, before the next one starts
)


def fault_point(name: str) -> None:
    if os.environ.get("BRIDGE_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
