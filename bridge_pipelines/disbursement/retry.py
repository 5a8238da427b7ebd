"""Bounded retries with exponential backoff for calls to the bank and the mapper."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from bridge_pipelines.bank.protocol import ServiceUnavailable

T = TypeVar("T")


class AttemptsExhausted(RuntimeError):
    def __init__(self, what: str, attempts: int, last_error: ServiceUnavailable) -> None:
        super().__init__(f"{what}: gave up after {attempts} attempt(s); last error {last_error}")
        self.attempts = attempts
        self.last_error = last_error
        self.code = last_error.code


def call_with_retries(
    what: str,
    call: Callable[[], T],
    attempts: int,
    on_failure: Callable[[ServiceUnavailable, int, bool], None],
    backoff_seconds: float = 0.5,
    max_backoff_seconds: float = 10.0,
) -> T:
    """Call `call` up to `attempts` times while it raises ServiceUnavailable. `on_failure(error, attempt, final)`
    records every failed attempt (so it is visible even if the process dies during the backoff)."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ServiceUnavailable as error:
            final = attempt == attempts
            on_failure(error, attempt, final)
            if final:
                raise AttemptsExhausted(what, attempts, error) from error
            time.sleep(min(max_backoff_seconds, backoff_seconds * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")
