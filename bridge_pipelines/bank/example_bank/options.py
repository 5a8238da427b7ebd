"""The example bank's behaviour switches: from Settings at start-up, changeable at runtime via POST /admin/options."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from bridge_pipelines.config import Settings


class OptionError(ValueError):
    pass


@dataclass(frozen=True)
class BankOptions:
    inbox: Path
    failure_rate: float = 0.0
    failure_seed: int = 42
    page_size: int = 2000  # statement entries (:61: lines) per page
    max_entries: int = 1_000_000  # entries per statement file: a bigger day is sent as several statements
    batch_booking: bool = False  # one :61: D line per payment batch instead of one per payment
    daily_fee: Decimal = Decimal("1.00")  # booked on each day an account has activity; 0 = none
    statement_format: str = "MT940"
    business_date_override: date | None = field(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> BankOptions:
        return cls(
            inbox=settings.statement_inbox,
            failure_rate=settings.bank_failure_rate,
            failure_seed=settings.bank_seed,
            page_size=settings.bank_statement_page_size,
            max_entries=settings.bank_statement_max_entries,
            batch_booking=settings.bank_batch_booking,
            statement_format=settings.bank_statement_format,
            business_date_override=settings.business_date_override,
        )

    def business_date(self) -> date:
        """The bank's booking date: BRIDGE_BUSINESS_DATE when set (as for the bridge), else today in UTC."""
        return self.business_date_override or datetime.now(timezone.utc).date()

    def public(self) -> dict[str, Any]:
        shown = asdict(self)
        shown["inbox"] = str(self.inbox)
        shown["daily_fee"] = str(self.daily_fee)
        shown["business_date_override"] = self.business_date_override.isoformat() if self.business_date_override else None
        return shown

    def updated(self, changes: dict[str, Any]) -> BankOptions:
        allowed = {"failure_rate", "failure_seed", "page_size", "max_entries", "batch_booking", "daily_fee",
                   "statement_format"}
        unknown = set(changes) - allowed
        if unknown:
            raise OptionError(f"unknown options: {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(allowed))})")
        values: dict[str, Any] = {}
        try:
            if "failure_rate" in changes:
                values["failure_rate"] = float(changes["failure_rate"])
                if not 0.0 <= values["failure_rate"] <= 1.0:
                    raise OptionError("failure_rate must be between 0 and 1")
            if "failure_seed" in changes:
                values["failure_seed"] = int(changes["failure_seed"])
            if "page_size" in changes:
                values["page_size"] = int(changes["page_size"])
                if values["page_size"] < 1:
                    raise OptionError("page_size must be at least 1")
            if "max_entries" in changes:
                values["max_entries"] = int(changes["max_entries"])
                if values["max_entries"] < 1:
                    raise OptionError("max_entries must be at least 1")
            if "batch_booking" in changes:
                if not isinstance(changes["batch_booking"], bool):
                    raise OptionError("batch_booking must be true or false")
                values["batch_booking"] = changes["batch_booking"]
            if "daily_fee" in changes:
                values["daily_fee"] = Decimal(str(changes["daily_fee"]))
                if values["daily_fee"] < 0:
                    raise OptionError("daily_fee must not be negative")
            if "statement_format" in changes:
                values["statement_format"] = str(changes["statement_format"]).upper()
                if values["statement_format"] not in ("MT940", "CAMT053"):
                    raise OptionError("statement_format must be MT940 or CAMT053")
        except (TypeError, ValueError, InvalidOperation) as exc:
            if isinstance(exc, OptionError):
                raise
            raise OptionError(f"invalid option value: {exc}") from None
        return replace(self, **values)


class OptionsHolder:
    """The current options, replaced atomically (request threads read a consistent snapshot)."""

    def __init__(self, options: BankOptions) -> None:
        self._options = options
        self._lock = threading.Lock()

    @property
    def current(self) -> BankOptions:
        return self._options

    def update(self, changes: dict[str, Any]) -> BankOptions:
        with self._lock:
            self._options = self._options.updated(changes)
            return self._options
