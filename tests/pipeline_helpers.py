"""Driving the whole bridge in tests: stage like PBMS, run `process` in-process (real Dagster, real database,
real example bank and mapper on 127.0.0.1), and read the bank's ledger."""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal

import dagster as dg
import psycopg

from bridge_pipelines.config import load_settings
from bridge_pipelines.demo import stage_demo
from bridge_pipelines.process import ProcessReport, process


def run_process(instance: dg.DagsterInstance) -> ProcessReport:
    from bridge_pipelines.definitions import defs

    return process(instance, defs, os.environ["BRIDGE_DATABASE_URL"])


def stage(database_url: str, disbursements: int, schedule_date: date, mapper: bool = False,
          program: str = "DEMO", envelope_id: str | None = None) -> dict:
    return stage_demo(database_url, load_settings(), disbursements=disbursements, program=program,
                      envelope_id=envelope_id, mapper=mapper, schedule_date=schedule_date)


def ledger_debits(db: psycopg.Connection) -> dict[str, int]:
    """payment reference -> number of DEBIT entries in the example bank's ledger."""
    return dict(db.execute("SELECT payment_reference, count(*) FROM example_bank.ledger_entry "
                           "WHERE kind = 'DEBIT' GROUP BY 1").fetchall())


def assert_each_debited_once(db: psycopg.Connection, disbursements: int, why: str = "") -> None:
    """The bank's ledger has exactly `disbursements` payment references, each debited exactly once."""
    debits = ledger_debits(db)
    assert len(debits) == disbursements and set(debits.values()) == {1}, why or "every disbursement debited exactly once"


def envelope_row(db: psycopg.Connection, envelope_id: str) -> dict:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM bridge.envelope_status WHERE disbursement_envelope_id = %s",
                           (envelope_id,)).fetchone()


def states(db: psycopg.Connection, envelope_id: str) -> dict[str, int]:
    """The envelope's disbursements by state, as PBMS reads them (bridge.disbursement_status)."""
    return dict(db.execute("SELECT disbursement_status, count(*) FROM bridge.disbursement_status "
                           "WHERE disbursement_envelope_id = %s GROUP BY 1", (envelope_id,)).fetchall())


def fund(bank, account: str, amount: str | Decimal, currency: str = "USD") -> None:
    with bank.client() as client:
        client.create_account(account, currency, amount)
