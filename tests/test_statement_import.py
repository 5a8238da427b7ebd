"""Statement files through the real inbox, the real statement sensor and the real Dagster runs (`bridge process`):
quarantine, duplicates, every error-recon reason, out-of-order arrival, multi-page statements, batch bookings and
inbox safety. Each test ships a real envelope with the example bank first, then drops statements (crafted, or written
by the example bank) naming its disbursements' bank references."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from bridge_pipelines.reconciliation.audit import TOUCHED_ENVELOPES_SQL, envelopes_not_adding_up, touched_envelopes
from bridge_pipelines.statements import inbox as inbox_module
from bridge_pipelines.statements.inbox import copy_into_inbox, register_new_files, safe_inbox_path
from tests.bank_fixtures import *  # noqa: F403
from tests.pipeline_helpers import envelope_row, fund, run_process, stage, states
from tests.statement_builders import Entry, credit, debit, fee, mt940, reversal

TODAY = date(2026, 12, 1)
DUE = TODAY + timedelta(days=1)
UNKNOWN_REFERENCE = "GFFFFFFFFFFFFFFF"  # our shape, but never issued
BRIDGE_CLI = Path(sys.executable).parent / "bridge"


@dataclass(frozen=True)
class Disbursement:
    disbursement_id: str
    bank_reference: str
    amount: Decimal
    status: str
    batch: str | None


@dataclass
class Envelope:
    envelope_id: str
    account: str
    disbursements: list[Disbursement]

    def shipped(self) -> list[Disbursement]:
        return [d for d in self.disbursements if d.status == "SHIPPED"]


@pytest.fixture
def business_day(monkeypatch: pytest.MonkeyPatch):
    def set_day(day: date) -> None:
        monkeypatch.setenv("BRIDGE_BUSINESS_DATE", day.isoformat())
    set_day(TODAY)
    return set_day


def read_envelope(db: psycopg.Connection, envelope_id: str, account: str) -> Envelope:
    rows = db.execute("SELECT disbursement_id, bank_reference, disbursement_amount, disbursement_status, "
                      "shipment_batch_id FROM bridge.disbursement WHERE disbursement_envelope_id = %s "
                      "ORDER BY disbursement_id", (envelope_id,)).fetchall()
    return Envelope(envelope_id, account, [Disbursement(*row) for row in rows])


def ship(db: psycopg.Connection, bank, instance: dg.DagsterInstance, business_day, count: int,
         envelope_ids: tuple[str, ...] = ("ENV-1",), cancel_first: bool = False) -> list[Envelope]:
    """Stage envelopes of `count` disbursements, take them through intake and the disbursement pipeline against the
    example bank. With `cancel_first`, each envelope's first disbursement is cancelled (and PBMS sends a replacement
    so the envelope is complete), so it has a bank reference but never reaches the bank."""
    business_day(TODAY)
    staged = [stage(db.info.dsn, count, DUE, envelope_id=envelope_id) for envelope_id in envelope_ids]
    account = staged[0]["sponsor_account"]
    fund(bank, account, "1000000.00")
    report = run_process(instance)
    assert report.success, [r.error for r in report.runs]
    if cancel_first:
        for envelope_id in envelope_ids:
            db.execute("INSERT INTO staging.disbursement_cancellation (disbursement_id) VALUES (%s)",
                       (f"{envelope_id}-00000000",))
        assert run_process(instance).success
        for envelope_id in envelope_ids:
            db.execute("""INSERT INTO staging.disbursement (disbursement_id, disbursement_envelope_id,
                          mis_reference_number, beneficiary_id, beneficiary_name, disbursement_amount, narrative)
                          SELECT disbursement_id || '-R', disbursement_envelope_id, mis_reference_number,
                                 beneficiary_id, beneficiary_name, disbursement_amount, narrative
                          FROM staging.disbursement WHERE disbursement_id = %s""", (f"{envelope_id}-00000000",))
    business_day(DUE)
    report = run_process(instance)
    assert report.success, [r.error for r in report.runs]
    envelopes = [read_envelope(db, envelope_id, account) for envelope_id in envelope_ids]
    for envelope in envelopes:
        assert states(db, envelope.envelope_id) == ({"SHIPPED": count, "CANCELLED": 1} if cancel_first
                                                    else {"SHIPPED": count})
    return envelopes


def inbox_of(bridge_env: Path) -> Path:
    return bridge_env / "inbox"


def all_states(db: psycopg.Connection) -> dict[str, str]:
    """Every disbursement's state as PBMS reads it (bridge.disbursement_status)."""
    return dict(db.execute("SELECT disbursement_id, disbursement_status FROM bridge.disbursement_status").fetchall())


def recon_rows(db: psycopg.Connection) -> list[tuple]:
    return db.execute("SELECT * FROM bridge.disbursement_recon ORDER BY disbursement_id").fetchall()


def count(db: psycopg.Connection, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def statement_of(db: psycopg.Connection, file_name: str) -> dict:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("SELECT * FROM bridge.account_statement WHERE file_name = %s", (file_name,)).fetchone()
    assert row is not None, f"no account_statement row for {file_name}"
    return row


def assert_lines_accounted_for(db: psycopg.Connection) -> None:
    """Every line of every reconciled statement is reconciled, unrelated or in error, and the rows are there."""
    rows = db.execute("""SELECT s.file_name, s.number_of_lines, s.number_of_lines_reconciled,
                                s.number_of_lines_unrelated, s.number_of_lines_in_error,
                                (SELECT count(*) FROM bridge.statement_unrelated_line u
                                 WHERE u.statement_id = s.statement_id),
                                (SELECT count(*) FROM bridge.disbursement_error_recon e
                                 WHERE e.statement_id = s.statement_id)
                         FROM bridge.account_statement s WHERE s.statement_process_status = 'RECONCILED'""").fetchall()
    assert rows
    for name, lines, reconciled, unrelated, in_error, unrelated_rows, error_rows in rows:
        assert lines == reconciled + unrelated + in_error, name
        assert (unrelated, in_error) == (unrelated_rows, error_rows), name
    # the envelopes each reconciliation recorded (what its audit recounts) are those its reconciliations name
    for statement_id, recorded in db.execute("SELECT statement_id, reconciled_envelope_ids FROM "
                                             "bridge.account_statement WHERE statement_process_status = 'RECONCILED'"):
        scanned = [row[0] for row in db.execute(TOUCHED_ENVELOPES_SQL, dict(s=statement_id))]
        assert recorded == sorted(scanned), statement_id


def check_passed(instance: dg.DagsterInstance, asset: str, check: str, partition: str) -> bool | None:
    """The latest evaluation of an asset check for one statement partition (None: never evaluated)."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=100):
        if record.partition != partition or record.event is None:
            continue
        evaluation = record.event.dagster_event.event_specific_data
        return evaluation.passed
    return None


def bridge_statement_check(path: Path) -> tuple[int, dict]:
    completed = subprocess.run([str(BRIDGE_CLI), "statement", "check", str(path), "--json"], capture_output=True,
                               text=True, timeout=120)
    return completed.returncode, json.loads(completed.stdout)


# --- 1. quarantine ------------------------------------------------------------------------------------------------


def test_bad_files_are_quarantined_with_a_reason_and_nothing_applied(
        bridge_env, db: psycopg.Connection, make_example_bank, business_day, tmp_path: Path) -> None:
    bank = make_example_bank(bank_failure_rate=0.0)
    inbox = inbox_of(bridge_env)
    with dg.DagsterInstance.ephemeral() as instance:
        (envelope,) = ship(db, bank, instance, business_day, 4)
        first, second = envelope.shipped()[:2]
        ours = [debit(first.bank_reference, first.amount), debit(second.bank_reference, second.amount)]
        files = {
            "garbage.sta": (random.Random(7).randbytes(4096), "NO_STATEMENT"),
            "unbalanced.sta": (mt940(envelope.account, ours, closing_error="1.00"), "BALANCE_MISMATCH"),
            "stranger.sta": (mt940("999999999999", ours), "INVALID_ACCOUNT_NUMBER"),
        }
        states_before = all_states(db)
        for name, (data, _) in files.items():
            copy_into_inbox(inbox, name, data)
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]  # a bad file is quarantined, not a failed run
        assert sorted(r.job_name for r in report.runs) == ["statement_job"] * 3

        for name, (data, code) in files.items():
            assert not (inbox / name).exists(), name
            assert (inbox / "quarantine" / name).read_bytes() == data
            reason = (inbox / "quarantine" / f"{name}.reason.txt").read_text()
            assert code in reason, (name, reason)
            row = statement_of(db, name)
            assert row["statement_process_status"] == "ERROR"
            assert row["statement_process_error_code"] == code
            assert row["statement_process_error_detail"]
            assert bytes(row["raw_file"]) == data
            assert check_passed(instance, "statement_lines", "statement_balances_close", row["statement_id"]) is False
        assert dict(db.execute("SELECT file_name, inbox_status FROM bridge.inbox_file").fetchall()) == {
            name: "QUARANTINED" for name in files}
        # nothing applied
        assert all_states(db) == states_before
        for table in ("bridge.disbursement_recon", "bridge.disbursement_error_recon",
                      "bridge.statement_unrelated_line"):
            assert count(db, table) == 0, table
        row = envelope_row(db, envelope.envelope_id)
        assert (row["number_of_disbursements_reconciled"], row["number_of_disbursements_reversed"]) == (0, 0)
        assert run_process(instance).runs == []  # the quarantine folder is not read again

    # `bridge statement check FILE --json`: the same problems, without importing; exit 1 on a bad file, 0 on a good one
    outside = tmp_path / "check"
    outside.mkdir()
    for name in ("garbage.sta", "unbalanced.sta"):
        (outside / name).write_bytes(files[name][0])
        code, summary = bridge_statement_check(outside / name)
        assert code == 1 and summary["ok"] is False
        assert files[name][1] in {problem["code"] for problem in summary["problems"]}
    good = outside / "good.sta"
    good.write_bytes(mt940(envelope.account, ours + [credit("100.00")], page_size=2))
    code, summary = bridge_statement_check(good)
    assert code == 0 and summary["ok"] is True and summary["problems"] == []
    assert (summary["page_count"], summary["line_count"]) == (2, 3)


# --- 2. the same file twice -----------------------------------------------------------------------------------------


def test_the_same_file_twice_is_imported_once(bridge_env, db: psycopg.Connection, make_example_bank,
                                              business_day) -> None:
    bank = make_example_bank(bank_failure_rate=0.0)
    inbox = inbox_of(bridge_env)
    with dg.DagsterInstance.ephemeral() as instance:
        (envelope,) = ship(db, bank, instance, business_day, 3)
        first, second, _ = envelope.shipped()
        data = mt940(envelope.account, [debit(first.bank_reference, first.amount),
                                        debit(second.bank_reference, second.amount), credit("100.00")])
        copy_into_inbox(inbox, "day1.sta", data)
        report = run_process(instance)
        assert report.success and [r.job_name for r in report.runs] == ["statement_job"]
        recon_before, states_before = recon_rows(db), all_states(db)
        assert len(recon_before) == 2
        # the statement as recorded: the file's exact bytes and what was read from it
        row = db.execute(
            "SELECT raw_file, file_sha256, file_size, statement_format, number_of_pages, number_of_lines, "
            "account_number, length(currency), closing_balance - opening_balance, statement_date IS NOT NULL, "
            "processed_at >= received_at FROM bridge.account_statement").fetchone()
        assert (bytes(row[0]), row[1], row[2]) == (data, hashlib.sha256(data).hexdigest(), len(data))
        assert row[3:] == ("MT940", 1, 3, envelope.account, 3, Decimal("100.00") - first.amount - second.amount,
                           True, True)

        # the same name dropped again (a new modification time), and the same content under another name
        path = copy_into_inbox(inbox, "day1.sta", data)
        stamp = path.stat().st_mtime_ns + 5_000_000_000
        os.utime(path, ns=(stamp, stamp))
        copy_into_inbox(inbox, "day1-resent.sta", data)
        report = run_process(instance)
        assert report.success and report.runs == []

        files = db.execute("SELECT file_name, inbox_status, detail, statement_id FROM bridge.inbox_file "
                           "ORDER BY inbox_file_id").fetchall()
        assert files[0][:2] == ("day1.sta", "IMPORTED")
        assert sorted((name, status) for name, status, _, _ in files[1:]) == [
            ("day1-resent.sta", "DUPLICATE"), ("day1.sta", "DUPLICATE")]
        for _, _, detail, statement_id in files[1:]:
            assert "identical to day1.sta" in detail and files[0][3] in detail
            assert statement_id is None
        assert count(db, "bridge.account_statement") == 1
        assert recon_rows(db) == recon_before and all_states(db) == states_before
        assert count(db, "bridge.disbursement_error_recon") == 0
        assert count(db, "bridge.statement_unrelated_line") == 1
        assert run_process(instance).runs == []


def test_reconciliation_alone_reads_the_stored_file(bridge_env, db: psycopg.Connection, make_example_bank,
                                                    business_day) -> None:
    """Within a statement run the parsed file is handed from statement_lines to statement_reconciliation in memory;
    reconciliation run on its own (a re-run from the UI, another process) reads the stored file instead, with the
    same result, and applies nothing twice."""
    import assets.statements as statement_assets
    from bridge_pipelines.definitions import defs

    bank = make_example_bank(bank_failure_rate=0.0)
    with dg.DagsterInstance.ephemeral() as instance:
        (envelope,) = ship(db, bank, instance, business_day, 3)
        first, second, third = envelope.shipped()
        copy_into_inbox(inbox_of(bridge_env), "day1.sta", mt940(envelope.account, [
            debit(first.bank_reference, first.amount), debit(second.bank_reference, second.amount),
            reversal(second.bank_reference, second.amount)]))
        assert run_process(instance).success
        recon_before, states_before = recon_rows(db), all_states(db)
        assert states(db, envelope.envelope_id) == {"RECONCILED": 1, "REVERSED": 1, "SHIPPED": 1}
        assert statement_assets._parsed_files == {}, "the hand-over entry is used once"

        statement_id = statement_of(db, "day1.sta")["statement_id"]
        db.execute("UPDATE bridge.account_statement SET statement_process_status = 'PARSED' WHERE statement_id = %s",
                   (statement_id,))
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={dg.AssetKey("statement_reconciliation")})
        assert job.execute_in_process(instance=instance, partition_key=statement_id).success
    assert statement_of(db, "day1.sta")["statement_process_status"] == "RECONCILED"
    assert recon_rows(db) == recon_before and all_states(db) == states_before
    assert count(db, "bridge.disbursement_error_recon") == 0


def test_a_reconciliation_row_inserted_meanwhile_is_handled(bridge_env, db: psycopg.Connection, make_example_bank,
                                                            business_day, monkeypatch) -> None:
    """New reconciliation rows are written with a plain COPY, and the optimistic pass reads the earlier
    reconciliations of REVERSED candidates only. A disbursement it would record twice (here: remitted again by the
    next day's statement; the same as another statement's reconciliation inserting its row after the candidates were
    loaded) fails the COPY on the primary key, and the statement reconciles again reading every candidate's row, with
    conflict handling: the line is a duplicate, as without the shortcut."""
    from bridge_pipelines.reconciliation import writeback

    bank = make_example_bank(bank_failure_rate=0.0)
    inbox = inbox_of(bridge_env)
    with dg.DagsterInstance.ephemeral() as instance:
        (envelope,) = ship(db, bank, instance, business_day, 3)
        first, second, third = envelope.shipped()
        copy_into_inbox(inbox, "day1.sta", mt940(envelope.account, [debit(first.bank_reference, first.amount)]))
        assert run_process(instance).success

        original, calls = writeback._load_candidates, []

        def load_and_count_existing_rows(conn, lines, optimistic):
            disbursements, existing = original(conn, lines, optimistic)
            calls.append((optimistic, existing.height))
            return disbursements, existing

        monkeypatch.setattr(writeback, "_load_candidates", load_and_count_existing_rows)
        copy_into_inbox(inbox, "day2.sta", mt940(envelope.account, [
            debit(first.bank_reference, first.amount), debit(second.bank_reference, second.amount)], statement_number=2))
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]
    assert calls == [(True, 0), (False, 1)], "loaded twice: the optimistic attempt and the one with conflict handling"
    assert states(db, envelope.envelope_id) == {"RECONCILED": 2, "SHIPPED": 1}
    errors = db.execute("SELECT bank_reference, error_reason FROM bridge.disbursement_error_recon").fetchall()
    assert errors == [(first.bank_reference, "DUPLICATE_DISBURSEMENT")]
    assert count(db, "bridge.disbursement_recon") == 2
    assert_lines_accounted_for(db)


# --- 3. every error-recon reason ------------------------------------------------------------------------------------


def test_every_error_recon_reason_end_to_end(bridge_env, db: psycopg.Connection, make_example_bank,
                                            business_day) -> None:
    bank = make_example_bank(bank_failure_rate=0.0)
    inbox = inbox_of(bridge_env)
    with dg.DagsterInstance.ephemeral() as instance:
        (envelope,) = ship(db, bank, instance, business_day, 8, cancel_first=True)
        cancelled = next(d for d in envelope.disbursements if d.status == "CANCELLED")
        s = envelope.shipped()
        assert len(s) == 8
        statements = {
            "day1.sta": mt940(envelope.account, [
                debit(s[0].bank_reference, s[0].amount),                       # reconciled
                debit(s[1].bank_reference, s[1].amount),                       # reconciled
                debit(UNKNOWN_REFERENCE, "10.00"),                             # INVALID_RECONCILIATION_ID
                debit(s[2].bank_reference, s[2].amount + Decimal("0.01")),     # AMOUNT_MISMATCH
                reversal(cancelled.bank_reference, cancelled.amount),          # INVALID_REVERSAL
                credit("5000.00"),                                             # unrelated
                fee("1.00"),                                                   # unrelated
            ], statement_number=1, day=DUE),
            "day2.sta": mt940(envelope.account, [
                debit(s[0].bank_reference, s[0].amount),                       # DUPLICATE_DISBURSEMENT
                debit(s[3].bank_reference, s[3].amount),                       # reconciled
                debit(s[4].bank_reference, s[4].amount),                       # reconciled
                Entry("C", s[4].amount, "NONREF",                              # a return as a credit: reversed
                      f"/RTRN/AC01 ACCOUNT NOT FOUND/EREF/{s[4].bank_reference}"),
            ], statement_number=2, day=DUE + timedelta(days=1)),
            "day3-eur.sta": mt940(envelope.account, [
                debit(s[5].bank_reference, s[5].amount),                       # CURRENCY_MISMATCH
            ], statement_number=3, day=DUE + timedelta(days=2), currency="EUR"),
        }
        for name, data in statements.items():
            copy_into_inbox(inbox, name, data)
            report = run_process(instance)
            assert report.success, [r.error for r in report.runs]
            assert [r.job_name for r in report.runs] == ["statement_job"]
            assert statement_of(db, name)["statement_process_status"] == "RECONCILED"

        errors = db.execute("""SELECT a.file_name, e.entry_sequence, e.error_reason, e.bank_reference,
                                      e.disbursement_id, e.error_detail
                               FROM bridge.disbursement_error_recon e JOIN bridge.account_statement a
                               USING (statement_id) ORDER BY a.file_name, e.entry_sequence""").fetchall()
        assert [row[:5] for row in errors] == [
            ("day1.sta", 3, "INVALID_RECONCILIATION_ID", UNKNOWN_REFERENCE, None),
            ("day1.sta", 4, "AMOUNT_MISMATCH", s[2].bank_reference, s[2].disbursement_id),
            ("day1.sta", 5, "INVALID_REVERSAL", cancelled.bank_reference, cancelled.disbursement_id),
            ("day2.sta", 1, "DUPLICATE_DISBURSEMENT", s[0].bank_reference, s[0].disbursement_id),
            ("day3-eur.sta", 1, "CURRENCY_MISMATCH", s[5].bank_reference, s[5].disbursement_id),
        ]
        assert all(row[5] for row in errors), "every error-recon line says why"
        assert "CANCELLED" in errors[2][5] and "EUR" in errors[4][5]

        counters = {name: (row["number_of_lines"], row["number_of_lines_reconciled"],
                           row["number_of_lines_unrelated"], row["number_of_lines_in_error"])
                    for name in statements for row in [statement_of(db, name)]}
        assert counters == {"day1.sta": (7, 2, 2, 3), "day2.sta": (4, 3, 0, 1), "day3-eur.sta": (1, 0, 0, 1)}
        assert_lines_accounted_for(db)
        unrelated = db.execute("SELECT mark, amount, information FROM bridge.statement_unrelated_line "
                               "ORDER BY entry_sequence").fetchall()
        assert unrelated == [("C", Decimal("5000.00"), "ACCOUNT FUNDING"),
                             ("D", Decimal("1.00"), "DAILY ACCOUNT MAINTENANCE FEE")]

        final = all_states(db)
        expected = {d.disbursement_id: "SHIPPED" for d in s} | {cancelled.disbursement_id: "CANCELLED"}
        expected |= {s[i].disbursement_id: "RECONCILED" for i in (0, 1, 3)} | {s[4].disbursement_id: "REVERSED"}
        assert final == expected
        first_remittance = db.execute("""SELECT a.file_name FROM bridge.disbursement_recon r
                                         JOIN bridge.account_statement a ON a.statement_id = r.remittance_statement_id
                                         WHERE r.disbursement_id = %s""", (s[0].disbursement_id,)).fetchone()
        assert first_remittance == ("day1.sta",), "the duplicate debit does not move the remittance"
        reason = db.execute("SELECT reversal_reason FROM bridge.disbursement_recon WHERE disbursement_id = %s",
                            (s[4].disbursement_id,)).fetchone()[0]
        assert reason.startswith("AC01")
        row = envelope_row(db, envelope.envelope_id)
        assert row["number_of_disbursements_reconciled"] == 3
        assert row["number_of_disbursements_reversed"] == 1
        assert row["number_of_disbursements_unreconciled"] == 4
        for name in statements:
            statement_id = statement_of(db, name)["statement_id"]
            assert check_passed(instance, "statement_reconciliation", "reconciliation_adds_up", statement_id)
        # the check's audit finds a counter that no longer equals the recount, for each statement that touched it
        db.execute("UPDATE bridge.disbursement_envelope_batch_status SET number_of_disbursements_reversed = 2 "
                   "WHERE disbursement_envelope_id = %s", (envelope.envelope_id,))
        assert {name: envelopes_not_adding_up(db, statement_of(db, name)["statement_id"]) for name in statements} \
            == {"day1.sta": [envelope.envelope_id], "day2.sta": [envelope.envelope_id], "day3-eur.sta": []}
        db.execute("UPDATE bridge.disbursement_envelope_batch_status SET number_of_disbursements_reversed = 1, "
                   "number_of_disbursements_reconciled = 4 WHERE disbursement_envelope_id = %s", (envelope.envelope_id,))
        assert envelopes_not_adding_up(db, statement_of(db, "day1.sta")["statement_id"]) == [envelope.envelope_id]
        db.execute("UPDATE bridge.disbursement_envelope_batch_status SET number_of_disbursements_reconciled = 3 "
                   "WHERE disbursement_envelope_id = %s", (envelope.envelope_id,))
        assert envelopes_not_adding_up(db, statement_of(db, "day1.sta")["statement_id"]) == []
        db.execute("UPDATE bridge.disbursement_envelope_batch_status SET number_of_disbursements_reversed = 2 "
                   "WHERE disbursement_envelope_id = %s", (envelope.envelope_id,))
        # each reconciliation recorded the envelopes it remitted or reversed disbursements of (migration 0018): the
        # same as a scan of the reconciliations naming the statement, and the audit reads them from there
        recorded = {name: statement_of(db, name)["reconciled_envelope_ids"] for name in statements}
        scanned = {name: [row[0] for row in db.execute(TOUCHED_ENVELOPES_SQL,
                                                       dict(s=statement_of(db, name)["statement_id"]))]
                   for name in statements}
        assert recorded == scanned == {"day1.sta": [envelope.envelope_id], "day2.sta": [envelope.envelope_id],
                                       "day3-eur.sta": []}
        day1 = statement_of(db, "day1.sta")["statement_id"]
        db.execute("UPDATE bridge.account_statement SET reconciled_envelope_ids = '{}' WHERE statement_id = %s",
                   (day1,))
        assert envelopes_not_adding_up(db, day1) == []
        # a statement reconciled before the migration (nothing recorded): the audit finds its envelopes by the scan
        db.execute("UPDATE bridge.account_statement SET reconciled_envelope_ids = NULL WHERE statement_id = %s",
                   (day1,))
        assert touched_envelopes(db, day1) == [envelope.envelope_id]
        assert envelopes_not_adding_up(db, day1) == [envelope.envelope_id]


# --- 4. out-of-order arrival ----------------------------------------------------------------------------------------


def normalised_recon(db: psycopg.Connection, envelope: Envelope, roles: dict[str, str]) -> list[tuple]:
    """Per disbursement position in the envelope: its state and its recon row, statement ids replaced by roles."""
    position = {d.disbursement_id: index for index, d in enumerate(envelope.disbursements)}
    rows = db.execute("""SELECT d.disbursement_id, v.disbursement_status, r.remittance_statement_id,
                                r.remittance_statement_sequence, r.remittance_page, r.remittance_entry_sequence,
                                r.remittance_entry_date, r.remittance_value_date, r.remittance_reference_number,
                                r.reversal_found, r.reversal_statement_id, r.reversal_page, r.reversal_entry_sequence,
                                r.reversal_entry_date, r.reversal_value_date, r.reversal_reason
                         FROM bridge.disbursement d LEFT JOIN bridge.disbursement_recon r USING (disbursement_id)
                         JOIN bridge.disbursement_status v USING (disbursement_id)
                         WHERE d.disbursement_envelope_id = %s""", (envelope.envelope_id,)).fetchall()
    by_reference = {d.bank_reference: index for index, d in enumerate(envelope.disbursements)}
    normalised = []
    for row in rows:
        row = list(row)
        row[0] = position[row[0]]
        row[2], row[10] = roles.get(row[2], row[2]), roles.get(row[10], row[10])
        row[8] = by_reference.get(row[8], row[8])
        normalised.append(tuple(row))
    return sorted(normalised)


def test_out_of_order_arrival_gives_the_same_result(bridge_env, db: psycopg.Connection, make_example_bank,
                                                   business_day) -> None:
    bank = make_example_bank(bank_failure_rate=0.0)
    inbox = inbox_of(bridge_env)
    with dg.DagsterInstance.ephemeral() as instance:
        in_order, reversed_order = ship(db, bank, instance, business_day, 4, envelope_ids=("ENV-A", "ENV-B"))

        def statements(envelope: Envelope) -> dict[str, bytes]:
            d = envelope.shipped()
            return {
                "debits": mt940(envelope.account, [debit(x.bank_reference, x.amount) for x in d] + [fee()],
                                statement_number=1, day=DUE),
                "reversals": mt940(envelope.account, [reversal(d[1].bank_reference, d[1].amount, "AC04",
                                                               "ACCOUNT CLOSED"),
                                                      reversal(d[2].bank_reference, d[2].amount, "MD07",
                                                               "BENEFICIARY DECEASED")],
                                   statement_number=2, day=DUE + timedelta(days=1)),
            }

        roles: dict[str, str] = {}
        for envelope, order in ((in_order, ("debits", "reversals")), (reversed_order, ("reversals", "debits"))):
            files = statements(envelope)
            for role in order:
                name = f"{envelope.envelope_id}-{role}.sta"
                copy_into_inbox(inbox, name, files[role])
                report = run_process(instance)
                assert report.success and len(report.runs) == 1, [r.error for r in report.runs]
                roles[statement_of(db, name)["statement_id"]] = role

        a = normalised_recon(db, in_order, roles)
        b = normalised_recon(db, reversed_order, roles)
        assert a == b
        assert [row[1] for row in a] == ["RECONCILED", "REVERSED", "REVERSED", "RECONCILED"]
        assert all(row[2] == "debits" for row in a), "every disbursement keeps its remittance"
        assert [row[15] for row in a] == [None, "AC04 ACCOUNT CLOSED", "MD07 BENEFICIARY DECEASED", None]
        counters = ("number_of_disbursements_reconciled", "number_of_disbursements_reversed",
                    "number_of_disbursements_unreconciled", "total_disbursement_amount_reversed")
        row_a, row_b = envelope_row(db, in_order.envelope_id), envelope_row(db, reversed_order.envelope_id)
        assert [row_a[c] for c in counters] == [row_b[c] for c in counters]
        assert (row_a["number_of_disbursements_reconciled"], row_a["number_of_disbursements_reversed"]) == (2, 2)
        assert count(db, "bridge.disbursement_error_recon") == 0
        assert_lines_accounted_for(db)


def test_a_statement_reconciled_in_steps_gives_the_same_result(bridge_env, db: psycopg.Connection,
                                                                make_example_bank, business_day, monkeypatch) -> None:
    """A large statement is reconciled RECONCILE_STEP_LINES lines at a time in one transaction. With one line per
    step, a reversal that comes before its debit and a debit repeated later in the file give exactly what the
    statement in one step gives."""
    from bridge_pipelines.reconciliation import writeback

    bank = make_example_bank(bank_failure_rate=0.0)
    inbox = inbox_of(bridge_env)
    with dg.DagsterInstance.ephemeral() as instance:
        whole, stepwise = ship(db, bank, instance, business_day, 4, envelope_ids=("ENV-A", "ENV-B"))
        roles: dict[str, str] = {}
        outcomes = []
        for envelope, step_lines in ((whole, writeback.RECONCILE_STEP_LINES), (stepwise, 1)):
            monkeypatch.setattr(writeback, "RECONCILE_STEP_LINES", step_lines)
            d = envelope.shipped()
            name = f"{envelope.envelope_id}.sta"
            copy_into_inbox(inbox, name, mt940(envelope.account, [
                reversal(d[1].bank_reference, d[1].amount, "AC04", "ACCOUNT CLOSED"),  # before its debit
                *[debit(x.bank_reference, x.amount) for x in d],
                debit(d[0].bank_reference, d[0].amount),                                # DUPLICATE_DISBURSEMENT
                debit(UNKNOWN_REFERENCE, "10.00"),                                      # INVALID_RECONCILIATION_ID
                fee(),                                                                  # unrelated
            ], statement_number=1, day=DUE))
            report = run_process(instance)
            assert report.success and len(report.runs) == 1, [r.error for r in report.runs]
            statement = statement_of(db, name)
            roles[statement["statement_id"]] = "the statement"
            errors = db.execute("SELECT entry_sequence, error_reason, error_detail FROM bridge.disbursement_error_recon "
                                "WHERE statement_id = %s ORDER BY entry_sequence", (statement["statement_id"],))
            outcomes.append((
                normalised_recon(db, envelope, roles),
                [(seq, reason, detail.replace(d[0].bank_reference, "the first debit's reference"))
                 for seq, reason, detail in errors],
                [statement[c] for c in ("number_of_lines", "number_of_lines_reconciled", "number_of_lines_unrelated",
                                        "number_of_lines_in_error")],
                {c: envelope_row(db, envelope.envelope_id)[c] for c in (
                    "number_of_disbursements_reconciled", "number_of_disbursements_reversed",
                    "total_disbursement_amount_reconciled", "total_disbursement_amount_reversed")}))
            assert check_passed(instance, "statement_reconciliation", "reconciliation_adds_up", statement["statement_id"])
    assert outcomes[0] == outcomes[1]
    recon, errors, lines, counters = outcomes[1]
    assert [row[1] for row in recon] == ["RECONCILED", "REVERSED", "RECONCILED", "RECONCILED"]
    assert [e[1] for e in errors] == ["DUPLICATE_DISBURSEMENT", "INVALID_RECONCILIATION_ID"]
    assert lines == [8, 5, 1, 2]
    assert (counters["number_of_disbursements_reconciled"], counters["number_of_disbursements_reversed"]) == (3, 1)
    assert_lines_accounted_for(db)


# --- 5. multi-page statements ---------------------------------------------------------------------------------------


def test_multi_page_statements_reconcile_and_a_broken_chain_is_quarantined(
        bridge_env, db: psycopg.Connection, make_example_bank, business_day) -> None:
    bank = make_example_bank(bank_failure_rate=0.25, bank_statement_page_size=4)
    inbox = inbox_of(bridge_env)
    with dg.DagsterInstance.ephemeral() as instance:
        (envelope,) = ship(db, bank, instance, business_day, 12)
        with bank.client() as client:
            client.close_day(DUE)
        written = [p.name for p in inbox.glob("*.sta")]
        assert len(written) == 1
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]
        statement = statement_of(db, written[0])
        assert statement["statement_process_status"] == "RECONCILED"
        assert statement["number_of_pages"] >= 4
        returned = count(db, "example_bank.ledger_entry WHERE kind = 'REVERSAL'")
        assert returned > 0, "the bank fails a quarter of the accounts"
        assert states(db, envelope.envelope_id) == {"RECONCILED": 12 - returned, "REVERSED": returned}
        pages = db.execute("SELECT DISTINCT remittance_statement_sequence FROM bridge.disbursement_recon").fetchall()
        assert len(pages) >= 3, "payments are reconciled from every page"
        assert count(db, "bridge.disbursement_error_recon") == 0
        assert_lines_accounted_for(db)
        assert envelope_row(db, envelope.envelope_id)["number_of_disbursements_unreconciled"] == 0

        recon_before = recon_rows(db)
        extra = [credit("10.00"), credit("20.00"), fee(), debit(UNKNOWN_REFERENCE, "3.00"), credit("5.00")]
        broken = mt940(envelope.account, extra, statement_number=7, page_size=2, break_chain_at=1,
                       day=DUE + timedelta(days=1))
        copy_into_inbox(inbox, "broken-chain.sta", broken)
        report = run_process(instance)
        assert report.success
        row = statement_of(db, "broken-chain.sta")
        assert (row["statement_process_status"], row["statement_process_error_code"]) == ("ERROR",
                                                                                          "PAGE_CHAIN_BROKEN")
        assert "PAGE_CHAIN_BROKEN" in (inbox / "quarantine" / "broken-chain.sta.reason.txt").read_text()
        assert recon_rows(db) == recon_before
        assert count(db, f"bridge.statement_unrelated_line WHERE statement_id = '{row['statement_id']}'") == 0
        assert count(db, "bridge.disbursement_error_recon") == 0


# --- 6. batch bookings ----------------------------------------------------------------------------------------------


def test_batch_bookings_reconcile_every_payment_of_the_batch(
        bridge_env, db: psycopg.Connection, make_example_bank, business_day, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_PAYMENT_BATCH_SIZE", "4")
    bank = make_example_bank(bank_failure_rate=0.2)
    inbox = inbox_of(bridge_env)
    with dg.DagsterInstance.ephemeral() as instance:
        (envelope,) = ship(db, bank, instance, business_day, 10)
        batches = {d.batch for d in envelope.disbursements}
        assert len(batches) == 3 and None not in batches
        with bank.client() as client:
            client.set_options(batch_booking=True)
            client.close_day(DUE)
        (path,) = inbox.glob("*.sta")
        text = path.read_text()
        assert text.count("/PREF/PB") == 3 and "/NAME/" not in text, "one debit line per batch"
        report = run_process(instance)
        assert report.success, [r.error for r in report.runs]

        returned = count(db, "example_bank.ledger_entry WHERE kind = 'REVERSAL'")
        assert returned > 0, "the bank fails a fifth of the accounts"
        assert states(db, envelope.envelope_id) == {"RECONCILED": 10 - returned, "REVERSED": returned}
        recon = db.execute("""SELECT r.bank_disbursement_batch_id, d.shipment_batch_id, r.remittance_entry_sequence,
                                     r.remittance_page, r.reversal_found
                              FROM bridge.disbursement_recon r JOIN bridge.disbursement d USING (disbursement_id)
                              WHERE d.disbursement_envelope_id = %s""", (envelope.envelope_id,)).fetchall()
        assert len(recon) == 10, "every payment has a remittance"
        line_of_batch: dict[str, tuple] = {}
        for recon_batch, shipped_batch, entry_sequence, page, _ in recon:
            assert recon_batch == shipped_batch
            line_of_batch.setdefault(shipped_batch, (page, entry_sequence))
            assert line_of_batch[shipped_batch] == (page, entry_sequence), "all members share their batch's line"
        assert len(set(line_of_batch.values())) == 3
        assert sum(1 for row in recon if row[4]) == returned
        statement = statement_of(db, path.name)
        assert statement["number_of_lines_reconciled"] == 3 + returned
        assert count(db, "bridge.disbursement_error_recon") == 0
        assert_lines_accounted_for(db)
        assert envelope_row(db, envelope.envelope_id)["number_of_disbursements_unreconciled"] == 0


# --- 7. inbox safety ------------------------------------------------------------------------------------------------


def _program_funded_from(db: psycopg.Connection, account: str) -> None:
    """A program whose sponsor account is `account`: statements of that account are a program's (the integrity check)."""
    db.execute("""INSERT INTO bridge.benefit_program_configuration (benefit_program_mnemonic, benefit_program_name,
                  sponsor_bank_code, sponsor_bank_account_number, sponsor_bank_account_currency,
                  disbursement_currency_code) VALUES ('SAFE', 'Safe program', 'EXBANK', %s, 'USD', 'USD')""",
               (account,))


def test_inbox_refuses_symlinks_and_oversize_files_and_ignores_temporary_names(
        bridge_env, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    account = "1000000001"
    _program_funded_from(db, account)
    monkeypatch.setenv("BRIDGE_STATEMENT_MAX_BYTES", "1000")
    inbox = inbox_of(bridge_env)
    inbox.mkdir(parents=True, exist_ok=True)
    small = mt940(account, [credit("10.00"), fee()])
    large = mt940(account, [credit("10.00")] * 20)
    assert len(small) < 1000 < len(large)

    target = tmp_path / "outside.sta"
    target.write_bytes(small)
    (inbox / "link.sta").symlink_to(target)
    (inbox / "big.sta").write_bytes(large)
    (inbox / ".hidden.sta").write_bytes(small)
    (inbox / "upload.sta.tmp").write_bytes(mt940(account, [credit("11.00")]))
    with pytest.raises(ValueError):
        safe_inbox_path(inbox, "../outside.sta")
    with pytest.raises(ValueError):
        safe_inbox_path(inbox, "quarantine/x.sta")

    with dg.DagsterInstance.ephemeral() as instance:
        report = run_process(instance)
        assert report.success and report.runs == []
        quarantine = inbox / "quarantine"
        assert (quarantine / "link.sta").is_symlink() and not (inbox / "link.sta").exists()
        assert target.read_bytes() == small, "the symlink's target is never touched"
        assert "SYMLINK_REFUSED" in (quarantine / "link.sta.reason.txt").read_text()
        assert (quarantine / "big.sta").read_bytes() == large
        assert "FILE_TOO_LARGE" in (quarantine / "big.sta.reason.txt").read_text()
        assert dict(db.execute("SELECT file_name, inbox_status FROM bridge.inbox_file").fetchall()) == {
            "link.sta": "REFUSED", "big.sta": "REFUSED"}
        assert (inbox / ".hidden.sta").exists() and (inbox / "upload.sta.tmp").exists()
        assert count(db, "bridge.account_statement") == 0

        # complete once renamed
        os.rename(inbox / ".hidden.sta", inbox / "hidden.sta")
        os.rename(inbox / "upload.sta.tmp", inbox / "upload.sta")
        report = run_process(instance)
        assert report.success and len(report.runs) == 2, [r.error for r in report.runs]
        assert {r[0]: r[1] for r in db.execute(
            "SELECT file_name, statement_process_status FROM bridge.account_statement")} == {
            "hidden.sta": "RECONCILED", "upload.sta": "RECONCILED"}
        assert count(db, "bridge.statement_unrelated_line") == 3
        assert_lines_accounted_for(db)


def test_files_dropped_together_are_registered_a_budget_of_bytes_per_scan(bridge_env, db: psycopg.Connection,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan hashes at most MAX_BYTES_PER_SCAN bytes of new files (at least one file), so that a sensor tick stays
    short when a day's statements arrive together (eleven 110 MB files took 0.98 s in one tick); the next scans take
    the rest, oldest first, and one `bridge process` pass imports every file."""
    account = "1000000001"
    _program_funded_from(db, account)
    inbox = inbox_of(bridge_env)
    files = {f"day{i}.sta": mt940(account, [credit(f"{i}.00")], statement_number=i) for i in range(1, 6)}
    for name, data in files.items():
        copy_into_inbox(inbox, name, data)
    one_file = max(len(data) for data in files.values()) + 1  # one file fits, two do not
    scans = [[r.file_name for r in register_new_files(db, inbox, 10**9, byte_budget=one_file)] for _ in range(3)]
    assert scans == [["day1.sta"], ["day2.sta"], ["day3.sta"]]
    assert [r.file_name for r in register_new_files(db, inbox, 10**9, byte_budget=10 * one_file)] == [
        "day4.sta", "day5.sta"]
    assert register_new_files(db, inbox, 10**9) == []

    for i in range(6, 9):
        copy_into_inbox(inbox, f"day{i}.sta", mt940(account, [credit(f"{i}.00")], statement_number=i))
    monkeypatch.setattr(inbox_module, "MAX_BYTES_PER_SCAN", 1)  # the sensor registers one file per tick
    with dg.DagsterInstance.ephemeral() as instance:
        report = run_process(instance)
    assert report.success, [r.error for r in report.runs]
    # the five registered above (no run and no partition yet, as after a tick that ended between registering them
    # and adding their partitions: the sensor adds it when it runs them) and the three new ones
    assert len(report.runs) == 8
    assert dict(db.execute("SELECT file_name, statement_process_status FROM bridge.account_statement").fetchall()) == {
        f"day{i}.sta": "RECONCILED" for i in range(1, 9)}
