"""RECONCILED is a SHIPPED disbursement with its remittance recorded (migration 0020): what PBMS reads is unchanged,
for disbursements reconciled before the migration as for those reconciled after it."""

from __future__ import annotations

import itertools
import shutil
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from bridge_pipelines.db.migrate import MIGRATIONS_DIR, migrate
from bridge_pipelines.db.server import with_database
from tests.intake_helpers import disbursement, intake, ready_envelope, start_disbursing

MIGRATION = "0020_reconciled_derived_from_remittance.sql"
_names = itertools.count(1)


def _database_before_0020(server_url: str, tmp_path: Path) -> tuple[str, Path]:
    """An empty database migrated up to 0019, and a folder holding the migrations up to 0019."""
    before = tmp_path / "migrations"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < MIGRATION:
            shutil.copy(path, before / path.name)
    name = f"bridge_before_0020_{next(_names)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    migrate(url, before)
    return url, before


def _reconciled_the_old_way(conn: psycopg.Connection) -> None:
    """D1 RECONCILED, D2 REVERSED after its remittance, D3 SHIPPED: as the reconciliation left them before 0020."""
    ready_envelope(conn, number_of_beneficiaries=3, number_of_disbursements=3,
                   total_disbursement_amount=Decimal("60.00"))
    for n in (1, 2, 3):
        disbursement(conn, f"D{n}", amount="20.00")
    intake(conn)
    start_disbursing(conn)
    conn.execute("UPDATE bridge.disbursement SET disbursement_status = 'SHIPPED', shipped_at = now()")
    conn.execute("""INSERT INTO bridge.disbursement_recon (disbursement_id, disbursement_envelope_id,
                        remittance_reference_number, remittance_statement_id, remittance_page,
                        remittance_entry_sequence, reversal_found, reversal_statement_id, reversal_reason, created_at)
                    SELECT disbursement_id, disbursement_envelope_id, bank_reference, 'S1', 0,
                           row_number() OVER (ORDER BY disbursement_id), disbursement_id = 'D2',
                           CASE WHEN disbursement_id = 'D2' THEN 'S2' END,
                           CASE WHEN disbursement_id = 'D2' THEN 'AC04 closed' END, '2026-12-02 18:00+00'
                    FROM bridge.disbursement WHERE disbursement_id IN ('D1', 'D2')""")
    conn.execute("UPDATE bridge.disbursement SET disbursement_status = 'RECONCILED', "
                 "status_updated_at = '2026-12-02 18:00+00' WHERE disbursement_id = 'D1'")
    conn.execute("UPDATE bridge.disbursement SET disbursement_status = 'REVERSED', status_reason_code = "
                 "'REVERSED_BY_BANK', status_updated_at = '2026-12-03 18:00+00' WHERE disbursement_id = 'D2'")


def _shown(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT disbursement_id, disbursement_status, status_reason_code, status_updated_at::text, "
                        "remittance_statement_id, reversal_found FROM bridge.disbursement_status ORDER BY 1").fetchall()


def test_disbursements_reconciled_before_the_migration_read_the_same_after_it(server_url, tmp_path):
    url, _before = _database_before_0020(server_url, tmp_path)
    with psycopg.connect(url, autocommit=True) as conn:
        _reconciled_the_old_way(conn)
        shown_before = _shown(conn)
        assert [row[1] for row in shown_before] == ["RECONCILED", "REVERSED", "SHIPPED"]
        assert migrate(url) == [MIGRATION]
        assert _shown(conn) == shown_before, "PBMS reads what it read before"
        stored = conn.execute("SELECT disbursement_id, disbursement_status FROM bridge.disbursement "
                              "ORDER BY 1").fetchall()
        assert stored == [("D1", "SHIPPED"), ("D2", "REVERSED"), ("D3", "SHIPPED")]
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE bridge.disbursement SET disbursement_status = 'RECONCILED' "
                         "WHERE disbursement_id = 'D1'")


def test_the_migration_stops_on_a_reconciled_disbursement_without_its_remittance(server_url, tmp_path):
    url, _before = _database_before_0020(server_url, tmp_path)
    with psycopg.connect(url, autocommit=True) as conn:
        _reconciled_the_old_way(conn)
        conn.execute("UPDATE bridge.disbursement SET disbursement_status = 'RECONCILED' WHERE disbursement_id = 'D3'")
        with pytest.raises(psycopg.errors.RaiseException, match="1 RECONCILED disbursement"):
            migrate(url)
        stored = dict(conn.execute("SELECT disbursement_id, disbursement_status FROM bridge.disbursement").fetchall())
        assert stored == {"D1": "RECONCILED", "D2": "REVERSED", "D3": "RECONCILED"}, "nothing was half-applied"
        applied = conn.execute("SELECT max(version) FROM bridge_meta.schema_migration").fetchone()[0]
        assert applied == 19
