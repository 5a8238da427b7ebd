"""The `received_equals_declared` check's audit (`received_audit`): the envelope's received counters against its
declaration and against a recount of its rows, in one pass, in one snapshot."""

from __future__ import annotations

from decimal import Decimal

from bridge_pipelines.disbursement.envelopes import received_audit
from tests.intake_helpers import cancel_disbursement, cancel_envelope, disbursement, intake, ready_envelope


def _complete_envelope(db) -> None:
    ready_envelope(db)  # declares 3 disbursements, 300.00
    for n in (1, 2, 3):
        disbursement(db, f"D-{n}")
    intake(db)


def test_a_complete_envelope_adds_up(db):
    _complete_envelope(db)
    audit = received_audit(db, "ENV-1")
    assert (audit.declared, audit.received, audit.rows) == (3, 3, 3)
    assert audit.declared_total == audit.received_total == audit.rows_total == Decimal("300.00")
    assert audit.adds_up


def test_a_counter_that_differs_from_the_recount_does_not_add_up(db):
    _complete_envelope(db)
    db.execute("UPDATE bridge.disbursement_envelope_batch_status SET total_disbursement_amount_received = 299.99")
    audit = received_audit(db, "ENV-1")
    assert audit.rows_total == Decimal("300.00") and audit.received_total == Decimal("299.99")
    assert not audit.adds_up


def test_a_disbursement_cancelled_by_pbms_is_not_counted(db):
    _complete_envelope(db)
    cancel_disbursement(db, "D-2")
    intake(db)
    audit = received_audit(db, "ENV-1")
    assert (audit.declared, audit.received, audit.rows) == (3, 2, 2)  # the counter and the recount agree
    assert audit.rows_total == Decimal("200.00")
    assert not audit.adds_up  # but the envelope is no longer complete


def test_a_cancelled_envelope_passes_and_an_unknown_one_is_none(db):
    _complete_envelope(db)
    cancel_envelope(db)
    intake(db)
    assert received_audit(db, "ENV-1").adds_up
    assert received_audit(db, "ENV-NONE") is None
