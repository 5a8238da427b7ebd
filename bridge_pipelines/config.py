"""Configuration, read from the environment in one place and validated at start-up.

A wrong value stops with a message that names the variable. Secrets (tokens, passwords) are read here and never
printed: `Settings.__repr__` hides them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone
from pathlib import Path


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable and what to do."""


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _float(name: str, default: float, minimum: float = 0.0, maximum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{name}={value} must be between {minimum} and {maximum}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be true or false")


def _date(name: str) -> date | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a date in the form YYYY-MM-DD") from None


def _path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().absolute() if raw else default


def _url(name: str) -> str | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    if not raw.startswith(("postgresql://", "postgres://", "postgresql+", "http://", "https://")):
        raise ConfigError(f"{name} must be a postgresql:// or http(s):// URL")
    return raw


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None  # None: the embedded server in home/pgdata
    dagster_database_url: str | None  # None: database `dagster` on the bridge's server
    dagster_home: Path
    statement_inbox: Path
    bank_url: str | None
    mapper_url: str | None
    bank_token: str = field(repr=False)
    mapper_token: str = field(repr=False)
    business_date_override: date | None
    disbursement_sla_days: int
    payment_batch_size: int
    mapper_batch_size: int
    bank_max_attempts: int
    bank_timeout_seconds: float
    statement_max_bytes: int
    bank_failure_rate: float
    bank_seed: int
    bank_statement_interval: int
    bank_statement_format: str
    ui_port: int
    api_port: int
    bank_port: int
    mapper_port: int
    host: str
    bank_statement_page_size: int = 2000  # example bank: MT940 :61: lines per statement page
    # example bank: entries per statement file; a day with more is sent as several statements (numbered on)
    bank_statement_max_entries: int = 1_000_000
    bank_batch_booking: bool = False  # example bank: one statement line per payment batch instead of per payment
    mapper_failure_rate: float = 0.0  # example mapper: share of ids that do not resolve
    # PBMS API: bearer token per sender ((sender_id, token), ...); empty = no API is served
    api_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    api_root_path: str = ""  # e.g. /g2p-bridge: the API is served under this prefix
    api_max_body_bytes: int = 64 * 1024 * 1024  # larger request bodies (JSON or statement uploads) get 413

    @property
    def business_date(self) -> date:
        """The date schedule rules use: BRIDGE_BUSINESS_DATE, else today in UTC (read each time, not cached)."""
        return self.business_date_override or datetime.now(timezone.utc).date()

    @property
    def quarantine_dir(self) -> Path:
        return self.statement_inbox / "quarantine"

    def __repr__(self) -> str:  # never show secrets
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        return f"Settings({shown})"


API_TOKEN_MIN_LENGTH = 16


def _api_tokens(name: str) -> tuple[tuple[str, str], ...]:
    """`sender_id:token,sender2:token2` -> ((sender_id, token), ...). Never echoes a token in an error."""
    raw = os.environ.get(name, "")
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(part.strip() for part in raw.split(",")):
        if not item:
            continue
        sender, sep, token = item.partition(":")
        sender, token = sender.strip(), token.strip()
        if not sep or not sender or not token:
            raise ConfigError(f"{name}: entry {index + 1} is not in the form sender_id:token")
        if len(token) < API_TOKEN_MIN_LENGTH:
            raise ConfigError(f"{name}: the token of sender {sender!r} is shorter than {API_TOKEN_MIN_LENGTH} "
                              "characters; use a long random token")
        if any(sender == s for s, _ in pairs):
            raise ConfigError(f"{name}: sender {sender!r} is listed twice")
        if any(token == t for _, t in pairs):
            raise ConfigError(f"{name}: two senders share one token; give each sender its own")
        pairs.append((sender, token))
    return tuple(pairs)


def _root_path(name: str) -> str:
    raw = (os.environ.get(name) or "").strip()
    if raw in ("", "/"):
        return ""
    if not raw.startswith("/") or "//" in raw or any(c in raw for c in "?#% \\"):
        raise ConfigError(f"{name}={raw!r} must be a path such as /g2p-bridge")
    return raw.rstrip("/")


def load_settings() -> Settings:
    home = _path("BRIDGE_HOME", Path.cwd() / ".bridge")
    statement_format = os.environ.get("BRIDGE_BANK_STATEMENT_FORMAT", "MT940").upper()
    if statement_format not in ("MT940", "CAMT053"):
        raise ConfigError("BRIDGE_BANK_STATEMENT_FORMAT must be MT940 or CAMT053")
    return Settings(
        home=home,
        database_url=_url("BRIDGE_DATABASE_URL"),
        dagster_database_url=_url("BRIDGE_DAGSTER_DATABASE_URL"),
        dagster_home=_path("DAGSTER_HOME", home / "dagster"),
        statement_inbox=_path("BRIDGE_STATEMENT_INBOX", home / "inbox"),
        bank_url=_url("BRIDGE_BANK_URL"),
        mapper_url=_url("BRIDGE_MAPPER_URL"),
        bank_token=os.environ.get("BRIDGE_BANK_TOKEN", "example-bank-token"),
        mapper_token=os.environ.get("BRIDGE_MAPPER_TOKEN", "example-mapper-token"),
        business_date_override=_date("BRIDGE_BUSINESS_DATE"),
        disbursement_sla_days=_int("BRIDGE_DISBURSEMENT_SLA_DAYS", 0),
        payment_batch_size=_int("BRIDGE_PAYMENT_BATCH_SIZE", 10_000, minimum=1),
        mapper_batch_size=_int("BRIDGE_MAPPER_BATCH_SIZE", 5_000, minimum=1),
        bank_max_attempts=_int("BRIDGE_BANK_MAX_ATTEMPTS", 3, minimum=1),
        bank_timeout_seconds=_float("BRIDGE_BANK_TIMEOUT_SECONDS", 30.0, minimum=0.1),
        statement_max_bytes=_int("BRIDGE_STATEMENT_MAX_BYTES", 512 * 1024 * 1024, minimum=1),
        bank_failure_rate=_float("BRIDGE_BANK_FAILURE_RATE", 0.02, minimum=0.0, maximum=1.0),
        bank_seed=_int("BRIDGE_BANK_SEED", 42),
        bank_statement_interval=_int("BRIDGE_BANK_STATEMENT_INTERVAL", 0),
        bank_statement_format=statement_format,
        ui_port=_int("BRIDGE_UI_PORT", 3000, minimum=1),
        api_port=_int("BRIDGE_API_PORT", 8040, minimum=1),
        bank_port=_int("BRIDGE_BANK_PORT", 8041, minimum=1),
        mapper_port=_int("BRIDGE_MAPPER_PORT", 8042, minimum=1),
        host=os.environ.get("BRIDGE_HOST", "127.0.0.1"),
        bank_statement_page_size=_int("BRIDGE_BANK_STATEMENT_PAGE_SIZE", 2000, minimum=1),
        bank_statement_max_entries=_int("BRIDGE_BANK_STATEMENT_MAX_ENTRIES", 1_000_000, minimum=1),
        bank_batch_booking=_bool("BRIDGE_BANK_BATCH_BOOKING", False),
        mapper_failure_rate=_float("BRIDGE_MAPPER_FAILURE_RATE", 0.0, minimum=0.0, maximum=1.0),
        api_tokens=_api_tokens("BRIDGE_API_TOKENS"),
        api_root_path=_root_path("BRIDGE_API_ROOT_PATH"),
        api_max_body_bytes=_int("BRIDGE_API_MAX_BODY_BYTES", 64 * 1024 * 1024, minimum=1024),
    )
