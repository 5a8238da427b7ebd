"""Small builders for staged rows used by the intake tests."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import psycopg

from bridge_pipelines.intake.service import IntakeSummary, run_intake
from bridge_pipelines.intake.staging import stage_row, staged_result

BUSINESS_DATE = date(2026, 12, 1)
SCHEDULE_DATE = BUSINESS_DATE + timedelta(days=10)


def program(conn: psycopg.Connection, mnemonic: str = "CASH", currency: str = "USD", **overrides) -> int:
    values = dict(
        benefit_program_mnemonic=mnemonic, benefit_program_name=f"{mnemonic} transfer", funding_org_code="MOF",
        funding_org_name="Ministry of Finance", sponsor_bank_code="EXAMPLE",
        sponsor_bank_account_number=f"ACC-{mnemonic}", sponsor_bank_branch_code="001",
        sponsor_bank_account_currency=currency, disbursement_currency_code=currency,
        id_mapper_resolution_required=False,
    )
    values.update(overrides)
    return stage_row(conn, "benefit_program", **values)


def envelope(conn: psycopg.Connection, envelope_id: str = "ENV-1", mnemonic: str = "CASH", **overrides) -> int:
    values = dict(
        disbursement_envelope_id=envelope_id, benefit_program_mnemonic=mnemonic, disbursement_frequency="Monthly",
        cycle_code_mnemonic="2026-12", number_of_beneficiaries=3, number_of_disbursements=3,
        total_disbursement_amount=Decimal("300.00"), disbursement_currency_code="USD",
        disbursement_schedule_date=SCHEDULE_DATE,
    )
    values.update(overrides)
    return stage_row(conn, "disbursement_envelope", **values)


def disbursement(conn: psycopg.Connection, disbursement_id: str, envelope_id: str = "ENV-1",
                 amount: Decimal | str = Decimal("100.00"), **overrides) -> int:
    values = dict(
        disbursement_id=disbursement_id, disbursement_envelope_id=envelope_id, mis_reference_number=f"MIS-{disbursement_id}",
        beneficiary_id=f"account:{disbursement_id}@EXAMPLE", beneficiary_name=f"Beneficiary {disbursement_id}",
        disbursement_amount=Decimal(amount), narrative="December cash transfer",
    )
    values.update(overrides)
    return stage_row(conn, "disbursement", **values)


def intake(conn: psycopg.Connection, business_date: date = BUSINESS_DATE, sla_days: int = 0) -> IntakeSummary:
    return run_intake(conn, business_date, sla_days)


def result(conn: psycopg.Connection, table: str, staging_id: int) -> tuple[str, str | None]:
    status, code, _detail = staged_result(conn, table, staging_id)
    return status, code


# --- Extensions for the intake rule, view and scale tests -------------------------------------------------------

STAGING_TABLES = ("benefit_program", "disbursement_envelope", "envelope_amendment", "disbursement",
                  "envelope_cancellation", "disbursement_cancellation")


def amendment(conn: psycopg.Connection, envelope_id: str = "ENV-1", **values) -> int:
    return stage_row(conn, "envelope_amendment", disbursement_envelope_id=envelope_id, **values)


def cancel_envelope(conn: psycopg.Connection, envelope_id: str = "ENV-1") -> int:
    return stage_row(conn, "envelope_cancellation", disbursement_envelope_id=envelope_id)


def cancel_disbursement(conn: psycopg.Connection, disbursement_id: str) -> int:
    return stage_row(conn, "disbursement_cancellation", disbursement_id=disbursement_id)


def full_result(conn: psycopg.Connection, table: str, staging_id: int) -> tuple[str, str | None, str | None]:
    return staged_result(conn, table, staging_id)


def is_sentence(text: str | None) -> bool:
    """Human words, not just an error code: at least two words, some lower case."""
    return bool(text) and len(text.split()) >= 2 and any(c.islower() for c in text)


def assert_accepted(conn: psycopg.Connection, table: str, staging_id: int, detail_contains: str | None = None) -> str:
    status, code, detail = staged_result(conn, table, staging_id)
    assert (status, code) == ("ACCEPTED", None), f"staging.{table} #{staging_id}: {status} {code}: {detail}"
    assert is_sentence(detail), f"staging.{table} #{staging_id}: detail {detail!r} is not a sentence"
    if detail_contains is not None:
        assert detail_contains.lower() in detail.lower(), f"{detail_contains!r} not in {detail!r}"
    return detail


def assert_rejected(conn: psycopg.Connection, table: str, staging_id: int, code: str,
                    detail_contains: str | None = None) -> str:
    status, actual, detail = staged_result(conn, table, staging_id)
    assert (status, actual) == ("REJECTED", code), f"staging.{table} #{staging_id}: {status} {actual}: {detail}"
    assert is_sentence(detail), f"staging.{table} #{staging_id}: detail {detail!r} is not a sentence"
    assert code not in detail, f"the detail repeats the code instead of explaining it: {detail!r}"
    if detail_contains is not None:
        assert detail_contains.lower() in detail.lower(), f"{detail_contains!r} not in {detail!r}"
    return detail


def ready_envelope(conn: psycopg.Connection, envelope_id: str = "ENV-1", mnemonic: str = "CASH",
                   currency: str = "USD", **envelope_overrides) -> None:
    """A configured program and an accepted envelope (one intake run)."""
    if conn.execute("SELECT 1 FROM bridge.benefit_program_configuration WHERE benefit_program_mnemonic = %s",
                    (mnemonic,)).fetchone() is None:
        program(conn, mnemonic, currency=currency)
    envelope_overrides.setdefault("disbursement_currency_code", currency)
    sid = envelope(conn, envelope_id, mnemonic, **envelope_overrides)
    intake(conn)
    status, code, detail = staged_result(conn, "disbursement_envelope", sid)
    assert status == "ACCEPTED", f"setup envelope {envelope_id} rejected: {code} {detail}"


def received(conn: psycopg.Connection, envelope_id: str = "ENV-1") -> tuple[int, Decimal]:
    return conn.execute(
        "SELECT number_of_disbursements_received, total_disbursement_amount_received "
        "FROM bridge.disbursement_envelope_batch_status WHERE disbursement_envelope_id = %s",
        (envelope_id,)).fetchone()


def recount(conn: psycopg.Connection, envelope_id: str = "ENV-1") -> tuple[int, Decimal]:
    """What the counters must say, recounted from bridge.disbursement (cancelled disbursements give back)."""
    return conn.execute(
        "SELECT count(*), coalesce(sum(disbursement_amount), 0) FROM bridge.disbursement "
        "WHERE disbursement_envelope_id = %s AND disbursement_status <> 'CANCELLED'", (envelope_id,)).fetchone()


def start_disbursing(conn: psycopg.Connection, envelope_id: str = "ENV-1") -> None:
    """What the pipeline does when it starts working on an envelope with the bank."""
    conn.execute("UPDATE bridge.disbursement_envelope_batch_status SET disbursement_started_at = now() "
                 "WHERE disbursement_envelope_id = %s", (envelope_id,))


def count_rows(conn: psycopg.Connection, table: str, where: str = "true", params: tuple = ()) -> int:
    return conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]


def staged_data(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every staged row's PBMS data (staging_id, staged_at and the PBMS columns), per staging table."""
    from bridge_pipelines.intake.staging import COLUMNS

    out = {}
    for table in STAGING_TABLES:
        cols = ", ".join(("staging_id", "staged_at") + COLUMNS[table])
        # ::text keeps the exact representation (a numeric's scale, a string's bytes).
        texts = ", ".join(f"{c}::text" for c in ("staging_id", "staged_at") + COLUMNS[table])
        out[table] = conn.execute(f"SELECT {cols}, {texts} FROM staging.{table} ORDER BY 1").fetchall()
    return out


def assert_all_final(conn: psycopg.Connection) -> None:
    """Every staged row ended ACCEPTED or REJECTED, with exactly one code iff REJECTED, a sentence, a timestamp."""
    for table in STAGING_TABLES:
        rows = conn.execute(
            f"SELECT staging_id, intake_status, intake_error_code, intake_error_detail, intake_processed_at "
            f"FROM staging.{table}").fetchall()
        for staging_id, status, code, detail, processed_at in rows:
            where = f"staging.{table} #{staging_id}"
            assert status in ("ACCEPTED", "REJECTED"), f"{where} is {status}"
            assert (status == "REJECTED") == (code is not None), f"{where}: {status} with code {code}"
            assert code is None or (code.isupper() and " " not in code), f"{where}: code {code!r} is not one code"
            assert is_sentence(detail), f"{where}: detail {detail!r}"
            assert processed_at is not None, f"{where}: no intake_processed_at"


def assert_results(conn: psycopg.Connection, table: str, cases: dict) -> None:
    """cases: label -> (staging_id, expected code or None for ACCEPTED). Checks all, reports every mismatch, and
    checks each detail is a sentence that does not merely repeat the code."""
    wrong = {}
    for label, (staging_id, code) in cases.items():
        status, actual, detail = staged_result(conn, table, staging_id)
        want = ("ACCEPTED", None) if code is None else ("REJECTED", code)
        if (status, actual) != want or not is_sentence(detail) or (code is not None and code in detail):
            wrong[label] = dict(want=want, got=(status, actual), detail=detail)
    assert not wrong, wrong
