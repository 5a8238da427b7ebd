"""More reliability: the bank server dies mid-batch; staged rows with arbitrary values (property-based) never crash
intake and never lose data; secrets never reach Dagster's event log or metadata."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from decimal import Decimal

import dagster as dg
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_pipelines.disbursement.retry_envelope import retry_step
from bridge_pipelines.intake.service import run_intake
from bridge_pipelines.intake.staging import stage_row
from tests.bank_fixtures import *  # noqa: F403
from tests.intake_helpers import BUSINESS_DATE, envelope, program
from tests.pipeline_helpers import assert_each_debited_once, envelope_row, fund, run_process, stage, states

TODAY = date(2026, 12, 1)
DUE = TODAY + timedelta(days=1)


def test_bank_server_killed_mid_batch(bridge_env, db: psycopg.Connection, make_example_bank, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", TODAY.isoformat())
    monkeypatch.setenv("BRIDGE_PAYMENT_BATCH_SIZE", "25")
    monkeypatch.setenv("BRIDGE_BANK_TIMEOUT_SECONDS", "2")
    bank = make_example_bank(bank_failure_rate=0.0)
    staged = stage(db.info.dsn, 100, DUE)
    fund(bank, staged["sponsor_account"], "1000000.00")
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_process(instance).success
        monkeypatch.setenv("BRIDGE_BUSINESS_DATE", DUE.isoformat())
        with bank.client() as client:
            client.add_fault("/payments/batches", "slow", count=100, seconds=1.0)
        killer = threading.Timer(1.5, bank.stop)  # the bank dies while batches are in flight
        killer.start()
        report = run_process(instance)
        killer.join()
        assert not report.success, "the bank is gone: the envelope must end in a visible ERROR"
        row = envelope_row(db, staged["envelope"])
        assert row["shipment_status"] == "ERROR" and row["shipment_latest_error_code"]
        # the bank comes back (same books, new address); the operator retries the shipment
        revived = make_example_bank(bank_failure_rate=0.0)
        with revived.client() as client:
            client.reset_faults()
        assert retry_step(db, staged["envelope"], "shipment")
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]
    assert states(db, staged["envelope"]) == {"SHIPPED": 100}
    assert_each_debited_once(db, 100)


TEXT = st.one_of(st.none(), st.text(max_size=300), st.sampled_from([
    "'); DROP TABLE bridge.disbursement; --", "\u202eRTL", "😀" * 50, "x" * 1000, " ", "\t\n", "NULL"]))
AMOUNTS = st.one_of(st.none(), st.decimals(min_value=Decimal("-1e30"), max_value=Decimal("1e30"), allow_nan=False,
                                            allow_infinity=False, places=4))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(TEXT, TEXT, TEXT, TEXT, AMOUNTS), min_size=1, max_size=8))
def test_arbitrary_staged_values_end_with_a_code_and_keep_their_data(db: psycopg.Connection, rows) -> None:
    if not db.execute("SELECT 1 FROM bridge.disbursement_envelope WHERE disbursement_envelope_id = 'ENV-1'").fetchone():
        program(db)
        envelope(db, number_of_beneficiaries=1, number_of_disbursements=1000,
                 total_disbursement_amount=Decimal("1000000"))
        run_intake(db, BUSINESS_DATE)
    ids = []
    for disbursement_id, beneficiary_id, name, narrative, amount in rows:
        text_values = [v.replace("\x00", "") if isinstance(v, str) else v
                       for v in (disbursement_id, beneficiary_id, name, narrative)]
        ids.append(stage_row(db, "disbursement", disbursement_id=text_values[0], disbursement_envelope_id="ENV-1",
                             beneficiary_id=text_values[1], beneficiary_name=text_values[2],
                             narrative=text_values[3], disbursement_amount=amount))
    before = db.execute("SELECT staging_id, disbursement_id, beneficiary_id, beneficiary_name, narrative, "
                        "disbursement_amount FROM staging.disbursement WHERE staging_id = ANY(%s) ORDER BY 1",
                        (ids,)).fetchall()
    run_intake(db, BUSINESS_DATE)
    after = db.execute("SELECT staging_id, disbursement_id, beneficiary_id, beneficiary_name, narrative, "
                       "disbursement_amount FROM staging.disbursement WHERE staging_id = ANY(%s) ORDER BY 1",
                       (ids,)).fetchall()
    assert after == before, "intake never changes staged data"
    results = db.execute("SELECT intake_status, intake_error_code, intake_error_detail FROM staging.disbursement "
                         "WHERE staging_id = ANY(%s)", (ids,)).fetchall()
    for status, code, detail in results:
        assert status in ("ACCEPTED", "REJECTED") and detail
        assert (status == "REJECTED") == (code is not None)


def test_secrets_never_reach_dagster_events_or_metadata(bridge_env, db: psycopg.Connection, make_example_bank,
                                                        monkeypatch) -> None:
    token = "very-secret-bank-token-0123456789"
    monkeypatch.setenv("BRIDGE_BANK_TOKEN", token)
    monkeypatch.setenv("BRIDGE_BUSINESS_DATE", TODAY.isoformat())
    bank = make_example_bank(bank_failure_rate=0.0, bank_token=token)
    staged = stage(db.info.dsn, 10, DUE)
    fund(bank, staged["sponsor_account"], "100000.00")
    with dg.DagsterInstance.ephemeral() as instance:
        run_process(instance)
        monkeypatch.setenv("BRIDGE_BUSINESS_DATE", DUE.isoformat())
        assert run_process(instance).success
        texts = []
        for run in instance.get_runs():
            for record in instance.all_logs(run.run_id):
                texts.append(record.user_message or "")
                if record.dagster_event is not None:
                    texts.append(repr(record.dagster_event.event_specific_data))
    assert texts and not any(token in text for text in texts)
    from bridge_pipelines.config import load_settings
    assert token not in repr(load_settings())
