"""The bridge's client for the example sponsor bank (implements SponsorBankConnector), plus its admin calls.

Also holds the small JSON-over-HTTP caller the mapper client shares: bearer token, keep-alive, every failure mapped
to a typed error that names what happened (never a bare httpx exception). Tokens are never logged.

Wire format of a payment batch (POST /payments/batches): the envelope fields plus `payments` as columns
({"payment_reference": [...], "amount": ["100.50", ...], ...}); amounts are decimal strings. Built from a Polars
frame in Rust (implode + write_json), so a 10,000-payment batch serialises in a few milliseconds.
"""

from __future__ import annotations

import json
from datetime import date
from urllib.parse import quote
from decimal import Decimal
from typing import Any

import httpx
import polars as pl

from bridge_pipelines.bank.protocol import (
    ACK_SCHEMA,
    PAYMENT_COLUMNS,
    BankRequestRejected,
    BankUnavailable,
    BatchAcknowledgement,
    FundsBlockResult,
    FundsCheckResult,
    PaymentBatch,
    ServiceRequestRejected,
    ServiceUnavailable,
)
from bridge_pipelines.config import Settings


def local_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def bank_base_url(settings: Settings) -> str:
    """BRIDGE_BANK_URL, else the example bank `bridge up` starts."""
    return (settings.bank_url or local_url(settings.host, settings.bank_port)).rstrip("/")


def mapper_base_url(settings: Settings) -> str:
    """BRIDGE_MAPPER_URL, else the example mapper `bridge up` starts."""
    return (settings.mapper_url or local_url(settings.host, settings.mapper_port)).rstrip("/")


class JsonHttp:
    def __init__(
        self,
        service: str,
        base_url: str,
        token: str,
        timeout: float,
        unavailable: type[ServiceUnavailable],
        rejected: type[ServiceRequestRejected],
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._unavailable = unavailable
        self._rejected = rejected
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_keepalive_connections=8, max_connections=16),
        )

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, *, body: bytes | None = None, not_found_is_none: bool = False) -> Any:
        """The decoded JSON answer. Raises `unavailable` (connection, timeout, 5xx, unreadable answer) or
        `rejected` (4xx, with the service's code). With not_found_is_none, a 404 answers None."""
        what = f"{method} {self.base_url}{path}"
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            response = self._client.request(method, path, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise self._unavailable("TIMEOUT", f"{self.service} did not answer {what} in time ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise self._unavailable("CONNECTION_FAILED", f"cannot reach {self.service} for {what}: {exc}") from None
        status = response.status_code
        if status >= 500:
            code, message = _error_of(response)
            raise self._unavailable(code or f"HTTP_{status}", f"{self.service} answered {status} to {what}: {message}", status=status)
        if status == 404 and not_found_is_none:
            return None
        if status >= 400:
            code, message = _error_of(response)
            raise self._rejected(code or f"HTTP_{status}", f"{self.service} refused {what} ({status}): {message}", status=status)
        try:
            return json.loads(response.content)
        except ValueError:
            raise self._unavailable("BAD_RESPONSE", f"{self.service} answered {what} with a body that is not JSON", status=status) from None


def _error_of(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        return body.get("code"), str(body.get("message", ""))[:500]
    return None, str(body)[:200]


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def payments_frame(payments: list[Any]) -> pl.DataFrame:
    """Payment objects -> a payments frame (PAYMENT_COLUMNS, strings; amounts as exact decimal strings)."""
    columns: dict[str, list[Any]] = {c: [getattr(p, c) for p in payments] for c in PAYMENT_COLUMNS}
    columns["amount"] = [None if a is None else str(a) for a in columns["amount"]]
    return pl.DataFrame(columns, schema={c: pl.String for c in PAYMENT_COLUMNS})


def _payments_json(payments: pl.DataFrame) -> str:
    """The columnar JSON object of a payments frame (missing optional columns are sent as nulls)."""
    amount_type = payments.schema.get("amount")
    if amount_type is None:
        raise ValueError("payments need an amount column")
    if amount_type.is_float():
        raise TypeError("payment amounts must be Decimal or decimal strings, never floats")
    exprs = [
        (pl.col(c) if c in payments.columns else pl.lit(None)).cast(pl.String).alias(c) for c in PAYMENT_COLUMNS
    ]
    text = payments.select(exprs).select(pl.all().implode()).write_json()
    return text[1:-1]  # [{...columns...}] -> {...columns...}


def acknowledgement_from(body: dict[str, Any]) -> BatchAcknowledgement:
    results = body.get("results") or {}
    frame = pl.DataFrame({c: results.get(c, []) for c in ACK_SCHEMA}, schema=ACK_SCHEMA)
    return BatchAcknowledgement(
        batch_id=body["batch_id"], results=frame, received_at=body.get("received_at"), replayed=bool(body.get("replayed"))
    )


class ExampleBankClient:
    """SponsorBankConnector for the example bank. Thread-safe (one keep-alive httpx client)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self._http = JsonHttp("the example bank", base_url, token, timeout, BankUnavailable, BankRequestRejected)

    @classmethod
    def from_settings(cls, settings: Settings) -> ExampleBankClient:
        return cls(bank_base_url(settings), settings.bank_token, timeout=settings.bank_timeout_seconds)

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ExampleBankClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return self._http.call("POST", path, body=json.dumps(body).encode(), **kwargs)

    # --- SponsorBankConnector -----------------------------------------------------------------------------------

    def check_funds(self, account_number: str, currency: str, amount: Decimal) -> FundsCheckResult:
        answer = self._post("/funds/check", {"account_number": account_number, "currency": currency, "amount": str(amount)})
        return FundsCheckResult(available=bool(answer["available"]), available_balance=_decimal(answer.get("available_balance")))

    def block_funds(self, block_key: str, account_number: str, currency: str, amount: Decimal) -> FundsBlockResult:
        answer = self._post(
            "/funds/block",
            {"block_key": block_key, "account_number": account_number, "currency": currency, "amount": str(amount)},
        )
        return FundsBlockResult(
            status=answer["status"],
            block_reference=answer.get("block_reference"),
            amount=_decimal(answer.get("amount")),
            available_balance=_decimal(answer.get("available_balance")),
        )

    def release_funds(self, block_reference: str) -> Decimal:
        answer = self._post("/funds/release", {"block_reference": block_reference})
        return Decimal(answer["released_now"])

    def submit_payment_batch(self, batch: PaymentBatch) -> BatchAcknowledgement:
        return self.submit_payment_batch_frame(
            batch.batch_id, batch.account_number, batch.currency, batch.block_reference, payments_frame(batch.payments)
        )

    def submit_payment_batch_frame(
        self, batch_id: str, account_number: str, currency: str, block_reference: str | None, payments: pl.DataFrame
    ) -> BatchAcknowledgement:
        """`payments`: PAYMENT_COLUMNS (amount Decimal or string; absent optional columns are sent as nulls)."""
        head = json.dumps(
            {"batch_id": batch_id, "account_number": account_number, "currency": currency, "block_reference": block_reference},
            separators=(",", ":"),
        )
        body = f'{head[:-1]},"payments":{_payments_json(payments)}}}'.encode()
        return acknowledgement_from(self._http.call("POST", "/payments/batches", body=body))

    def query_batch(self, batch_id: str) -> BatchAcknowledgement | None:
        answer = self._http.call("GET", f"/payments/batches/{quote(batch_id, safe='')}", not_found_is_none=True)
        return None if answer is None else acknowledgement_from(answer)

    # --- example bank only: accounts, statements, test controls -------------------------------------------------

    def create_account(self, account_number: str, currency: str, amount: Decimal | str = "0") -> dict[str, Any]:
        """Opens the account if needed and credits `amount` (a top-up, shown as a C line in the statement)."""
        return self._post("/accounts", {"account_number": account_number, "currency": currency, "amount": str(amount)})

    top_up = create_account

    def get_account(self, account_number: str) -> dict[str, Any]:
        return self._http.call("GET", f"/accounts/{quote(account_number, safe='')}")

    def close_day(self, business_date: date | None = None) -> dict[str, Any]:
        body = {"business_date": business_date.isoformat()} if business_date else {}
        return self._post("/statements/close-day", body)

    def add_fault(self, path_prefix: str, mode: str, *, count: int = 1, seconds: float = 0.0, status: int = 500) -> None:
        self._post("/admin/faults", {"path_prefix": path_prefix, "mode": mode, "count": count, "seconds": seconds, "status": status})

    def reset_faults(self) -> None:
        self._http.call("DELETE", "/admin/faults")

    def set_options(self, **options: Any) -> dict[str, Any]:
        if "daily_fee" in options:
            options["daily_fee"] = str(options["daily_fee"])
        return self._post("/admin/options", options)

    def stats(self) -> dict[str, Any]:
        return self._http.call("GET", "/admin/stats")
