"""Frames to and from PostgreSQL by COPY (bridge_pipelines/db/frames.py), against the real server: values come back
exactly, an error in the middle of a COPY is raised with its own class and leaves the connection usable, and an
empty result is an empty frame."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import psycopg
import pytest

from bridge_pipelines.db.frames import copy_frame, read_frame


def test_a_frame_goes_in_and_comes_back_exactly(db: psycopg.Connection) -> None:
    rows = 120_000  # several times what the server sends before the client has read any of it
    frame = pl.DataFrame({
        "id": [f"D{i:07d}" for i in range(rows)],
        "amount": [str(Decimal(i) / 100 + Decimal("0.01")) for i in range(rows)],
        "note": [None if i % 7 == 0 else f'text, with "quotes" and\nnew lines {i}' for i in range(rows)],
    })
    with db.transaction():
        db.execute("CREATE TEMP TABLE t (id text, amount numeric, note text) ON COMMIT DROP")
        assert copy_frame(db, frame, "t") == rows
        back = read_frame(db, "SELECT id, amount::text AS amount, note FROM t WHERE amount >= %s ORDER BY id",
                          (Decimal("0.01"),), schema={"amount": pl.Decimal(20, 2)})
    assert back.height == rows
    assert back["id"].to_list() == frame["id"].to_list()
    assert back["note"].to_list() == frame["note"].to_list()
    assert back["amount"].sum() == sum(Decimal(a) for a in frame["amount"])


def test_an_error_in_the_middle_of_a_copy_is_raised_and_the_connection_stays_usable(db: psycopg.Connection) -> None:
    # the first 50,000 rows reach the client before row 50,000 fails on the server
    with pytest.raises(psycopg.errors.DivisionByZero):
        read_frame(db, "SELECT g, 1 / (g - 50000) AS x FROM generate_series(1, 100000) g")
    assert db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert db.execute("SELECT 42").fetchone() == (42,)
    with pytest.raises(psycopg.errors.DivisionByZero), db.transaction():
        read_frame(db, "SELECT 1 / (g - 3) AS x FROM generate_series(1, 5) g")
    assert db.execute("SELECT 43").fetchone() == (43,)


def test_an_empty_result_is_an_empty_frame(db: psycopg.Connection) -> None:
    empty = read_frame(db, "SELECT 1 AS x WHERE false")
    assert empty.height == 0 and empty.columns == ["x"]
    with_schema = read_frame(db, "SELECT 1 AS x WHERE false", schema={"x": pl.Int64})
    assert with_schema.height == 0 and with_schema.schema == pl.Schema({"x": pl.Int64})
