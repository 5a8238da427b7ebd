"""Least privilege: PBMS may stage rows and read the status views, operators may only read, and both are refused
everything else."""

from __future__ import annotations

import psycopg
import pytest

from tests.intake_helpers import envelope, intake, program


def as_role(conn: psycopg.Connection, role: str, sql: str) -> None:
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {role}")
        conn.execute(sql)


def refused(conn: psycopg.Connection, role: str, sql: str) -> bool:
    try:
        as_role(conn, role, sql)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


@pytest.fixture
def prepared(db: psycopg.Connection) -> psycopg.Connection:
    program(db)
    envelope(db)
    intake(db)
    return db


def test_pbms_can_stage_and_read_status_views(prepared: psycopg.Connection) -> None:
    as_role(prepared, "bridge_pbms", "INSERT INTO staging.disbursement (disbursement_id) VALUES ('X1')")
    as_role(prepared, "bridge_pbms", "SELECT intake_status FROM staging.disbursement")
    as_role(prepared, "bridge_pbms", "SELECT * FROM bridge.envelope_status")
    as_role(prepared, "bridge_pbms", "SELECT * FROM bridge.disbursement_status")


@pytest.mark.parametrize("sql", [
    "UPDATE staging.disbursement SET intake_status = 'ACCEPTED'",
    "DELETE FROM staging.disbursement",
    "SELECT * FROM bridge.disbursement",
    "SELECT * FROM bridge.disbursement_envelope_batch_status",
    "INSERT INTO bridge.disbursement_event (disbursement_id, disbursement_envelope_id, to_status) VALUES ('a','b','c')",
    "UPDATE bridge.disbursement_envelope SET cancellation_status = 'CANCELLED'",
    "TRUNCATE staging.disbursement",
])
def test_pbms_is_refused_everything_else(prepared: psycopg.Connection, sql: str) -> None:
    assert refused(prepared, "bridge_pbms", sql)


def test_operator_reads_but_never_writes(prepared: psycopg.Connection) -> None:
    as_role(prepared, "bridge_operator", "SELECT * FROM bridge.disbursement")
    as_role(prepared, "bridge_operator", "SELECT * FROM staging.disbursement_envelope")
    as_role(prepared, "bridge_operator", "SELECT * FROM bridge.envelope_status")
    for sql in ("INSERT INTO staging.disbursement (disbursement_id) VALUES ('X')",
                "UPDATE bridge.disbursement_envelope SET cycle_code_mnemonic = 'x'",
                "DELETE FROM bridge.disbursement_envelope"):
        assert refused(prepared, "bridge_operator", sql), sql


def test_audit_trail_is_append_only_even_for_the_bridge(prepared: psycopg.Connection) -> None:
    prepared.execute("INSERT INTO bridge.envelope_event (disbursement_envelope_id, event_type) VALUES ('ENV-1', 'X')")
    with pytest.raises(psycopg.errors.RaiseException):
        prepared.execute("DELETE FROM bridge.envelope_event")
