"""Fixtures for tests that need the example bank or the example mapper: real servers on free 127.0.0.1 ports, the
bank's state in the test's database (schema example_bank), statements into the test's inbox (bridge_env).

Use them with:  from tests.bank_fixtures import *  (or import the names you need, with their make_* factories).

The fixtures also point the environment at the servers (BRIDGE_BANK_URL / BRIDGE_MAPPER_URL), so code that calls
load_settings() talks to them. Settings come from load_settings() (after bridge_env), so BRIDGE_BANK_FAILURE_RATE
etc. set with monkeypatch before the fixture runs apply; or call make_example_bank(bank_failure_rate=0.0, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge_pipelines.bank.example_bank import create_bank_app
from bridge_pipelines.bank.example_bank.failures import failure_reason_for
from bridge_pipelines.bank.example_bank_client import ExampleBankClient
from bridge_pipelines.bank.example_mapper import create_mapper_app, resolve_id
from bridge_pipelines.bank.mapper_client import IdMapperClient
from bridge_pipelines.config import Settings, load_settings
from bridge_pipelines.serving import ServerHandle, start_server

__all__ = ["example_bank", "example_mapper", "make_example_bank", "make_example_mapper", "RunningBank", "RunningMapper"]


@dataclass
class RunningBank:
    url: str
    token: str
    database_url: str  # libpq URL of the database holding schema example_bank
    settings: Settings
    handle: ServerHandle = field(repr=False)

    @property
    def inbox(self) -> Path:
        return self.settings.statement_inbox

    def client(self, **kwargs: Any) -> ExampleBankClient:
        return ExampleBankClient(self.url, self.token, **kwargs)

    def failure_reason_for(self, destination_key: str) -> str | None:
        """What the bank's failure simulation does to payments to this account (None: they succeed)."""
        return failure_reason_for(destination_key, self.settings.bank_seed, self.settings.bank_failure_rate)

    def stop(self) -> None:
        self.handle.stop()


@dataclass
class RunningMapper:
    url: str
    token: str
    settings: Settings
    handle: ServerHandle = field(repr=False)

    def client(self, **kwargs: Any) -> IdMapperClient:
        return IdMapperClient(self.url, self.token, **kwargs)

    def expected(self, beneficiary_id: str) -> tuple[str | None, str | None]:
        """(financial address, None) or (None, reason code): what the mapper answers for this id."""
        return resolve_id(beneficiary_id, self.settings.bank_seed, self.settings.mapper_failure_rate)

    def stop(self) -> None:
        self.handle.stop()


@pytest.fixture
def make_example_bank(
    bridge_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., RunningBank]]:
    """A factory: make_example_bank(**settings_overrides) starts a bank (stopped after the test)."""
    started: list[RunningBank] = []

    def make(**overrides: Any) -> RunningBank:
        settings = dataclasses.replace(load_settings(), database_url=database_url, **overrides)
        handle = start_server(create_bank_app(database_url, settings), name="example bank")
        bank = RunningBank(handle.url, settings.bank_token, database_url, settings, handle)
        started.append(bank)
        monkeypatch.setenv("BRIDGE_BANK_URL", bank.url)
        monkeypatch.setenv("BRIDGE_BANK_TOKEN", bank.token)
        return bank

    yield make
    for bank in reversed(started):
        bank.stop()


@pytest.fixture
def example_bank(make_example_bank: Callable[..., RunningBank]) -> RunningBank:
    return make_example_bank()


@pytest.fixture
def make_example_mapper(bridge_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., RunningMapper]]:
    started: list[RunningMapper] = []

    def make(**overrides: Any) -> RunningMapper:
        settings = dataclasses.replace(load_settings(), **overrides)
        handle = start_server(create_mapper_app(settings), name="example mapper")
        mapper = RunningMapper(handle.url, settings.mapper_token, settings, handle)
        started.append(mapper)
        monkeypatch.setenv("BRIDGE_MAPPER_URL", mapper.url)
        monkeypatch.setenv("BRIDGE_MAPPER_TOKEN", mapper.token)
        return mapper

    yield make
    for mapper in reversed(started):
        mapper.stop()


@pytest.fixture
def example_mapper(make_example_mapper: Callable[..., RunningMapper]) -> RunningMapper:
    return make_example_mapper()
