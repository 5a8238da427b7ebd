"""Bulk state changes by address (issue 9): the acknowledgement of a payment batch and a statement's reconciliation
move each disbursement at the address its row was read from (a TID scan, no index lookup), and fall back to the
primary key for the ones whose row is no longer there. A wrong address must never move another disbursement, and must
not leave a listed one behind."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import psycopg

from bridge_pipelines.bank.protocol import ACK_SCHEMA, BatchAcknowledgement
from bridge_pipelines.disbursement.shipping import batch_payments, plan_batches, record_acknowledgement
from bridge_pipelines.intake.staging import copy_rows
from bridge_pipelines.reconciliation import writeback
from bridge_pipelines.statements.importing import check_statement, record_statement
from tests.intake_helpers import envelope, intake, program, start_disbursing
from tests.plans import executed_plans, plan_nodes
from tests.statement_builders import debit, mt940

N = 6
AMOUNT = Decimal("5.00")


def _shipped_envelopes(db: psycopg.Connection) -> None:
    """ENV-1 and ENV-2, N disbursements each, all SHIPPED."""
    program(db)
    for envelope_id in ("ENV-1", "ENV-2"):
        envelope(db, envelope_id, number_of_beneficiaries=N, number_of_disbursements=N,
                 total_disbursement_amount=AMOUNT * N)
    intake(db)
    copy_rows(db, "disbursement", (
        (f"{envelope_id}-D{i}", envelope_id, f"MIS-{i}", f"account_number:{i:010d}.bank_code:EXB.mode:bank",
         f"Person {i}", AMOUNT, "December") for envelope_id in ("ENV-1", "ENV-2") for i in range(N)))
    assert intake(db).accepted == {"disbursement": 2 * N}
    start_disbursing(db)
    db.execute("UPDATE bridge.disbursement SET disbursement_status = 'SHIPPED', shipped_at = now(), "
               "shipment_batch_id = 'PB1'")
    db.execute("UPDATE bridge.disbursement_envelope_batch_status SET number_of_disbursements_shipped = %s, "
               "total_disbursement_amount_shipped = %s", (N, AMOUNT * N))


def _add_reconciled_envelope(db: psycopg.Connection, rows: int) -> None:
    """ENV-OLD: `rows` disbursements of an earlier cycle, already RECONCILED (a table that holds more than the
    statement names, as it does after a few cycles)."""
    db.execute("""INSERT INTO bridge.disbursement_envelope (disbursement_envelope_id, benefit_program_mnemonic,
                      disbursement_frequency, cycle_code_mnemonic, number_of_beneficiaries, number_of_disbursements,
                      total_disbursement_amount, disbursement_currency_code, disbursement_schedule_date)
                  SELECT 'ENV-OLD', benefit_program_mnemonic, disbursement_frequency, 'old', %(n)s, %(n)s,
                         %(n)s * 5, disbursement_currency_code, disbursement_schedule_date
                  FROM bridge.disbursement_envelope WHERE disbursement_envelope_id = 'ENV-1'""", dict(n=rows))
    db.execute("""INSERT INTO bridge.disbursement (disbursement_id, disbursement_envelope_id, beneficiary_id,
                      beneficiary_name, disbursement_amount, narrative, bank_reference, disbursement_status)
                  SELECT 'OLD-' || g, 'ENV-OLD', 'b', 'n', 5, 'old', 'GF' || lpad(upper(to_hex(g)), 14, '0'),
                         'RECONCILED'
                  FROM generate_series(1, %s) g""", (rows,))
    db.execute("ANALYZE bridge.disbursement")


def _reconcile_env_1(db: psycopg.Connection) -> writeback.ReconciliationSummary:
    references = [row[0] for row in db.execute(
        "SELECT bank_reference FROM bridge.disbursement WHERE disbursement_envelope_id = 'ENV-1' ORDER BY 1")]
    data = mt940("ACC-CASH", [debit(reference, AMOUNT) for reference in references])
    outcome = check_statement(db, "STMT-1", data)
    assert outcome.ok, outcome.error_detail
    with db.transaction():
        record_statement(db, outcome, "statement.mt940", "0" * 64, data)
    return writeback.reconcile_statement(db, "STMT-1", outcome.parsed)


def _passes(monkeypatch) -> list[str]:
    taken: list[str] = []
    original = writeback._mark_reconciled_pass

    def recorded(conn, detail, match, settings):
        taken.append("by address" if "ctid" in match else "by primary key")
        return original(conn, detail, match, settings)

    monkeypatch.setattr(writeback, "_mark_reconciled_pass", recorded)
    return taken


def _states(db: psycopg.Connection) -> dict[tuple[str, str], int]:
    return {(envelope_id, state): n for envelope_id, state, n in db.execute(
        "SELECT disbursement_envelope_id, disbursement_status, count(*) FROM bridge.disbursement GROUP BY 1, 2")}


def _counters(db: psycopg.Connection) -> dict[str, tuple[int, Decimal]]:
    return {envelope_id: (n, amount) for envelope_id, n, amount in db.execute(
        "SELECT disbursement_envelope_id, number_of_disbursements_reconciled, total_disbursement_amount_reconciled "
        "FROM bridge.disbursement_envelope_batch_status")}


def test_a_statement_moves_its_disbursements_at_the_addresses_it_read_them_from(db, monkeypatch):
    _shipped_envelopes(db)
    _add_reconciled_envelope(db, 5_000)
    taken = _passes(monkeypatch)
    with executed_plans(db, statements_containing="SET disbursement_status = 'RECONCILED'") as plans:
        summary = _reconcile_env_1(db)
    assert summary.disbursements_reconciled == N
    assert taken == ["by address"], "every address was right: no lookup by primary key"
    scans = {(node["Node Type"], node.get("Relation Name")) for plan in plans for node in plan_nodes(plan)
             if node["Node Type"].endswith("Scan") and node.get("Relation Name") == "disbursement"}
    assert scans == {("Tid Scan", "disbursement")}, scans
    assert _states(db) == {("ENV-1", "RECONCILED"): N, ("ENV-2", "SHIPPED"): N, ("ENV-OLD", "RECONCILED"): 5_000}
    assert _counters(db) == {"ENV-1": (N, AMOUNT * N), "ENV-2": (0, 0)}


def test_addresses_that_no_longer_hold_the_disbursement_fall_back_to_the_primary_key(db, monkeypatch):
    """Half of the addresses read point at another envelope's disbursement (as if the rows had moved since they were
    read), one at nothing: the first pass moves only the rows still where they were read, the pass by primary key
    the rest, and the other envelope's disbursements stay as they were."""
    _shipped_envelopes(db)
    others = [row[0] for row in db.execute(
        "SELECT ctid::text FROM bridge.disbursement WHERE disbursement_envelope_id = 'ENV-2' ORDER BY 1")]
    original = writeback._load_candidates

    def load_with_stale_addresses(conn, lines):
        disbursements, existing = original(conn, lines)
        stale = [others[i] if i < N // 2 else tid for i, tid in enumerate(disbursements["tid"])]
        stale[-1] = "(999999,1)"  # a page the table does not have
        return disbursements.with_columns(pl.Series("tid", stale, dtype=pl.String)), existing

    monkeypatch.setattr(writeback, "_load_candidates", load_with_stale_addresses)
    taken = _passes(monkeypatch)
    summary = _reconcile_env_1(db)
    assert taken == ["by address", "by primary key"]
    assert summary.disbursements_reconciled == N
    assert _states(db) == {("ENV-1", "RECONCILED"): N, ("ENV-2", "SHIPPED"): N}
    assert _counters(db) == {"ENV-1": (N, AMOUNT * N), "ENV-2": (0, 0)}
    events = db.execute("SELECT detail FROM bridge.envelope_event WHERE event_type = 'RECONCILED' "
                        "ORDER BY event_id").fetchall()
    assert [detail for (detail,) in events] == [
        f"statement STMT-1: {N // 2 - 1} disbursement(s) SHIPPED -> RECONCILED",
        f"statement STMT-1: {N // 2 + 1} disbursement(s) SHIPPED -> RECONCILED"]
    assert db.execute("SELECT current_setting('enable_indexscan'), current_setting('enable_hashjoin')"
                      ).fetchone() == ("on", "on"), "the planner's settings are restored after each pass"


def test_an_acknowledgement_finds_the_members_whose_rows_changed_since_they_were_read(db):
    """Two members' rows get new versions (at new addresses) between the read of the batch and the bank's answer,
    one of them by a change of state: the other is still RESOLVED and is found by primary key, the changed one is
    not touched."""
    _shipped_envelopes(db)
    db.execute("UPDATE bridge.disbursement SET disbursement_status = 'RESOLVED', shipped_at = NULL, "
               "shipment_batch_id = NULL WHERE disbursement_envelope_id = 'ENV-1'")
    db.execute("UPDATE bridge.disbursement_envelope_batch_status SET number_of_disbursements_shipped = 0, "
               "total_disbursement_amount_shipped = 0")
    assert plan_batches(db, "ENV-1", N) == 1
    batch_id = db.execute("SELECT bank_disbursement_batch_id FROM bridge.bank_disbursement_batch_status").fetchone()[0]
    payments = batch_payments(db, batch_id, mapper_required=False)
    assert payments.height == N
    touched, failed_meanwhile = payments["disbursement_id"][0], payments["disbursement_id"][1]
    db.execute("UPDATE bridge.disbursement SET status_updated_at = now() WHERE disbursement_id = %s", (touched,))
    db.execute("UPDATE bridge.disbursement SET disbursement_status = 'FAILED' WHERE disbursement_id = %s",
               (failed_meanwhile,))
    results = payments.select("payment_reference").with_columns(
        pl.lit("ACCEPTED").alias("status"), pl.lit(None, pl.String).alias("reason_code"),
        pl.lit(False).alias("duplicate")).select(list(ACK_SCHEMA))
    shipped, failed, _reasons = record_acknowledgement(db, "ENV-1", batch_id, BatchAcknowledgement(batch_id, results),
                                                       payments)
    assert (shipped, failed) == (N - 1, 0)
    assert dict(db.execute("SELECT disbursement_id, disbursement_status FROM bridge.disbursement "
                           "WHERE disbursement_id IN (%s, %s)", (touched, failed_meanwhile)).fetchall()) \
        == {touched: "SHIPPED", failed_meanwhile: "FAILED"}
    assert db.execute("SELECT number_of_disbursements_shipped, total_disbursement_amount_shipped "
                      "FROM bridge.disbursement_envelope_batch_status WHERE disbursement_envelope_id = 'ENV-1'"
                      ).fetchone() == (N - 1, AMOUNT * (N - 1))
    assert _states(db)[("ENV-2", "SHIPPED")] == N
