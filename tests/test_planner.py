"""`rows_by_primary_key`: hash and merge joins off inside the block, as they were after it, within a transaction."""

from __future__ import annotations

import psycopg
import pytest

from bridge_pipelines.db.planner import rows_by_primary_key


def _joins(conn: psycopg.Connection) -> tuple[str, str]:
    return conn.execute("SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')").fetchone()


def test_joins_are_off_inside_and_as_they_were_after(db):
    with db.transaction():
        assert _joins(db) == ("on", "on")
        with rows_by_primary_key(db):
            assert _joins(db) == ("off", "off")
            plan = "\n".join(row[0] for row in db.execute(
                "EXPLAIN SELECT * FROM bridge.disbursement d JOIN bridge.disbursement_recon r USING (disbursement_id)"))
            assert "Hash Join" not in plan and "Merge Join" not in plan
        assert _joins(db) == ("on", "on")
        db.execute("SET LOCAL enable_mergejoin = off")  # a setting the transaction chose itself is kept
        with rows_by_primary_key(db):
            assert _joins(db) == ("off", "off")
        assert _joins(db) == ("on", "off")
    assert _joins(db) == ("on", "on")  # local to the transaction


def test_a_failed_transaction_leaves_the_session_as_it_was(db):
    with pytest.raises(psycopg.errors.DivisionByZero):
        with db.transaction(), rows_by_primary_key(db):
            db.execute("SELECT 1 / 0")
    assert _joins(db) == ("on", "on")
