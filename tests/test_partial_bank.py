"""A sponsor bank that accepts only part of a batch, and one that refuses the funds block after the check passed.
The connector registry chooses a bank per program (`sponsor_bank_code`); this test registers a connector that
forwards to the real example bank and changes its answers the way such banks would."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import polars as pl
import psycopg
import pytest

from bridge_pipelines.bank.example_bank_client import ExampleBankClient
from bridge_pipelines.bank.protocol import (BatchAcknowledgement, FundsBlockResult, register_connector,
                                            unregister_connector)
from tests.bank_fixtures import *  # noqa: F403
from tests.pipeline_helpers import (assert_each_debited_once, envelope_row, fund, ledger_debits, run_process, stage,
                                    states)

TODAY = date(2026, 12, 1)
DUE = TODAY + timedelta(days=1)


class PickyBank(ExampleBankClient):
    """Refuses every third payment of a batch (INVALID_ACCOUNT) without sending it; forwards the rest."""

    refuse_block = False
    forgetful: bool | None = None  # True: forwards the whole batch, omits the last answer; False: forwards as is
    contradicting = False  # forwards the whole batch, then answers its first payment a second time, REJECTED

    def submit_payment_batch_frame(self, batch_id, account_number, currency, block_reference, payments):
        if PickyBank.contradicting:
            ack = super().submit_payment_batch_frame(batch_id, account_number, currency, block_reference, payments)
            again = ack.results.head(1).with_columns(pl.lit("REJECTED").alias("status"),
                                                     pl.lit("INVALID_ACCOUNT").alias("reason_code"))
            return BatchAcknowledgement(batch_id, pl.concat([ack.results, again]), ack.received_at, ack.replayed)
        if PickyBank.forgetful is not None:
            ack = super().submit_payment_batch_frame(batch_id, account_number, currency, block_reference, payments)
            results = ack.results.head(-1) if PickyBank.forgetful else ack.results
            return BatchAcknowledgement(batch_id, results, ack.received_at, ack.replayed)
        refused = payments.with_row_index().filter(pl.col("index") % 3 == 2)["payment_reference"].to_list()
        sent = payments.filter(~pl.col("payment_reference").is_in(refused))
        ack = super().submit_payment_batch_frame(batch_id, account_number, currency, block_reference, sent)
        rejected = pl.DataFrame({"payment_reference": refused, "status": ["REJECTED"] * len(refused),
                                 "reason_code": ["INVALID_ACCOUNT"] * len(refused),
                                 "duplicate": [False] * len(refused)}, schema=ack.results.schema)
        return BatchAcknowledgement(batch_id, pl.concat([ack.results, rejected]), ack.received_at, ack.replayed)

    def block_funds(self, block_key, account_number, currency, amount):
        if PickyBank.refuse_block:
            return FundsBlockResult("INSUFFICIENT_FUNDS", None)
        return super().block_funds(block_key, account_number, currency, amount)


@pytest.fixture
def picky_bank(bridge_env, make_example_bank, monkeypatch):
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", TODAY.isoformat())
    bank = make_example_bank(bank_failure_rate=0.0)
    register_connector("PICKY", lambda settings: PickyBank(bank.url, bank.token))
    PickyBank.refuse_block, PickyBank.forgetful, PickyBank.contradicting = False, None, False
    yield bank
    unregister_connector("PICKY")


def _staged_for_picky_bank(bank, db: psycopg.Connection, disbursements: int) -> dict:
    staged = stage(db.info.dsn, disbursements, DUE)
    db.execute("UPDATE staging.benefit_program SET sponsor_bank_code = 'PICKY'")
    fund(bank, staged["sponsor_account"], "1000000.00")
    return staged


def _intake_then_ship(instance: dg.DagsterInstance, monkeypatch):
    """Intake today, then the schedule date's run (resolution, funds, shipping); returns that run's report."""
    assert run_process(instance).success
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", DUE.isoformat())
    return run_process(instance)


def test_partial_batch_acceptance_fails_only_the_refused_payments(picky_bank, db: psycopg.Connection,
                                                                  monkeypatch) -> None:
    staged = _staged_for_picky_bank(picky_bank, db, 30)
    with dg.DagsterInstance.ephemeral() as instance:
        report = _intake_then_ship(instance, monkeypatch)
        assert report.success, [r.error for r in report.runs]
    assert states(db, staged["envelope"]) == {"SHIPPED": 20, "FAILED": 10}
    reasons = db.execute("SELECT DISTINCT status_reason_code FROM bridge.disbursement "
                         "WHERE disbursement_status = 'FAILED'").fetchall()
    assert reasons == [("INVALID_ACCOUNT",)]
    row = envelope_row(db, staged["envelope"])
    assert row["number_of_disbursements_shipped"] == 20 and row["number_of_disbursements_failed"] == 10
    assert row["shipment_status"] == "COMPLETED"
    failed_amount = db.execute("SELECT sum(disbursement_amount) FROM bridge.disbursement "
                               "WHERE disbursement_envelope_id = %s AND disbursement_status = 'FAILED'",
                               (staged["envelope"],)).fetchone()[0]
    shown = db.execute("SELECT total_disbursement_amount_failed FROM bridge.envelope_status "
                       "WHERE disbursement_envelope_id = %s", (staged["envelope"],)).fetchone()[0]
    assert failed_amount > 0 and shown == failed_amount
    batch_ids = db.execute("SELECT DISTINCT shipment_batch_id FROM bridge.disbursement WHERE disbursement_envelope_id = %s",
                           (staged["envelope"],)).fetchall()
    assert None not in {b for (b,) in batch_ids}, "shipped and refused payments both name the batch that carried them"
    assert len(ledger_debits(db)) == 20
    assert row["funds_released_amount"] > 0, "what the refused payments did not spend is released"


def test_block_refused_after_a_good_check_is_visible_and_ships_nothing(picky_bank, db: psycopg.Connection,
                                                                       monkeypatch) -> None:
    PickyBank.refuse_block = True
    staged = _staged_for_picky_bank(picky_bank, db, 10)
    with dg.DagsterInstance.ephemeral() as instance:
        report = _intake_then_ship(instance, monkeypatch)
    assert not report.success and "refused to block" in (report.runs[0].error or "")
    row = envelope_row(db, staged["envelope"])
    assert row["funds_available_with_bank"] == "FUNDS_AVAILABLE"
    assert row["funds_blocked_with_bank"] == "FUNDS_BLOCK_FAILURE"
    assert ledger_debits(db) == {}


def test_an_acknowledgement_lacking_a_payment_records_nothing_and_the_batch_is_sent_again(
        picky_bank, db: psycopg.Connection, monkeypatch) -> None:
    """The bank paid the whole batch but its answer names one payment less: nothing of the answer is recorded (the
    batch stays PENDING, its members RECEIVED), and sending it again gets the bank's complete stored answer, with
    nobody paid twice."""
    PickyBank.forgetful = True
    staged = _staged_for_picky_bank(picky_bank, db, 12)
    with dg.DagsterInstance.ephemeral() as instance:
        report = _intake_then_ship(instance, monkeypatch)
        assert not report.success and "lacks 1 payment(s)" in (report.runs[0].error or "")
        assert states(db, staged["envelope"]) == {"RECEIVED": 12}
        assert db.execute("SELECT disbursement_payment_status, number_accepted FROM "
                          "bridge.bank_disbursement_batch_status").fetchall() == [("PENDING", None)]
        assert_each_debited_once(db, 12, "the bank booked the whole batch")

        PickyBank.forgetful = False
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]
    assert states(db, staged["envelope"]) == {"SHIPPED": 12}
    assert_each_debited_once(db, 12, "sent again, paid once")


def test_an_acknowledgement_answering_a_payment_twice_records_nothing_and_the_batch_is_sent_again(
        picky_bank, db: psycopg.Connection, monkeypatch) -> None:
    """The bank's answer names one payment twice, ACCEPTED then REJECTED: which one holds cannot be told, so nothing
    of the answer is recorded (members RECEIVED, batch PENDING) and the batch is sent again, nobody paid twice."""
    PickyBank.contradicting = True
    staged = _staged_for_picky_bank(picky_bank, db, 9)
    with dg.DagsterInstance.ephemeral() as instance:
        report = _intake_then_ship(instance, monkeypatch)
        assert not report.success
        assert "names 1 payment reference(s) more than once" in (report.runs[0].error or "")
        assert states(db, staged["envelope"]) == {"RECEIVED": 9}
        assert db.execute("SELECT disbursement_payment_status FROM bridge.bank_disbursement_batch_status"
                          ).fetchall() == [("PENDING",)]

        PickyBank.contradicting, PickyBank.forgetful = False, False  # now forwards the bank's answer as it is
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]
    assert states(db, staged["envelope"]) == {"SHIPPED": 9}
    assert_each_debited_once(db, 9, "sent again, paid once")
