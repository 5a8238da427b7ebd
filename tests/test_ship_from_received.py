"""Programs without the ID mapper ship straight from RECEIVED (migration 0017): account resolution parses the
beneficiary ids, fails the ones that do not parse and records on the envelope when it did; only then are the
envelope's RECEIVED disbursements planned into batches, funded and acknowledged. RESOLVED rows (resolved through the
mapper, or by the code before the change) ship as before, each member moved only from the state it was read in."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import psycopg

from bridge_pipelines.bank.protocol import ACK_SCHEMA, BatchAcknowledgement
from bridge_pipelines.disbursement.envelopes import load_envelope, shippable_states
from bridge_pipelines.disbursement.funds import amount_to_ship
from bridge_pipelines.disbursement.resolution import resolve_accounts
from bridge_pipelines.disbursement.shipping import batch_payments, plan_batches, record_acknowledgement
from tests.intake_helpers import count_rows, disbursement, envelope, intake, program, start_disbursing


def _address(n: int) -> str:
    return f"account_number:{n:010d}.bank_code:EXB.mode:bank"


def _envelope(db: psycopg.Connection, ids: dict[str, str], mapper: bool = False) -> None:
    program(db, id_mapper_resolution_required=mapper)
    envelope(db, number_of_beneficiaries=len(ids), number_of_disbursements=len(ids),
             total_disbursement_amount=Decimal(100 * len(ids)))
    for disbursement_id, beneficiary_id in ids.items():
        disbursement(db, disbursement_id, beneficiary_id=beneficiary_id)
    assert intake(db).accepted["disbursement"] == len(ids)
    start_disbursing(db)


def _states(db: psycopg.Connection) -> dict[str, str]:
    return dict(db.execute("SELECT disbursement_id, disbursement_status FROM bridge.disbursement").fetchall())


def _answer(batch_id: str, payments: pl.DataFrame, rejected: set[str]) -> BatchAcknowledgement:
    results = payments.select("payment_reference", "disbursement_id").with_columns(
        pl.when(pl.col("disbursement_id").is_in(list(rejected))).then(pl.lit("REJECTED"))
        .otherwise(pl.lit("ACCEPTED")).alias("status"),
        pl.when(pl.col("disbursement_id").is_in(list(rejected))).then(pl.lit("ACCOUNT_CLOSED"))
        .otherwise(pl.lit(None, pl.String)).alias("reason_code"),
        pl.lit(False).alias("duplicate")).select(list(ACK_SCHEMA))
    return BatchAcknowledgement(batch_id, results)


def test_received_disbursements_ship_only_after_their_addresses_are_parsed(db):
    _envelope(db, {"D-1": _address(1), "D-2": "junk", "D-3": _address(3)})
    # started, not resolved: nothing is ready to ship, nothing is funded or planned
    assert shippable_states(db, "ENV-1") == ["RESOLVED"]
    assert amount_to_ship(db, "ENV-1") == (0, 0)
    assert plan_batches(db, "ENV-1", 10) == 0

    result = resolve_accounts(db, load_envelope(db, "ENV-1"), resolver=None, batch_size=10)
    assert (result.resolved, result.failed) == (2, 1)
    assert _states(db) == {"D-1": "RECEIVED", "D-2": "RESOLUTION_FAILED", "D-3": "RECEIVED"}
    assert db.execute("SELECT financial_addresses_parsed_at IS NOT NULL FROM bridge.disbursement_envelope_batch_status"
                      ).fetchone()[0]
    assert db.execute("SELECT detail FROM bridge.envelope_event WHERE event_type = 'RESOLVED'").fetchall() == [
        ("2 disbursement(s) have a financial address (their beneficiary ids parse) and ship from RECEIVED",)]
    assert amount_to_ship(db, "ENV-1") == (2, Decimal("200.00"))
    assert plan_batches(db, "ENV-1", 10) == 1
    assert sorted(db.execute("SELECT unnest(member_disbursement_ids) FROM bridge.bank_disbursement_batch_status"
                             ).fetchall()) == [("D-1",), ("D-3",)]


def test_a_resumed_resolution_does_not_parse_again(db):
    _envelope(db, {"D-1": _address(1), "D-2": "junk"})
    first = resolve_accounts(db, load_envelope(db, "ENV-1"), resolver=None, batch_size=10)
    parsed_at = db.execute("SELECT financial_addresses_parsed_at FROM bridge.disbursement_envelope_batch_status"
                           ).fetchone()[0]
    events = count_rows(db, "bridge.envelope_event") + count_rows(db, "bridge.disbursement_event")
    again = resolve_accounts(db, load_envelope(db, "ENV-1"), resolver=None, batch_size=10)
    assert (first.resolved, first.failed, again.resolved, again.failed) == (1, 1, 0, 0)
    assert db.execute("SELECT financial_addresses_parsed_at FROM bridge.disbursement_envelope_batch_status"
                      ).fetchone()[0] == parsed_at
    assert count_rows(db, "bridge.envelope_event") + count_rows(db, "bridge.disbursement_event") == events
    assert db.execute("SELECT number_of_disbursements_failed FROM bridge.disbursement_envelope_batch_status"
                      ).fetchone()[0] == 1


def test_a_program_with_the_mapper_never_ships_from_received(db):
    _envelope(db, {"D-1": "person-1", "D-2": "person-2"}, mapper=True)
    assert shippable_states(db, "ENV-1") == ["RESOLVED"]
    assert amount_to_ship(db, "ENV-1") == (0, 0)
    assert plan_batches(db, "ENV-1", 10) == 0


def test_each_member_is_acknowledged_from_the_state_it_waited_in(db):
    """An envelope resolved by the code before the change (its rows RESOLVED) and resumed after it: the RESOLVED
    rows and the RECEIVED ones are planned together, and the answer moves each from its own state, a rejection's
    event naming it."""
    _envelope(db, {f"D-{n}": _address(n) for n in range(1, 5)})
    resolve_accounts(db, load_envelope(db, "ENV-1"), resolver=None, batch_size=10)
    db.execute("UPDATE bridge.disbursement SET disbursement_status = 'RESOLVED' "
               "WHERE disbursement_id IN ('D-1', 'D-2')")
    assert plan_batches(db, "ENV-1", 10) == 1
    batch_id = db.execute("SELECT bank_disbursement_batch_id FROM bridge.bank_disbursement_batch_status").fetchone()[0]
    payments = batch_payments(db, batch_id, mapper_required=False)
    assert dict(payments.select("disbursement_id", "from_status").iter_rows()) == {
        "D-1": "RESOLVED", "D-2": "RESOLVED", "D-3": "RECEIVED", "D-4": "RECEIVED"}
    assert payments["bank_account_number"].to_list() == [f"{n:010d}" for n in range(1, 5)]

    answer = _answer(batch_id, payments, {"D-2", "D-4"})
    shipped, failed, reasons = record_acknowledgement(db, "ENV-1", batch_id, answer, payments)
    assert (shipped, failed, reasons) == (2, 2, {"ACCOUNT_CLOSED": 2})
    assert _states(db) == {"D-1": "SHIPPED", "D-2": "FAILED", "D-3": "SHIPPED", "D-4": "FAILED"}
    assert sorted(db.execute("SELECT disbursement_id, from_status, to_status FROM bridge.disbursement_event "
                             "ORDER BY 1").fetchall()) == [("D-2", "RESOLVED", "FAILED"), ("D-4", "RECEIVED", "FAILED")]
    assert batch_payments(db, batch_id, mapper_required=False).height == 0  # nothing left waiting


def test_a_member_that_left_its_state_after_it_was_read_is_not_moved(db):
    _envelope(db, {"D-1": _address(1), "D-2": _address(2)})
    resolve_accounts(db, load_envelope(db, "ENV-1"), resolver=None, batch_size=10)
    assert plan_batches(db, "ENV-1", 10) == 1
    batch_id = db.execute("SELECT bank_disbursement_batch_id FROM bridge.bank_disbursement_batch_status").fetchone()[0]
    payments = batch_payments(db, batch_id, mapper_required=False)
    db.execute("UPDATE bridge.disbursement SET disbursement_status = 'CANCELLED', cancelled_at = now() "
               "WHERE disbursement_id = 'D-2'")
    shipped, failed, _reasons = record_acknowledgement(db, "ENV-1", batch_id, _answer(batch_id, payments, set()),
                                                       payments)
    assert (shipped, failed) == (1, 0)
    assert _states(db) == {"D-1": "SHIPPED", "D-2": "CANCELLED"}
