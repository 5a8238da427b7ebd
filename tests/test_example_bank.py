"""The example sponsor bank, over real HTTP on 127.0.0.1, with its state in the test's PostgreSQL database."""

from __future__ import annotations

import re
import time
import zlib
from datetime import date, timedelta
from decimal import Decimal

import httpx
import polars as pl
import psycopg
import pytest

from bridge_pipelines.bank.example_bank import RETURN_REASON_CODES, failure_reason_for
from bridge_pipelines.bank.example_bank_client import ExampleBankClient
from bridge_pipelines.bank.protocol import (
    BankRequestRejected,
    BankUnavailable,
    Payment,
    PaymentBatch,
    ServiceUnavailable,
    SponsorBankConnector,
    connector_for,
)
from bridge_pipelines.statements.checks import check_integrity
from bridge_pipelines.statements.mt940 import parse_mt940
from tests.bank_fixtures import *  # noqa: F403
from tests.bank_fixtures import RunningBank

ACCOUNT = "PROG-0001"


def payments(references: list[str], amount: str = "100.00", *, currency: str = "EUR", account_of=None) -> pl.DataFrame:
    account_of = account_of or (lambda ref: f"9{zlib.crc32(ref.encode()) % 10**9:09d}")
    n = len(references)
    return pl.DataFrame(
        {
            "payment_reference": references,
            "disbursement_id": [f"D-{r}" for r in references],
            "amount": [amount] * n,
            "currency": [currency] * n,
            "beneficiary_name": ["Amina Okafor-Müller"] * n,
            "narrative": ["cycle 1"] * n,
            "fa_type": ["BANK_ACCOUNT"] * n,
            "bank_account_number": [account_of(r) for r in references],
            "bank_code": ["EXBANK01"] * n,
            "branch_code": ["BR001"] * n,
        }
    )


def debits_per_reference(bank: RunningBank) -> dict[str, int]:
    with psycopg.connect(bank.database_url) as conn:
        rows = conn.execute(
            "SELECT payment_reference, count(*) FROM example_bank.ledger_entry WHERE kind = 'DEBIT' GROUP BY 1"
        ).fetchall()
    return dict(rows)


def test_health_is_open_everything_else_needs_the_token(example_bank: RunningBank) -> None:
    assert httpx.get(f"{example_bank.url}/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": example_bank.token}):
        answer = httpx.post(f"{example_bank.url}/funds/check", json={}, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["code"] == "UNAUTHORIZED"
    with ExampleBankClient(example_bank.url, "not-the-token") as intruder, pytest.raises(BankRequestRejected) as refused:
        intruder.check_funds(ACCOUNT, "EUR", Decimal("1"))
    assert refused.value.code == "UNAUTHORIZED" and refused.value.status == 401


def test_funds_check_block_release(example_bank: RunningBank) -> None:
    with example_bank.client() as bank:
        assert isinstance(bank, SponsorBankConnector)
        bank.create_account(ACCOUNT, "EUR", "1000.00")
        assert bank.check_funds(ACCOUNT, "EUR", Decimal("1000.00")).available
        check = bank.check_funds(ACCOUNT, "EUR", Decimal("1000.01"))
        assert not check.available and check.available_balance == Decimal("1000.00")

        block = bank.block_funds("ENV:E1", ACCOUNT, "EUR", Decimal("600"))
        assert block.status == "BLOCKED" and block.block_reference
        again = bank.block_funds("ENV:E1", ACCOUNT, "EUR", Decimal("600"))  # idempotent on the key
        assert again.block_reference == block.block_reference
        assert bank.check_funds(ACCOUNT, "EUR", Decimal("400.00")).available
        assert not bank.check_funds(ACCOUNT, "EUR", Decimal("400.01")).available
        short = bank.block_funds("ENV:E2", ACCOUNT, "EUR", Decimal("500"))
        assert short.status == "INSUFFICIENT_FUNDS" and short.block_reference is None
        with pytest.raises(BankRequestRejected) as conflict:
            bank.block_funds("ENV:E1", ACCOUNT, "EUR", Decimal("601"))
        assert conflict.value.code == "BLOCK_KEY_CONFLICT"

        assert bank.release_funds(block.block_reference) == Decimal("600")
        assert bank.release_funds(block.block_reference) == Decimal("0")  # releasing again releases nothing
        assert bank.block_funds("ENV:E2", ACCOUNT, "EUR", Decimal("500")).status == "BLOCKED"  # retry after release
        assert bank.get_account(ACCOUNT)["available"] == "500.00"

        for call, code in (
            (lambda: bank.release_funds("BLK-NOPE"), "BLOCK_NOT_FOUND"),
            (lambda: bank.check_funds("NOBODY", "EUR", Decimal(1)), "ACCOUNT_NOT_FOUND"),
            (lambda: bank.check_funds(ACCOUNT, "USD", Decimal(1)), "CURRENCY_MISMATCH"),
        ):
            with pytest.raises(BankRequestRejected) as refused:
                call()
            assert refused.value.code == code


def test_resent_batches_and_payments_are_debited_once(make_example_bank) -> None:
    bank_server = make_example_bank(bank_failure_rate=0.0)
    with bank_server.client() as bank:
        bank.create_account(ACCOUNT, "EUR", "10000.00")
        block = bank.block_funds("ENV:E1", ACCOUNT, "EUR", Decimal("500.00"))
        first = [f"R{i}" for i in range(1, 6)]
        ack = bank.submit_payment_batch_frame("E1-0001", ACCOUNT, "EUR", block.block_reference, payments(first))
        assert ack.accepted_count == 5 and not ack.replayed
        assert ack.results["payment_reference"].to_list() == first
        assert not ack.results["duplicate"].any()

        replay = bank.submit_payment_batch_frame("E1-0001", ACCOUNT, "EUR", block.block_reference, payments(first))
        assert replay.replayed and replay.results.equals(ack.results)

        # R3 again inside another batch (a retry after a lost answer), and R7 twice in one request
        second = bank.submit_payment_batch_frame("E1-0002", ACCOUNT, "EUR", block.block_reference,
                                                 payments(["R3", "R6", "R7", "R7"]))
        assert second.results["status"].to_list() == ["ACCEPTED"] * 4
        assert second.results["duplicate"].to_list() == [True, False, False, True]

        assert debits_per_reference(bank_server) == {r: 1 for r in ["R1", "R2", "R3", "R4", "R5", "R6", "R7"]}
        stats = bank.stats()
        assert stats["payment_requests"] == 5 + 5 + 4
        assert stats["distinct_payment_references"] == 7
        assert stats["duplicate_payment_requests"] == 7
        assert stats["replayed_payment_requests"] == 5
        assert stats["batches"] == 2 and stats["batch_requests"] == 3
        account = bank.get_account(ACCOUNT)
        assert Decimal(account["balance"]) == Decimal("10000.00") - 7 * Decimal("100.00")
        assert Decimal(account["blocked"]) == 0  # the block paid the first five payments

        queried = bank.query_batch("E1-0002")
        assert queried is not None and queried.results.equals(second.results)
        assert bank.query_batch("NO-SUCH-BATCH") is None

        # the object entry point sends the same thing
        objects = PaymentBatch("E1-0003", ACCOUNT, "EUR", None, [
            Payment("R8", "D-R8", Decimal("12.34"), "EUR", "Ana", "cycle 1", "MOBILE_WALLET",
                    mobile_number="+254700000001", wallet_provider="MPESA"),
        ])
        assert bank.submit_payment_batch(objects).accepted_count == 1


def test_invalid_payments_and_insufficient_funds_are_rejected_per_payment(make_example_bank) -> None:
    bank_server = make_example_bank(bank_failure_rate=0.0)
    with bank_server.client() as bank:
        bank.create_account(ACCOUNT, "EUR", "250.00")
        frame = payments(["OK1", "bad-ref", "USD1", "ZERO", "NOACCT", "OK2", "OK3"]).with_columns(
            pl.when(pl.col("payment_reference") == "USD1").then(pl.lit("USD")).otherwise(pl.col("currency")).alias("currency"),
            pl.when(pl.col("payment_reference") == "ZERO").then(pl.lit("0")).otherwise(pl.col("amount")).alias("amount"),
            pl.when(pl.col("payment_reference") == "NOACCT").then(None).otherwise(pl.col("bank_account_number"))
            .alias("bank_account_number"),
        )
        ack = bank.submit_payment_batch_frame("B-1", ACCOUNT, "EUR", None, frame)
        assert dict(zip(ack.results["payment_reference"], ack.results["reason_code"], strict=True)) == {
            "OK1": None, "bad-ref": "INVALID_REFERENCE", "USD1": "CURRENCY_MISMATCH", "ZERO": "INVALID_AMOUNT",
            "NOACCT": "INVALID_ACCOUNT", "OK2": None, "OK3": "INSUFFICIENT_FUNDS",
        }
        assert ack.accepted_count == 2 and ack.rejected_count == 5
        bank.top_up(ACCOUNT, "EUR", "100.00")
        retry = bank.submit_payment_batch_frame("B-2", ACCOUNT, "EUR", None, payments(["OK3"]))
        assert retry.status_of("OK3") == ("ACCEPTED", None)
        assert debits_per_reference(bank_server) == {"OK1": 1, "OK2": 1, "OK3": 1}

        # amounts travel as strings: a JSON number is refused
        raw = httpx.post(f"{bank_server.url}/payments/batches", headers={"Authorization": f"Bearer {bank_server.token}"},
                         json={"batch_id": "B-3", "account_number": ACCOUNT, "currency": "EUR",
                               "payments": [{"payment_reference": "F1", "amount": 10.5}]})
        assert raw.status_code == 400 and "amount" in raw.json()["message"]
        with pytest.raises(TypeError):
            bank.submit_payment_batch_frame("B-4", ACCOUNT, "EUR", None, payments(["F2"]).with_columns(pl.lit(1.5).alias("amount")))
        with pytest.raises(BankRequestRejected) as unknown:
            bank.submit_payment_batch_frame("B-5", "NOBODY", "EUR", None, payments(["F3"]))
        assert unknown.value.code == "ACCOUNT_NOT_FOUND"


def test_destination_failures_are_deterministic_and_reversed_at_close_day(make_example_bank) -> None:
    bank_server = make_example_bank(bank_failure_rate=0.25, bank_seed=7)
    references = [f"P{i:04d}" for i in range(200)]
    account_of = {r: f"{5_000_000 + i}" for i, r in enumerate(references)}.__getitem__
    expected = {r: failure_reason_for(account_of(r), 7, 0.25) for r in references}
    failing = {r: reason for r, reason in expected.items() if reason}
    assert 20 < len(failing) < 80 and {r: bank_server.failure_reason_for(account_of(r)) for r in references} == expected

    with bank_server.client() as bank:
        bank.create_account(ACCOUNT, "EUR", "100000.00")
        ack = bank.submit_payment_batch_frame("F-1", ACCOUNT, "EUR", None, payments(references, "10.50", account_of=account_of))
        assert ack.accepted_count == 200  # failures happen at the destination, after acceptance
        closed = bank.close_day()

    [path] = closed["files"]
    inbox = bank_server.inbox
    assert [p.name for p in inbox.iterdir()] == [re.sub(r".*/", "", path)]  # no temporary file left behind
    assert re.fullmatch(rf"{ACCOUNT}_\d{{8}}_1\.sta", inbox.joinpath(path).name)
    parsed = parse_mt940(open(path, "rb").read())
    assert parsed.ok, parsed.problems
    assert check_integrity(parsed) == []
    lines = parsed.lines
    reversals = lines.filter(pl.col("mark") == "RD")
    assert dict(zip(reversals["customer_reference"], reversals["return_reason"].str.slice(0, 4), strict=True)) == {
        r: RETURN_REASON_CODES[reason] for r, reason in failing.items()
    }
    debits = lines.filter((pl.col("mark") == "D") & pl.col("customer_reference").str.starts_with("P"))
    assert debits.height == 200 and set(debits["end_to_end_reference"]) == set(references)
    assert lines.filter(pl.col("mark") == "C").height == 1  # the account funding
    assert lines.filter(pl.col("transaction_type") == "NCHG")["customer_reference"].to_list() == ["NONREF"]
    opening, closing = parsed.pages[0].opening_balance, parsed.pages[-1].closing_balance
    assert opening.signed == 0
    assert opening.signed + lines["signed_amount"].sum() == closing.signed
    expected_balance = Decimal("100000.00") - 200 * Decimal("10.50") + len(failing) * Decimal("10.50") - Decimal("1.00")
    assert closing.signed == expected_balance
    with ExampleBankClient(bank_server.url, bank_server.token) as bank:
        assert Decimal(bank.get_account(ACCOUNT)["balance"]) == expected_balance
        assert bank.close_day()["files"] == []  # nothing new: no statement


def test_multi_page_statements_batch_booking_and_next_day_opening(make_example_bank) -> None:
    bank_server = make_example_bank(bank_failure_rate=0.0, bank_statement_page_size=5)
    today = bank_server.settings.business_date
    with bank_server.client() as bank:
        bank.create_account(ACCOUNT, "EUR", "5000.00")
        bank.submit_payment_batch_frame("M-1", ACCOUNT, "EUR", None, payments([f"M{i}" for i in range(12)], "7.25"))
        day1 = bank.close_day(today)["statements"][0]
        assert day1["number_of_lines"] == 14 and day1["number_of_pages"] == 3  # funding + 12 debits + fee

        bank.set_options(batch_booking=True)
        bank.submit_payment_batch_frame("M-2", ACCOUNT, "EUR", None, payments([f"N{i}" for i in range(30)], "1.10"))
        day2 = bank.close_day(today + timedelta(days=1))["statements"][0]

    first = parse_mt940(open(day1["file"], "rb").read())
    assert first.ok and check_integrity(first) == []
    assert [p.sequence_number for p in first.pages] == ["1", "2", "3"]
    assert [p.opening_is_intermediate for p in first.pages] == [False, True, True]
    assert [p.closing_is_intermediate for p in first.pages] == [True, True, False]
    for before, after in zip(first.pages, first.pages[1:]):
        assert before.closing_balance.signed == after.opening_balance.signed

    second = parse_mt940(open(day2["file"], "rb").read())
    assert second.ok and check_integrity(second) == []
    assert second.pages[0].statement_number == "2"
    assert second.pages[0].opening_balance.signed == first.pages[-1].closing_balance.signed  # next day opens with it
    assert day2["file"].endswith(f"_{today + timedelta(days=1):%Y%m%d}_1.sta")
    [batch_line] = second.lines.filter(pl.col("batch_reference").is_not_null()).rows(named=True)
    assert batch_line["batch_reference"] == "M-2" and batch_line["batch_count"] == 30
    assert batch_line["amount"] == Decimal("33.00") and batch_line["mark"] == "D"
    assert second.pages[-1].closing_balance.signed == Decimal("5000.00") - 12 * Decimal("7.25") - 33 - 2


def test_a_day_with_more_entries_than_a_statement_takes_is_sent_as_several_chained_statements(
        make_example_bank) -> None:
    bank_server = make_example_bank(bank_failure_rate=0.0, bank_statement_page_size=2, bank_statement_max_entries=5)
    with bank_server.client() as bank:
        bank.create_account(ACCOUNT, "EUR", "5000.00")
        bank.submit_payment_batch_frame("S-1", ACCOUNT, "EUR", None, payments([f"S{i}" for i in range(12)], "7.25"))
        statements = bank.close_day()["statements"]
        assert bank.close_day()["statements"] == []
        balance = Decimal(bank.get_account(ACCOUNT)["balance"])
    # funding + 12 debits + fee = 14 entries: 5 + 5 + 4, one file each, numbered on
    assert [s["number_of_entries"] for s in statements] == [5, 5, 4]
    assert [s["statement_number"] for s in statements] == [1, 2, 3]
    assert len({s["file"] for s in statements}) == 3
    parsed = [parse_mt940(open(s["file"], "rb").read()) for s in statements]
    assert all(p.ok and check_integrity(p) == [] for p in parsed)
    assert [p.pages[0].statement_number for p in parsed] == ["1", "2", "3"]
    assert parsed[0].pages[0].opening_balance.signed == 0
    for before, after in zip(parsed, parsed[1:]):
        assert before.pages[-1].closing_balance.signed == after.pages[0].opening_balance.signed
    assert parsed[-1].pages[-1].closing_balance.signed == balance == Decimal("5000.00") - 12 * Decimal("7.25") - 1
    references = [r for p in parsed for r in p.lines["end_to_end_reference"].drop_nulls().to_list()]
    assert sorted(references) == sorted(f"S{i}" for i in range(12)), "every debit reported once"


def test_camt053_statements_use_the_bridge_writer(make_example_bank) -> None:
    from bridge_pipelines.statements.camt053 import parse_camt053

    bank_server = make_example_bank(bank_failure_rate=0.0, bank_statement_format="CAMT053")
    with bank_server.client() as bank:
        bank.create_account(ACCOUNT, "EUR", "100.00")
        bank.submit_payment_batch_frame("C-1", ACCOUNT, "EUR", None, payments(["C1", "C2"], "10.00"))
        [info] = bank.close_day()["statements"]
    assert info["statement_format"] == "CAMT053" and info["file"].endswith(".xml")
    parsed = parse_camt053(open(info["file"], "rb").read())
    assert parsed.ok and check_integrity(parsed) == []
    assert set(parsed.lines["end_to_end_reference"].drop_nulls()) == {"C1", "C2"}


def test_statements_are_also_written_periodically(make_example_bank) -> None:
    bank_server = make_example_bank(bank_failure_rate=0.0, bank_statement_interval=1)
    with bank_server.client() as bank:
        bank.create_account(ACCOUNT, "EUR", "10.00")
    deadline = time.monotonic() + 10
    while not list(bank_server.inbox.glob("*.sta")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p.name.split("_")[0] for p in bank_server.inbox.glob("*.sta")] == [ACCOUNT]


def test_injected_faults_make_the_client_raise_bank_unavailable(make_example_bank) -> None:
    bank_server = make_example_bank(bank_failure_rate=0.0)
    with bank_server.client() as admin, bank_server.client(timeout=0.5) as bank:
        admin.create_account(ACCOUNT, "EUR", "1000.00")

        admin.add_fault("/funds", "error", count=1)
        with pytest.raises(BankUnavailable) as failed:
            bank.check_funds(ACCOUNT, "EUR", Decimal("1"))
        assert failed.value.status == 500 and failed.value.code == "INJECTED_FAULT"
        assert bank.check_funds(ACCOUNT, "EUR", Decimal("1")).available  # only the next request failed

        admin.add_fault("/funds", "hang", seconds=1.5)
        with pytest.raises(BankUnavailable) as hung:
            bank.block_funds("K1", ACCOUNT, "EUR", Decimal("1"))
        assert hung.value.code == "TIMEOUT"

        # the bank books the batch, the answer is lost: the retry gets the same acknowledgement, no second debit
        admin.add_fault("/payments", "process_then_hang", seconds=1.5)
        with pytest.raises(ServiceUnavailable):
            bank.submit_payment_batch_frame("H-1", ACCOUNT, "EUR", None, payments(["H1", "H2"]))
        retry = bank.submit_payment_batch_frame("H-1", ACCOUNT, "EUR", None, payments(["H1", "H2"]))
        assert retry.replayed and retry.accepted_count == 2
        assert debits_per_reference(bank_server) == {"H1": 1, "H2": 1}

    with ExampleBankClient("http://127.0.0.1:9", "x", timeout=1) as nobody, pytest.raises(BankUnavailable) as down:
        nobody.check_funds(ACCOUNT, "EUR", Decimal("1"))
    assert down.value.code == "CONNECTION_FAILED"


def test_connector_for_uses_the_example_bank_from_settings(example_bank: RunningBank) -> None:
    from bridge_pipelines.config import load_settings

    connector = connector_for("ANY-BANK", load_settings())  # the fixture pointed BRIDGE_BANK_URL at the bank
    try:
        assert isinstance(connector, ExampleBankClient) and connector.base_url == example_bank.url
        with pytest.raises(BankRequestRejected):
            connector.check_funds("NOBODY", "EUR", Decimal("1"))
    finally:
        connector.close()
    assert date.fromisoformat(ExampleBankClient(example_bank.url, example_bank.token).close_day()["business_date"])


def test_a_ledger_made_before_references_compared_byte_wise_is_converted_once(database_url: str, db) -> None:
    """The ledger's payment references compare byte-wise (COLLATE "C"); a ledger created with the database's default
    collation is converted when the bank starts (its view made again), and starting again changes nothing."""
    from bridge_pipelines.bank.example_bank.db import ensure_schema

    def collation() -> str:
        return db.execute("SELECT c.collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation "
                          "WHERE a.attrelid = 'example_bank.ledger_entry'::regclass "
                          "AND a.attname = 'payment_reference'").fetchone()[0]

    ensure_schema(database_url)
    assert collation() == "C"
    db.execute("DROP VIEW example_bank.ledger_entry_statement")
    db.execute("ALTER TABLE example_bank.ledger_entry ALTER COLUMN payment_reference TYPE text COLLATE \"default\"")
    db.execute("INSERT INTO example_bank.ledger_entry (account_number, booking_date, value_date, amount, kind, "
               "payment_reference) VALUES ('ACC-1', current_date, current_date, -5, 'DEBIT', 'G1')")
    assert collation() == "default"
    ensure_schema(database_url)
    assert collation() == "C"
    ensure_schema(database_url)
    assert db.execute("SELECT payment_reference FROM example_bank.ledger_entry_statement").fetchall() == [("G1",)]
    with pytest.raises(psycopg.errors.UniqueViolation):  # still one debit per reference
        db.execute("INSERT INTO example_bank.ledger_entry (account_number, booking_date, value_date, amount, kind, "
                   "payment_reference) VALUES ('ACC-1', current_date, current_date, -5, 'DEBIT', 'G1')")
