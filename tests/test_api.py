"""The synchronous PBMS API, against a real server on 127.0.0.1 and a real database.

Request bodies come from tests/api_samples/, shaped exactly like the Postman collection of OpenG2P's G2P Bridge
test repository (their "{{PLACEHOLDER}}" values are filled in here, and each request gets its own message_id and
our sender: the collection sends the literal "string" for both, which replay protection would rightly refuse).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings as hypothesis_settings

from bridge_pipelines.api.app import create_api_app
from bridge_pipelines.api.openapi import openapi_document
from bridge_pipelines.config import ConfigError, Settings, load_settings
from bridge_pipelines.serving import start_server
from bridge_pipelines.statements.inbox import register_new_files, statement_id_for

SAMPLES = Path(__file__).parent / "api_samples"
SENDER, TOKEN = "openg2p-pbms", "pbms-token-3f9c2a7e51d04b8c"
OTHER_SENDER, OTHER_TOKEN = "second-pbms", "second-token-a81d4e6f0b2c9375"
BUSINESS_DATE = date(2026, 12, 1)
SCHEDULE_DATE = (BUSINESS_DATE + timedelta(days=10)).isoformat()
PAST_DATE = (BUSINESS_DATE - timedelta(days=1)).isoformat()
PROGRAM = "MOW-FOOD"
MAX_BODY = 256 * 1024

MT940 = (":20:API-STMT-1\r\n:25:ACC-MOW-FOOD\r\n:28C:1/1\r\n:60F:C261201USD10000,00\r\n"
         ":61:2612011201D1000,00NTRFNONREF//B1\r\n:86:payment\r\n:62F:C261201USD9000,00\r\n-").encode()


# --- fixtures and helpers -----------------------------------------------------------------------------------------

def _fill(value: Any, subs: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, subs) for v in value]
    if isinstance(value, str) and value.startswith("{{") and value.endswith("}}"):
        return subs.get(value[2:-2], value)
    return value


def sample(name: str, sender: str = SENDER, message_id: str | None = None, **subs: Any) -> dict:
    """An OpenG2P-shaped request body from tests/api_samples with its placeholders filled."""
    defaults = {"PROGRAM_MNEMONIC": PROGRAM, "SPONSOR_ACCOUNT": f"ACC-{PROGRAM}",
                "DISBURSEMENT_SCHEDULE_DATE": SCHEDULE_DATE, "INVALID_PROGRAM_MNEMONIC": "NO-SUCH-PROGRAM",
                "INVALID_DISBURSEMENT_SCHEDULE_DATE": PAST_DATE, "INVALID_ENVELOPE_ID": "NO-SUCH-ENVELOPE",
                "INVALID_DISBURSEMENT_ID": "NO-SUCH-DISBURSEMENT"}
    body = _fill(json.loads((SAMPLES / f"{name}.json").read_text()), {**defaults, **subs})
    body["header"]["message_id"] = message_id or f"msg-{uuid.uuid4()}"
    body["header"]["sender_id"] = sender
    return body


@dataclasses.dataclass
class Api:
    url: str          # including the root path
    settings: Settings
    database_url: str
    http: httpx.Client

    def post(self, action: str, body: Any, token: str | None = TOKEN, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if not isinstance(body, (bytes, str)) and "content" not in kwargs and "files" not in kwargs:
            kwargs["content"] = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, (bytes, str)):
            kwargs["content"] = body
        return self.http.post(f"{self.url}/{action}", headers=headers, **kwargs)

    def call(self, action: str, body: Any, token: str = TOKEN) -> dict:
        response = self.post(action, body, token=token)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["header"]["message_id"] == body["header"]["message_id"]
        assert answer["header"]["action"] == body["header"]["action"]
        assert answer["header"]["status"] in ("succ", "rjct")
        return answer


def api_settings(**overrides: Any) -> Settings:
    values = dict(api_tokens=((SENDER, TOKEN), (OTHER_SENDER, OTHER_TOKEN)), business_date_override=BUSINESS_DATE,
                  api_max_body_bytes=MAX_BODY)
    values.update(overrides)
    return dataclasses.replace(load_settings(), **values)


def running_api(database_url: str, settings: Settings, lock_timeout_seconds: float | None = None) -> Iterator[Api]:
    app = create_api_app(database_url, settings)
    if lock_timeout_seconds is not None:  # connections are made on first use, so this applies to all of them
        app.state.api_service.pool.lock_timeout_ms = int(lock_timeout_seconds * 1000)
    server = start_server(app, name="pbms-api-test")
    try:
        with httpx.Client(timeout=60) as http:
            yield Api(server.url + settings.api_root_path, settings, database_url, http)
    finally:
        server.stop()


@pytest.fixture
def api(bridge_env: Path, database_url: str) -> Iterator[Api]:
    yield from running_api(database_url, api_settings())


def create_program(api: Api, mnemonic: str = PROGRAM) -> None:
    answer = api.call("create_benefit_program_configuration", sample(
        "create_benefit_program_configuration", PROGRAM_MNEMONIC=mnemonic, SPONSOR_ACCOUNT=f"ACC-{mnemonic}"))
    assert answer["header"]["status"] == "succ", answer


def create_envelope(api: Api, **message: Any) -> str:
    body = sample("create_disbursement_envelope")
    body["message"].update(message)
    answer = api.call("create_disbursement_envelope", body)
    assert answer["header"]["status"] == "succ", answer
    return answer["message"]["disbursement_envelope_id"]


def item_codes(answer: dict) -> list[list[str] | None]:
    return [item["response_error_codes"] for item in answer["message"]]


def scalar(database_url: str, query: str, params: tuple = ()) -> Any:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchone()[0]


def rows(database_url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


def received(api: Api, envelope_id: str) -> tuple[int, Decimal]:
    return rows(api.database_url, "SELECT number_of_disbursements_received, total_disbursement_amount_received "
                "FROM bridge.disbursement_envelope_batch_status WHERE disbursement_envelope_id = %s",
                (envelope_id,))[0]


# --- happy paths and rejections, with OpenG2P's bodies -----------------------------------------------------------

def test_program_and_envelope_happy_paths_and_rejection_codes(api: Api) -> None:
    create_program(api)
    answer = api.call("create_disbursement_envelope", sample("create_disbursement_envelope"))
    assert answer["header"]["status"] == "succ"
    assert answer["header"]["status_reason_message"] is None
    assert (answer["header"]["total_count"], answer["header"]["completed_count"]) == (1, 1)
    generated = answer["message"]["disbursement_envelope_id"]
    assert uuid.UUID(generated).version == 4  # generated when absent: random, not from a clock
    assert answer["message"]["total_disbursement_amount"] == 5000
    assert scalar(api.database_url, "SELECT count(*) FROM bridge.disbursement_envelope "
                  "WHERE disbursement_envelope_id = %s", (generated,)) == 1

    kept = create_envelope(api, disbursement_envelope_id="PBMS-ENV-0001")
    assert kept == "PBMS-ENV-0001"  # client-supplied ids are kept

    def rejected(body: dict) -> str:
        answer = api.call("create_disbursement_envelope", body)
        assert answer["header"]["status"] == "rjct", answer
        assert answer["header"]["completed_count"] == 0
        return answer["header"]["status_reason_message"]

    assert rejected(sample("create_disbursement_envelope_invalid_program")) == "INVALID_PROGRAM_MNEMONIC"
    past = sample("create_disbursement_envelope_past_schedule_date", INVALID_PROGRAM_MNEMONIC=PROGRAM)
    assert rejected(past) == "INVALID_DISBURSEMENT_SCHEDULE_DATE"
    cases = {
        "INVALID_DISBURSEMENT_FREQUENCY": {"disbursement_frequency": "Hourly"},
        "INVALID_CYCLE_CODE_MNEMONIC": {"cycle_code_mnemonic": ""},
        "INVALID_NO_OF_BENEFICIARIES": {"number_of_beneficiaries": 0},
        "INVALID_NO_OF_DISBURSEMENTS": {"number_of_disbursements": 4},  # fewer than the 5 beneficiaries
        "INVALID_TOTAL_DISBURSEMENT_AMOUNT": {"total_disbursement_amount": 0},
        "INVALID_DISBURSEMENT_CURRENCY_CODE": {"disbursement_currency_code": "EUR"},
        "INVALID_DISBURSEMENT_ENVELOPE_ID": {"disbursement_envelope_id": "X" * 65},
        "DUPLICATE_DISBURSEMENT_ENVELOPE_ID": {"disbursement_envelope_id": "PBMS-ENV-0001", "cycle_code_mnemonic": "SEP"},
    }
    for code, change in cases.items():
        body = sample("create_disbursement_envelope")
        body["message"].update(change)
        assert rejected(body) == code, change
    # USD has 2 minor units: a third decimal is refused by the intake's rule, not by the API's form check
    body = sample("create_disbursement_envelope")
    body["message"]["total_disbursement_amount"] = 5000.001  # sent as the JSON number 5000.001
    assert rejected(body) == "INVALID_TOTAL_DISBURSEMENT_AMOUNT"
    # an identical re-send of a kept envelope is an accepted no-op
    assert create_envelope(api, disbursement_envelope_id="PBMS-ENV-0001") == "PBMS-ENV-0001"
    # every rejection is visible in staging too, with its code
    codes = {c for (c,) in rows(api.database_url, "SELECT intake_error_code FROM staging.disbursement_envelope "
                                "WHERE intake_status = 'REJECTED'")}
    assert codes >= set(cases) | {"INVALID_PROGRAM_MNEMONIC", "INVALID_DISBURSEMENT_SCHEDULE_DATE"}


def test_create_disbursements_happy_path_and_rejection_codes(api: Api) -> None:
    create_program(api)
    envelope = create_envelope(api)
    answer = api.call("create_disbursements", sample("create_disbursements", ENVELOPE_ID=envelope))
    assert answer["header"]["status"] == "succ"
    assert (answer["header"]["total_count"], answer["header"]["completed_count"]) == (2, 2)
    ids = [item["disbursement_id"] for item in answer["message"]]
    assert len(set(ids)) == 2 and all(uuid.UUID(i).version == 4 for i in ids)
    assert item_codes(answer) == [None, None]
    assert received(api, envelope) == (2, Decimal("2000"))

    dup = api.call("create_disbursements", sample("create_disbursements_duplicate_beneficiary_id",
                                                  ENVELOPE_ID=envelope))
    assert dup["header"]["status"] == "succ"  # the same beneficiary twice is allowed, as in OpenG2P

    def rejected(name: str, change: dict | None = None, **subs: Any) -> list:
        body = sample(name, ENVELOPE_ID=envelope, **subs)
        for item in body["message"]:
            item.update(change or {})
        answer = api.call("create_disbursements", body)
        assert answer["header"]["status"] == "rjct", answer
        assert answer["header"]["status_reason_message"] == "INVALID_DISBURSEMENT_PAYLOAD"
        return item_codes(answer)

    assert rejected("create_disbursements_invalid_envelope") == [["DISBURSEMENT_ENVELOPE_NOT_FOUND"]]
    # OpenG2P accepts an empty beneficiary_id; the bridge's documented rule refuses it
    assert rejected("create_disbursements_no_beneficiary_id") == [["INVALID_BENEFICIARY_ID"]]
    assert rejected("create_disbursements_negative_amount") == [["INVALID_BENEFICIARY_ID"]]  # first rule broken
    assert rejected("create_disbursements_negative_amount", {"beneficiary_id": "777"}) == \
        [["INVALID_DISBURSEMENT_AMOUNT"]]
    assert rejected("create_disbursements_negative_amount", {"beneficiary_id": "777", "disbursement_amount": 0}) \
        == [["INVALID_DISBURSEMENT_AMOUNT"]]
    assert rejected("create_disbursements_total_exceeds_declared", {"beneficiary_id": "777"}) == \
        [["TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED"]]
    assert rejected("create_disbursements", {"beneficiary_name": ""}) == [["INVALID_BENEFICIARY_NAME"]] * 2
    assert rejected("create_disbursements", {"narrative": None}) == [["INVALID_NARRATIVE"]] * 2
    assert rejected("create_disbursements", {"disbursement_id": ids[0], "beneficiary_name": "Someone Else"}) == \
        [["DUPLICATE_DISBURSEMENT_ID"], ["DUPLICATE_DISBURSEMENT_ID"]]
    three = sample("create_disbursements_count_exceeds_declared", ENVELOPE_ID=envelope)
    three["message"].append(copy.deepcopy(three["message"][0]))
    for index, item in enumerate(three["message"]):
        item["beneficiary_id"] = f"B-{index}"
    answer = api.call("create_disbursements", three)  # 3 received of 5 declared: the third of these overshoots
    assert answer["header"]["status"] == "rjct"
    assert item_codes(answer) == [[], [], ["NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED"]]
    assert received(api, envelope) == (3, Decimal("3000"))  # nothing of the rejected requests was kept
    # an identical re-send of accepted disbursements (client ids) is an accepted no-op, not a second payment
    again = sample("create_disbursements", ENVELOPE_ID=envelope)
    for item, disbursement_id in zip(again["message"], ids):
        item["disbursement_id"] = disbursement_id
    assert api.call("create_disbursements", again)["header"]["status"] == "succ"
    assert received(api, envelope) == (3, Decimal("3000"))


def test_create_disbursements_is_all_or_nothing(api: Api) -> None:
    create_program(api)
    envelope = create_envelope(api)
    body = sample("create_disbursements", ENVELOPE_ID=envelope)
    body["message"].insert(1, {**body["message"][0], "beneficiary_id": "99", "disbursement_amount": -5})
    answer = api.call("create_disbursements", body)
    assert answer["header"]["status"] == "rjct"
    assert answer["header"]["completed_count"] == 0
    assert item_codes(answer) == [[], ["INVALID_DISBURSEMENT_AMOUNT"], []]
    assert received(api, envelope) == (0, Decimal("0"))
    assert scalar(api.database_url, "SELECT count(*) FROM bridge.disbursement") == 0
    # the request's rows are in staging, REJECTED with their own code (never PENDING), in request order
    staged = rows(api.database_url, "SELECT disbursement_id, intake_status, intake_error_code, intake_error_detail "
                  "FROM staging.disbursement ORDER BY staging_id")
    assert [s[0] for s in staged] == [item["disbursement_id"] for item in answer["message"]]
    assert [(s[1], s[2]) for s in staged] == [("REJECTED", "REQUEST_REJECTED"),
                                              ("REJECTED", "INVALID_DISBURSEMENT_AMOUNT"),
                                              ("REJECTED", "REQUEST_REJECTED")]
    assert body["header"]["message_id"] in staged[0][3]
    # fixed, under a new message_id: all three are kept
    body["message"][1]["disbursement_amount"] = 500
    body["header"]["message_id"] = f"msg-{uuid.uuid4()}"
    assert api.call("create_disbursements", body)["header"]["status"] == "succ"
    assert received(api, envelope) == (3, Decimal("2500"))


def test_cancellations_and_amendment(api: Api) -> None:
    create_program(api)
    envelope = create_envelope(api)
    answer = api.call("create_disbursements", sample("create_disbursements", ENVELOPE_ID=envelope))
    first, second = (item["disbursement_id"] for item in answer["message"])

    cancel = api.call("cancel_disbursements", sample("cancel_disbursements", DISBURSEMENT_TO_CANCEL=first))
    assert cancel["header"]["status"] == "succ"
    assert cancel["message"][0]["cancellation_status"] == "CANCELLED"
    assert received(api, envelope) == (1, Decimal("1000"))  # a cancellation gives back its count and amount
    again = api.call("cancel_disbursements", sample("cancel_disbursements", DISBURSEMENT_TO_CANCEL=first))
    assert again["header"]["status"] == "rjct"
    assert item_codes(again) == [["DISBURSEMENT_ALREADY_CANCELED"]]
    mixed = api.call("cancel_disbursements", sample("cancel_disbursements_one_invalid",
                                                    DISBURSEMENT_TO_CANCEL_2=second))
    assert mixed["header"]["status"] == "rjct"
    assert item_codes(mixed) == [["INVALID_DISBURSEMENT_ID"], []]
    assert scalar(api.database_url, "SELECT disbursement_status FROM bridge.disbursement WHERE disbursement_id = %s",
                  (second,)) == "RECEIVED"  # all-or-nothing: the valid one was not cancelled
    bare = sample("cancel_disbursements", DISBURSEMENT_TO_CANCEL=second)
    bare["message"] = [second]  # a bare list of ids is accepted too
    assert api.call("cancel_disbursements", bare)["header"]["status"] == "succ"

    amend = api.call("amend_disbursement_envelope", sample("amend_disbursement_envelope", ENVELOPE_ID=envelope))
    assert amend["header"]["status"] == "succ"
    assert rows(api.database_url, "SELECT number_of_disbursements, total_disbursement_amount "
                "FROM bridge.disbursement_envelope WHERE disbursement_envelope_id = %s", (envelope,)) == \
        [(6, Decimal("6000"))]
    bad = sample("amend_disbursement_envelope", ENVELOPE_ID=envelope)
    bad["message"]["disbursement_schedule_date"] = PAST_DATE
    assert api.call("amend_disbursement_envelope", bad)["header"]["status_reason_message"] == \
        "INVALID_DISBURSEMENT_SCHEDULE_DATE"
    unknown = sample("amend_disbursement_envelope", ENVELOPE_ID="NO-SUCH-ENVELOPE")
    assert api.call("amend_disbursement_envelope", unknown)["header"]["status_reason_message"] == \
        "DISBURSEMENT_ENVELOPE_NOT_FOUND"

    cancelled = api.call("cancel_disbursement_envelope", sample("cancel_disbursement_envelope", ENVELOPE_ID=envelope))
    assert cancelled["header"]["status"] == "succ"
    assert cancelled["message"]["cancellation_status"] == "CANCELLED"
    twice = api.call("cancel_disbursement_envelope", sample("cancel_disbursement_envelope", ENVELOPE_ID=envelope))
    assert (twice["header"]["status"], twice["header"]["status_reason_message"]) == \
        ("rjct", "DISBURSEMENT_ENVELOPE_ALREADY_CANCELED")
    late = api.call("create_disbursements", sample("create_disbursements_cancelled_envelope", ENVELOPE_ID=envelope))
    assert late["header"]["status"] == "rjct"
    assert item_codes(late) == [["DISBURSEMENT_ENVELOPE_ALREADY_CANCELED"], ["DISBURSEMENT_ENVELOPE_NOT_FOUND"],
                                ["DISBURSEMENT_ENVELOPE_NOT_FOUND"]]


def test_status_endpoints_read_the_status_views(api: Api) -> None:
    create_program(api)
    envelope = create_envelope(api)
    created = api.call("create_disbursements", sample("create_disbursements", ENVELOPE_ID=envelope))
    first, second = (item["disbursement_id"] for item in created["message"])

    status = api.call("get_disbursement_envelope_status", sample("get_disbursement_envelope_status",
                                                                 ENVELOPE_ID=envelope))
    assert status["header"]["status"] == "succ"
    message = status["message"]
    assert message["disbursement_envelope_id"] == envelope
    assert message["number_of_disbursements_received"] == 2
    assert message["total_disbursement_amount_received"] == 2000
    assert message["funds_available_with_bank"] == "PENDING_CHECK"
    assert message["funds_blocked_with_bank"] == "PENDING_CHECK"
    assert message["id_mapper_resolution_required"] is False
    for field in ("funds_available_attempts", "funds_blocked_attempts", "number_of_disbursements_shipped",
                  "number_of_disbursements_reconciled", "number_of_disbursements_reversed"):
        assert message[field] == 0, field
    unknown = api.call("get_disbursement_envelope_status", sample("get_disbursement_envelope_status",
                                                                  ENVELOPE_ID="NO-SUCH-ENVELOPE"))
    assert (unknown["header"]["status"], unknown["header"]["status_reason_message"]) == \
        ("rjct", "DISBURSEMENT_ENVELOPE_NOT_FOUND")

    body = sample("get_disbursement_status", DISBURSEMENT_TO_CANCEL=first, DISBURSEMENT_TO_CANCEL_2=second)
    body["message"].append({"disbursement_id": "NO-SUCH-DISBURSEMENT"})
    answer = api.call("get_disbursement_status", body)
    assert answer["header"]["status"] == "succ"
    assert (answer["header"]["total_count"], answer["header"]["completed_count"]) == (3, 2)
    items = answer["message"]
    assert [i["disbursement_id"] for i in items] == [first, second, "NO-SUCH-DISBURSEMENT"]
    assert items[0]["disbursement_status"] == "RECEIVED"
    assert items[0]["disbursement_amount"] == 1000
    assert items[0]["disbursement_recon_records"] == {"disbursement_recon_payloads": [],
                                                      "disbursement_error_recon_payloads": []}
    assert items[2]["response_error_codes"] == ["INVALID_DISBURSEMENT_ID"]
    # reads are not remembered: asking again with the same message_id answers afresh
    assert api.call("get_disbursement_status", body)["header"]["completed_count"] == 2


def test_program_rules_and_envelopes_already_with_the_bank(api: Api) -> None:
    def program(**change: Any) -> dict:
        body = sample("create_benefit_program_configuration")
        body["message"].update(change)
        return api.call("create_benefit_program_configuration", body)["header"]

    for change, code in [({"benefit_program_mnemonic": ""}, "INVALID_PROGRAM_MNEMONIC"),
                         ({"benefit_program_name": None}, "INVALID_PROGRAM_NAME"),
                         ({"sponsor_bank_code": " "}, "INVALID_SPONSOR_BANK_CODE"),
                         ({"sponsor_bank_account_number": ""}, "INVALID_SPONSOR_BANK_ACCOUNT_NUMBER"),
                         ({"sponsor_bank_account_currency": "XYZ"}, "INVALID_SPONSOR_BANK_ACCOUNT_CURRENCY")]:
        header = program(**change)
        assert (header["status"], header["status_reason_message"]) == ("rjct", code), change
    body = sample("create_benefit_program_configuration", PROGRAM_MNEMONIC="MAPPED")
    del body["message"]["id_mapper_resolution_required"]  # absent: OpenG2P's default (true)
    assert api.call("create_benefit_program_configuration", body)["header"]["status"] == "succ"
    assert rows(api.database_url, "SELECT id_mapper_resolution_required, disbursement_currency_code FROM "
                "bridge.benefit_program_configuration WHERE benefit_program_mnemonic = 'MAPPED'") == [(True, "USD")]
    create_program(api)
    envelope = create_envelope(api)
    assert program(sponsor_bank_account_number="ANOTHER-ACCOUNT")["status_reason_message"] == "PROGRAM_IN_USE"

    long_id = sample("create_disbursements", ENVELOPE_ID=envelope)
    long_id["message"][0]["disbursement_id"] = "D" * 65
    assert item_codes(api.call("create_disbursements", long_id)) == [["INVALID_DISBURSEMENT_ID"], []]
    created = api.call("create_disbursements", sample("create_disbursements", ENVELOPE_ID=envelope))
    first = created["message"][0]["disbursement_id"]
    with psycopg.connect(api.database_url, autocommit=True) as conn:  # the pipeline starts on the envelope
        conn.execute("UPDATE bridge.disbursement_envelope_batch_status SET disbursement_started_at = now() "
                     "WHERE disbursement_envelope_id = %s", (envelope,))
    late = api.call("create_disbursements", sample("create_disbursements_duplicate_beneficiary_id",
                                                   ENVELOPE_ID=envelope))
    assert item_codes(late) == [["DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED"]]
    cancel = api.call("cancel_disbursements", sample("cancel_disbursements", DISBURSEMENT_TO_CANCEL=first))
    assert item_codes(cancel) == [["DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED"]]
    amend = api.call("amend_disbursement_envelope", sample("amend_disbursement_envelope", ENVELOPE_ID=envelope))
    assert amend["header"]["status_reason_message"] == "DISBURSEMENT_ENVELOPE_DATE_PASSED"
    assert received(api, envelope) == (2, Decimal("2000"))


def test_a_busy_intake_answers_503_and_nothing_is_half_done(bridge_env: Path, database_url: str) -> None:
    from bridge_pipelines.intake.service import INTAKE_LOCK

    for api in running_api(database_url, api_settings(), lock_timeout_seconds=0.5):
        create_program(api)
        body = sample("create_disbursement_envelope")
        with psycopg.connect(database_url, autocommit=True) as holder:  # e.g. a long intake run of the sensor
            holder.execute("SELECT pg_advisory_lock(%s)", (INTAKE_LOCK,))
            busy = api.post("create_disbursement_envelope", body)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
            assert busy.json()["code"] == "BUSY"
        assert scalar(database_url, "SELECT count(*) FROM staging.disbursement_envelope") == 0
        assert api.call("create_disbursement_envelope", body)["header"]["status"] == "succ"  # the retry works


# --- replay protection, concurrency ---------------------------------------------------------------------------------

def test_replay_returns_the_stored_answer_and_a_changed_body_is_refused(api: Api) -> None:
    create_program(api)
    body = sample("create_disbursement_envelope", message_id="pbms-msg-000042")
    first = api.post("create_disbursement_envelope", body)
    replay = api.post("create_disbursement_envelope", body)
    assert first.status_code == replay.status_code == 200
    assert replay.headers.get("X-Bridge-Replayed") == "true"
    assert replay.json() == first.json()  # same generated id, same message_ts: the stored answer
    assert scalar(api.database_url, "SELECT count(*) FROM staging.disbursement_envelope") == 1
    assert scalar(api.database_url, "SELECT count(*) FROM bridge.disbursement_envelope") == 1

    changed = copy.deepcopy(body)
    changed["message"]["number_of_beneficiaries"] = 4
    conflict = api.call("create_disbursement_envelope", changed)
    assert conflict["header"]["status"] == "rjct"
    assert conflict["header"]["status_reason_message"] == "DUPLICATE_MESSAGE_ID"
    assert conflict["header"]["status_reason_code"] == "rjct.message_id.duplicate"
    elsewhere = copy.deepcopy(body)  # the same message to another endpoint is another body
    elsewhere["message"] = {"disbursement_envelope_id": first.json()["message"]["disbursement_envelope_id"]}
    assert api.call("cancel_disbursement_envelope", elsewhere)["header"]["status_reason_message"] == \
        "DUPLICATE_MESSAGE_ID"
    assert scalar(api.database_url, "SELECT count(*) FROM staging.disbursement_envelope") == 1
    assert scalar(api.database_url, "SELECT count(*) FROM staging.envelope_cancellation") == 0

    # message ids are per sender: another sender's same id is a new message
    theirs = sample("create_disbursement_envelope", sender=OTHER_SENDER, message_id="pbms-msg-000042")
    other = api.call("create_disbursement_envelope", theirs, token=OTHER_TOKEN)
    assert other["header"]["status"] == "succ"
    assert other["message"]["disbursement_envelope_id"] != first.json()["message"]["disbursement_envelope_id"]

    # a rejected all-or-nothing request replays its rejection without staging its rows again
    envelope = first.json()["message"]["disbursement_envelope_id"]
    bad = sample("create_disbursements", ENVELOPE_ID=envelope)
    bad["message"][1]["disbursement_amount"] = -1
    rejected = api.post("create_disbursements", bad)
    again = api.post("create_disbursements", bad)
    assert again.json() == rejected.json() and again.headers.get("X-Bridge-Replayed") == "true"
    assert scalar(api.database_url, "SELECT count(*) FROM staging.disbursement") == 2


def test_concurrent_create_disbursements_cannot_overshoot(api: Api) -> None:
    create_program(api)
    envelope = create_envelope(api, number_of_beneficiaries=10, number_of_disbursements=10,
                               total_disbursement_amount=10000)
    writers = 8
    barrier = threading.Barrier(writers)
    answers: list[dict] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def write(index: int) -> None:
        try:
            body = sample("create_disbursements", ENVELOPE_ID=envelope)
            for n, item in enumerate(body["message"]):
                item["beneficiary_id"] = f"W{index}-{n}"
            with httpx.Client(timeout=60) as http:
                barrier.wait()
                response = http.post(f"{api.url}/create_disbursements", content=json.dumps(body),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            assert response.status_code == 200, response.text
            with lock:
                answers.append(response.json())
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    statuses = sorted(a["header"]["status"] for a in answers)
    assert statuses == ["rjct"] * 3 + ["succ"] * 5  # 8 requests of 2 for 10 declared: exactly 5 fit
    for answer in answers:
        if answer["header"]["status"] == "rjct":
            assert item_codes(answer) == [[], ["NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED"]] or \
                item_codes(answer)[0] == ["NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED"]
    assert received(api, envelope) == (10, Decimal("10000"))
    assert scalar(api.database_url, "SELECT count(*) FROM bridge.disbursement") == 10
    assert scalar(api.database_url, "SELECT count(*) FROM staging.disbursement WHERE intake_status = 'PENDING'") == 0


# --- authentication, form errors, size --------------------------------------------------------------------------------

def test_authentication(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = sample("create_disbursement_envelope")
    assert api.post("create_disbursement_envelope", body, token=None).status_code == 401
    wrong = api.post("create_disbursement_envelope", body, token="not-the-token-at-all-000")
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert api.post("create_disbursement_envelope", body, headers={"Authorization": TOKEN}, token=None
                    ).status_code == 401  # not a bearer header
    mismatch = api.post("create_disbursement_envelope", body, token=OTHER_TOKEN)
    assert mismatch.status_code == 403 and mismatch.json()["code"] == "SENDER_MISMATCH"
    assert api.post("get_disbursement_status", sample("get_disbursement_status"), token=OTHER_TOKEN
                    ).status_code == 403
    assert api.post("upload_mt940", None, token=None, files={"statement_file": ("s.mt940", MT940)}
                    ).status_code == 401
    assert scalar(api.database_url, "SELECT count(*) FROM staging.disbursement_envelope") == 0
    assert api.http.get(f"{api.url}/ping").json()["status"] == "ok"  # open
    assert TOKEN not in caplog.text and OTHER_TOKEN not in caplog.text
    assert "refused" in caplog.text  # the refusals were logged, without the tokens


def test_no_api_without_tokens(bridge_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture) -> None:
    from bridge_pipelines.cli import main

    with pytest.raises(ConfigError, match="BRIDGE_API_TOKENS"):
        create_api_app(database_url, api_settings(api_tokens=()))
    monkeypatch.delenv("BRIDGE_API_TOKENS", raising=False)
    assert main(["api"]) == 2
    assert "BRIDGE_API_TOKENS" in capsys.readouterr().err


def test_bridge_api_command_serves_the_api(bridge_env: Path, database_url: str) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, BRIDGE_API_TOKENS=f"{SENDER}:{TOKEN}", BRIDGE_API_PORT=str(port),
               BRIDGE_API_ROOT_PATH="/g2p-bridge", BRIDGE_BUSINESS_DATE=BUSINESS_DATE.isoformat())
    process = subprocess.Popen([sys.executable, "-m", "bridge_pipelines.cli", "api"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}/g2p-bridge"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                if httpx.get(f"{base}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "bridge api did not start"
            time.sleep(0.2)
        body = sample("create_disbursement_envelope")
        answer = httpx.post(f"{base}/create_disbursement_envelope", json=body,
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
        assert answer["header"]["status_reason_message"] == "INVALID_PROGRAM_MNEMONIC"  # served, on our database
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert TOKEN not in output
    assert scalar(database_url, "SELECT count(*) FROM bridge.api_request") == 1


def test_token_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_API_TOKENS", f" {SENDER}:{TOKEN} , {OTHER_SENDER}:{OTHER_TOKEN} ")
    monkeypatch.setenv("BRIDGE_API_ROOT_PATH", "/g2p-bridge/")
    settings = load_settings()
    assert settings.api_tokens == ((SENDER, TOKEN), (OTHER_SENDER, OTHER_TOKEN))
    assert settings.api_root_path == "/g2p-bridge"
    assert TOKEN not in repr(settings)
    for bad in ("just-a-token-without-sender", "a:short", f"a:{TOKEN},a:{OTHER_TOKEN}", f"a:{TOKEN},b:{TOKEN}"):
        monkeypatch.setenv("BRIDGE_API_TOKENS", bad)
        with pytest.raises(ConfigError, match="BRIDGE_API_TOKENS") as raised:
            load_settings()
        assert TOKEN not in str(raised.value)
    monkeypatch.setenv("BRIDGE_API_TOKENS", f"{SENDER}:{TOKEN}")
    monkeypatch.setenv("BRIDGE_API_ROOT_PATH", "g2p-bridge")
    with pytest.raises(ConfigError, match="BRIDGE_API_ROOT_PATH"):
        load_settings()


MALFORMED = [
    (b"{not json", ["body"]),
    (b"", ["body"]),
    (b"\xff\xfe{}", ["body"]),
    (b'{"header": {}, "message": {"total_disbursement_amount": NaN}}', ["body"]),
    (b"[1, 2]", ["body"]),
    (b'{"message": {}}', ["body", "header"]),
    (b'{"header": {"sender_id": "openg2p-pbms"}, "message": {}}', ["body", "header", "message_id"]),
    (b'{"header": {"message_id": 7, "sender_id": "openg2p-pbms"}, "message": {}}', ["body", "header", "message_id"]),
    (b'{"header": {"message_id": "m", "sender_id": "openg2p-pbms", "is_msg_encrypted": true}, "message": {}}',
     ["body", "header", "is_msg_encrypted"]),
    (b'{"header": {"message_id": "m", "sender_id": "openg2p-pbms"}}', ["body", "message"]),
    (b'{"header": {"message_id": "m", "sender_id": "openg2p-pbms"}, "message": []}', ["body", "message"]),
    (b'{"header": {"message_id": "m", "sender_id": "openg2p-pbms"}, "message": {"number_of_beneficiaries": 1' +
     b"0" * 5000 + b"}}", ["body"]),
]


def test_malformed_requests_get_422_naming_the_field(api: Api) -> None:
    for raw, loc in MALFORMED:
        response = api.post("create_disbursement_envelope", raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (raw[:80], response.text)
        assert loc in [d["loc"] for d in response.json()["detail"]], (raw[:80], response.json())


def test_wrong_types_get_422_naming_each_field(api: Api) -> None:
    envelope = sample("create_disbursement_envelope")
    envelope["message"].update(number_of_beneficiaries="five", total_disbursement_amount=True,
                               disbursement_schedule_date="2026-13-01", cycle_code_mnemonic="A\x00B",
                               number_of_disbursements=10**30)
    response = api.post("create_disbursement_envelope", envelope)
    assert response.status_code == 422
    named = {tuple(d["loc"][2:]) for d in response.json()["detail"]}
    assert named == {("number_of_beneficiaries",), ("total_disbursement_amount",), ("disbursement_schedule_date",),
                     ("cycle_code_mnemonic",), ("number_of_disbursements",)}
    items = sample("create_disbursements", ENVELOPE_ID="E")
    items["message"][1]["disbursement_amount"] = "1000"
    items["message"][0]["beneficiary_name"] = ["not", "a", "string"]
    response = api.post("create_disbursements", items)
    assert response.status_code == 422
    assert {tuple(d["loc"]) for d in response.json()["detail"]} == {
        ("body", "message", 1, "disbursement_amount"), ("body", "message", 0, "beneficiary_name")}
    not_a_list = sample("create_disbursements", ENVELOPE_ID="E")
    not_a_list["message"] = not_a_list["message"][0]
    assert api.post("create_disbursements", not_a_list).status_code == 422
    surrogate = json.dumps(sample("create_disbursement_envelope")).replace('"AUG"', '"\\ud800"').encode()
    response = api.post("create_disbursement_envelope", surrogate, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "cycle_code_mnemonic"
    assert scalar(api.database_url, "SELECT count(*) FROM staging.disbursement_envelope") == 0


def test_bodies_over_the_limit_get_413(api: Api) -> None:
    big = sample("create_disbursements", ENVELOPE_ID="E")
    big["message"] = big["message"] * (MAX_BODY // 150)
    raw = json.dumps(big).encode()
    assert len(raw) > MAX_BODY
    assert api.post("create_disbursements", raw, headers={"Content-Type": "application/json"}).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while the body streams in
        for start in range(0, len(raw), 16 * 1024):
            yield raw[start:start + 16 * 1024]
    response = api.post("create_disbursements", None, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    upload = api.post("upload_mt940", None, files={"statement_file": ("big.mt940", b"x" * (MAX_BODY + 1))})
    assert upload.status_code == 413
    assert scalar(api.database_url, "SELECT count(*) FROM staging.disbursement") == 0


# --- statements, root path, OpenAPI ---------------------------------------------------------------------------------

def test_upload_mt940_stores_into_the_inbox(api: Api) -> None:
    response = api.post("upload_mt940", None, files={"statement_file": ("../../etc/passwd", MT940, "text/plain")})
    assert response.status_code == 200, response.text
    answer = response.json()
    sha = hashlib.sha256(MT940).hexdigest()
    assert answer["header"]["status"] == "succ"
    assert answer["message"] == statement_id_for(sha)
    inbox = api.settings.statement_inbox
    stored = [p for p in inbox.iterdir() if p.is_file()]
    assert [p.name for p in stored] == [answer["header"]["meta"]["file_name"]]
    assert stored[0].read_bytes() == MT940
    assert stored[0].resolve().parent == inbox.resolve()  # the client's name did not choose where it went
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        registered = register_new_files(conn, inbox, api.settings.statement_max_bytes)
    assert [(r.status, r.statement_id) for r in registered] == [("NEW", answer["message"])]

    def problem(**kwargs: Any) -> list:
        response = api.post("upload_mt940", None, **kwargs)
        assert response.status_code == 422, response.text
        return response.json()["detail"][0]["loc"]
    assert problem(files={"other_field": ("s.mt940", MT940)}) == ["body", "statement_file"]
    assert problem(files={"statement_file": ("s.mt940", b"")}) == ["body", "statement_file"]
    assert problem(data={"statement_file": "not a file"}) == ["body", "statement_file"]
    assert problem(content=b"{}", headers={"Content-Type": "application/json"}) == ["body", "statement_file"]
    assert problem(content=b"--x\r\ngarbage", headers={"Content-Type": "multipart/form-data; boundary=x"})[0] == "body"


def test_root_path_prefix(bridge_env: Path, database_url: str) -> None:
    for api in running_api(database_url, api_settings(api_root_path="/g2p-bridge")):
        assert api.url.endswith("/g2p-bridge")
        assert api.http.get(f"{api.url}/ping").status_code == 200
        assert api.http.get(f"{api.url}/openapi.json").json()["servers"] == [{"url": "/g2p-bridge"}]
        create_program(api)
        assert create_envelope(api)
        bare = api.url.removesuffix("/g2p-bridge")
        outside = api.http.post(f"{bare}/create_disbursement_envelope", json=sample("create_disbursement_envelope"),
                                headers={"Authorization": f"Bearer {TOKEN}"})
        assert outside.status_code == 404
        assert api.http.get(f"{bare}/ping").status_code == 401  # only the prefixed paths are open


def test_openapi_document_is_served_and_describes_every_route(api: Api) -> None:
    document = api.http.get(f"{api.url}/openapi.json").json()
    assert document == json.loads(json.dumps(openapi_document("")))
    schema = schemathesis.openapi.from_dict(document)
    operations = {op.ok().label for op in schema.get_all_operations()}
    expected = {f"POST /{a}" for a in (
        "create_benefit_program_configuration", "create_disbursement_envelope", "amend_disbursement_envelope",
        "cancel_disbursement_envelope", "create_disbursements", "cancel_disbursements",
        "get_disbursement_envelope_status", "get_disbursement_status", "upload_mt940")} | \
        {"GET /ping", "GET /openapi.json"}
    assert operations == expected
    app = create_api_app(api.database_url, api.settings)
    routes = {f"{sorted(r.methods - {'HEAD'})[0]} {r.path}" for r in app.routes}
    app.state.api_service.close()
    assert routes == expected
    for path, item in document["paths"].items():
        if "post" in item:
            assert {"200", "401", "403", "413", "422"} <= set(item["post"]["responses"]), path


# --- property-based: schemathesis against our own spec, no 5xx ------------------------------------------------------

SCHEMA = schemathesis.openapi.from_dict(openapi_document(""))


@pytest.fixture(scope="module")
def shared_api(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One server and database for every operation of the property-based test (it only looks for 5xx)."""
    from tests.conftest import create_database

    inbox = tmp_path_factory.mktemp("api-inbox")
    yield from running_api(create_database(server_url), api_settings(statement_inbox=inbox))


@SCHEMA.parametrize()
@hypothesis_settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error(case: Any, shared_api: Api) -> None:
    """Positive and negative examples generated from our own OpenAPI document (schemathesis), bounded."""
    if isinstance(case.body, dict) and isinstance(case.body.get("header"), dict):
        case.body["header"]["sender_id"] = SENDER  # reach past the sender check most of the time
    with requests.Session() as session:  # closed at once: no idle keep-alive connection delays the server's stop
        response = case.call(base_url=shared_api.url, session=session,
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (case.operation.label, case.body, response.text)
    if response.status_code == 200 and case.operation.label.startswith("POST"):
        assert response.json()["header"]["status"] in ("succ", "rjct")
