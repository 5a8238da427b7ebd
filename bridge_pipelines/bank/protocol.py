"""The sponsor bank connector protocol: what the bridge needs from a bank, independent of any bank's API.

A connector is chosen per program by `sponsor_bank_code` (`connector_for`). The project ships one connector, for
its example bank, which answers for every code unless another connector is registered for it.

Money is Decimal, never float. Idempotency: `block_funds` on `block_key`, `submit_payment_batch` on `batch_id`
(same id = same acknowledgement) and on each payment's `payment_reference` (never debited twice).

Errors: `BankUnavailable` (retryable: connection refused, timeout, HTTP 5xx) and `BankRequestRejected` (the bank
understood the request and refused it, HTTP 4xx: retrying the same request will not help). Both carry a stable
`code`. The ID mapper raises `MapperUnavailable` / `MapperRequestRejected`, which share the same two base classes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import polars as pl

if TYPE_CHECKING:
    from bridge_pipelines.config import Settings


# --- errors -----------------------------------------------------------------------------------------------------


class ServiceUnavailable(Exception):
    """Retryable: the service could not be reached, timed out or answered 5xx. The message names what happened."""

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class ServiceRequestRejected(Exception):
    """Not retryable as is: the service refused the request (4xx) with a code and a message."""

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class BankUnavailable(ServiceUnavailable):
    pass


class BankRequestRejected(ServiceRequestRejected):
    pass


class MapperUnavailable(ServiceUnavailable):
    pass


class MapperRequestRejected(ServiceRequestRejected):
    pass


# --- values -----------------------------------------------------------------------------------------------------

# Funds block statuses (FundsBlockResult.status)
BLOCKED = "BLOCKED"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
RELEASED = "RELEASED"

# Payment statuses in an acknowledgement
ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"

# Per-payment reason codes the example bank gives for REJECTED
PAYMENT_REJECTION_CODES = ("INVALID_REFERENCE", "INVALID_AMOUNT", "CURRENCY_MISMATCH", "INVALID_ACCOUNT", "INSUFFICIENT_FUNDS")

# Column order of a payments frame (`submit_payment_batch_frame`); amount is Decimal or a decimal string.
PAYMENT_COLUMNS = (
    "payment_reference",
    "disbursement_id",
    "amount",
    "currency",
    "beneficiary_name",
    "narrative",
    "fa_type",
    "bank_account_number",
    "bank_code",
    "branch_code",
    "mobile_number",
    "email_address",
    "wallet_provider",
)

ACK_SCHEMA: dict[str, pl.DataType] = {
    "payment_reference": pl.String(),
    "status": pl.String(),  # ACCEPTED | REJECTED
    "reason_code": pl.String(),  # null when accepted
    "duplicate": pl.Boolean(),  # accepted earlier (already debited): acknowledged again, not debited again
}


@dataclass(frozen=True)
class FundsCheckResult:
    available: bool
    available_balance: Decimal | None  # None when the bank does not disclose it


@dataclass(frozen=True)
class FundsBlockResult:
    status: str  # BLOCKED | INSUFFICIENT_FUNDS | RELEASED (a block released earlier under this key)
    block_reference: str | None  # None unless a block exists
    amount: Decimal | None = None
    available_balance: Decimal | None = None

    @property
    def blocked(self) -> bool:
        return self.status == BLOCKED


@dataclass(frozen=True)
class Payment:
    payment_reference: str  # the bridge's bank_reference: <= 16 chars [A-Z0-9], echoed in the statement
    disbursement_id: str
    amount: Decimal
    currency: str
    beneficiary_name: str
    narrative: str
    fa_type: str  # BANK_ACCOUNT | MOBILE_WALLET | EMAIL_WALLET
    bank_account_number: str | None = None
    bank_code: str | None = None
    branch_code: str | None = None
    mobile_number: str | None = None
    email_address: str | None = None
    wallet_provider: str | None = None


@dataclass(frozen=True)
class PaymentBatch:
    batch_id: str
    account_number: str  # the program's sponsor account, debited
    currency: str
    block_reference: str | None
    payments: list[Payment]


@dataclass(frozen=True)
class BatchAcknowledgement:
    """The bank's answer to a payment batch: one row per payment sent, in the order sent (ACK_SCHEMA)."""

    batch_id: str
    results: pl.DataFrame = field(repr=False)
    received_at: str | None = None  # when the bank first received this batch (ISO 8601)
    replayed: bool = False  # True when the bank answered from an earlier submission of the same batch_id

    @property
    def accepted_count(self) -> int:
        return int((self.results["status"] == ACCEPTED).sum())

    @property
    def rejected_count(self) -> int:
        return int((self.results["status"] == REJECTED).sum())

    def status_of(self, payment_reference: str) -> tuple[str, str | None]:
        row = self.results.filter(pl.col("payment_reference") == payment_reference).row(0, named=True)
        return row["status"], row["reason_code"]

    def __repr__(self) -> str:
        return (
            f"BatchAcknowledgement(batch_id={self.batch_id!r}, accepted={self.accepted_count}, "
            f"rejected={self.rejected_count}, replayed={self.replayed})"
        )


# --- the protocol -----------------------------------------------------------------------------------------------


@runtime_checkable
class SponsorBankConnector(Protocol):
    def check_funds(self, account_number: str, currency: str, amount: Decimal) -> FundsCheckResult: ...

    def block_funds(self, block_key: str, account_number: str, currency: str, amount: Decimal) -> FundsBlockResult: ...

    def release_funds(self, block_reference: str) -> Decimal: ...

    def submit_payment_batch(self, batch: PaymentBatch) -> BatchAcknowledgement: ...

    def submit_payment_batch_frame(
        self, batch_id: str, account_number: str, currency: str, block_reference: str | None, payments: pl.DataFrame
    ) -> BatchAcknowledgement: ...

    def query_batch(self, batch_id: str) -> BatchAcknowledgement | None: ...

    def close(self) -> None: ...


# --- registry ---------------------------------------------------------------------------------------------------

ConnectorFactory = Callable[["Settings"], SponsorBankConnector]
_registry: dict[str, ConnectorFactory] = {}
_registry_lock = threading.Lock()


def register_connector(bank_code: str, factory: ConnectorFactory) -> None:
    """Use `factory(settings)` for programs whose sponsor_bank_code is `bank_code` (case-insensitive)."""
    with _registry_lock:
        _registry[bank_code.strip().upper()] = factory


def unregister_connector(bank_code: str) -> None:
    with _registry_lock:
        _registry.pop(bank_code.strip().upper(), None)


def connector_for(bank_code: str, settings: Settings) -> SponsorBankConnector:
    """The connector for a program's sponsor bank; the example bank's unless one is registered for the code."""
    with _registry_lock:
        factory = _registry.get((bank_code or "").strip().upper())
    if factory is not None:
        return factory(settings)
    from bridge_pipelines.bank.example_bank_client import ExampleBankClient

    return ExampleBankClient.from_settings(settings)
