"""The intake sensor: one run request per pending set, a new one when a row commits late with a lower id, and a count
that stops at a cap (counting ten million pending rows made a tick take 23 s)."""

from __future__ import annotations

from datetime import date

import dagster as dg
import psycopg

import sensors.intake as intake
from bridge_pipelines.process import evaluate_sensor
from tests.pipeline_helpers import stage

DUE = date(2026, 12, 2)


def _late_row(db: psycopg.Connection, staging_id: int, envelope_id: str) -> None:
    """A staged disbursement whose transaction took its id early and committed after the rows staged since."""
    db.execute("INSERT INTO staging.disbursement (staging_id, disbursement_id, disbursement_envelope_id, "
               "mis_reference_number, beneficiary_id, beneficiary_name, disbursement_amount, narrative) "
               "VALUES (%s, %s, %s, 'MIS', '12345678@BANK.BRANCH', 'Late Row', 10, 'late')",
               (staging_id, f"LATE-{staging_id}", envelope_id))


def _tick(instance: dg.DagsterInstance) -> tuple[str, dict[str, str]]:
    from bridge_pipelines.definitions import defs

    data = evaluate_sensor(instance, defs, intake.intake_sensor)
    [request] = data.run_requests
    return data.cursor, request.tags


def test_a_late_row_with_a_lower_id_is_a_new_pending_set(bridge_env, db: psycopg.Connection) -> None:
    db.execute("SELECT setval('staging.disbursement_staging_id_seq', 1000)")
    staged = stage(db.info.dsn, 5, DUE)
    with dg.DagsterInstance.ephemeral() as instance:
        first, tags = _tick(instance)
        assert tags["bridge/pending_rows"] == "7"  # the program, the envelope and 5 disbursements
        assert _tick(instance)[0] == first, "the same pending set, the same fingerprint"
        _late_row(db, 7, staged["envelope"])
        second, tags = _tick(instance)
        assert second != first and tags["bridge/pending_rows"] == "8"


def test_the_count_stops_at_the_cap(bridge_env, db: psycopg.Connection, monkeypatch) -> None:
    monkeypatch.setattr(intake, "COUNT_CAP", 3)
    db.execute("SELECT setval('staging.disbursement_staging_id_seq', 1000)")
    staged = stage(db.info.dsn, 5, DUE)
    with dg.DagsterInstance.ephemeral() as instance:
        first, tags = _tick(instance)
        assert tags["bridge/pending_rows"] == "at least 6"  # 1 + 1 + the 4 disbursements counted
        _late_row(db, 7, staged["envelope"])
        assert _tick(instance)[0] == first, "beyond the cap a late row does not change the fingerprint"
        db.execute("UPDATE staging.disbursement SET intake_status = 'REJECTED', intake_error_code = 'TEST' "
                   "WHERE staging_id > 1000")  # what a run leaves: the late row alone is pending
        second, tags = _tick(instance)
        assert second != first and tags["bridge/pending_rows"] == "3"
