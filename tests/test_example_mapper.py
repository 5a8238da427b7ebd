"""The example ID mapper (G2P Connect-style resolve) and the bridge's mapper client, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from bridge_pipelines.bank.example_mapper import UNRESOLVABLE_PREFIX
from bridge_pipelines.bank.mapper_client import IdMapperClient
from bridge_pipelines.bank.protocol import MapperRequestRejected, MapperUnavailable, ServiceRequestRejected
from tests.bank_fixtures import *  # noqa: F403
from tests.bank_fixtures import RunningMapper


def test_resolve_answers_every_id_in_order_duplicates_included(example_mapper: RunningMapper) -> None:
    ids = ["BEN-1", "BEN-2", "BEN-1", f"{UNRESOLVABLE_PREFIX}7", "BEN-3", "BEN-2", "BEN-4"]
    with example_mapper.client(batch_size=2) as mapper:  # several requests
        answer = mapper.resolve(ids)
    assert answer["beneficiary_id"].to_list() == ids
    rows = answer.rows(named=True)
    for row in rows:
        fa, reason = example_mapper.expected(row["beneficiary_id"])
        assert (row["financial_address"], row["reason_code"]) == (fa, reason)
        assert row["status"] == ("RESOLVED" if fa else "RESOLUTION_FAILED")
        if fa:
            assert row["fa_type"] in ("BANK_ACCOUNT", "MOBILE_WALLET", "EMAIL_WALLET")
            key = {"BANK_ACCOUNT": "bank_account_number", "MOBILE_WALLET": "mobile_number",
                   "EMAIL_WALLET": "email_address"}[row["fa_type"]]
            assert row[key] and row[key] in fa
    assert rows[0] == rows[2] and rows[1] == rows[5]
    assert rows[3]["status"] == "RESOLUTION_FAILED" and rows[3]["reason_code"] == "rjct.id.invalid"


def test_a_share_of_ids_does_not_resolve(make_example_mapper) -> None:
    mapper = make_example_mapper(mapper_failure_rate=0.3)
    ids = [f"P{i}" for i in range(400)]
    with mapper.client() as client:
        answer = client.resolve(ids)
    failed = set(answer.filter(answer["status"] == "RESOLUTION_FAILED")["beneficiary_id"])
    assert failed == {i for i in ids if mapper.expected(i)[0] is None}
    assert 80 < len(failed) < 160
    assert set(answer["fa_type"].drop_nulls()) == {"BANK_ACCOUNT", "MOBILE_WALLET", "EMAIL_WALLET"}


def test_g2p_connect_envelope(example_mapper: RunningMapper) -> None:
    request = {
        "signature": "",
        "header": {"version": "1.0.0", "message_id": "m1", "message_ts": "2025-01-01T00:00:00Z", "action": "resolve",
                   "sender_id": "pbms", "total_count": 3},
        "message": {"transaction_id": "t1", "resolve_request": [
            {"reference_id": "a", "timestamp": "2025-01-01T00:00:00Z", "id": "BEN-1", "scope": "details"},
            {"reference_id": "a", "timestamp": "2025-01-01T00:00:00Z", "id": "BEN-2", "scope": "details"},
            {"timestamp": "2025-01-01T00:00:00Z", "id": "BEN-3", "scope": "details"},
        ]},
    }
    answer = httpx.post(f"{example_mapper.url}/mapper/resolve", json=request,
                        headers={"Authorization": f"Bearer {example_mapper.token}"}).json()
    assert answer["header"]["action"] == "on-resolve" and answer["header"]["total_count"] == 3
    assert answer["header"]["receiver_id"] == "pbms" and answer["message"]["transaction_id"] == "t1"
    statuses = [(r["status"], r["status_reason_code"]) for r in answer["message"]["resolve_response"]]
    assert statuses == [("succ", None), ("rjct", "rjct.reference_id.duplicate"), ("rjct", "rjct.reference_id.invalid")]
    bad = httpx.post(f"{example_mapper.url}/resolve", json={"header": {"action": "link"}, "message": {}},
                     headers={"Authorization": f"Bearer {example_mapper.token}"})
    assert bad.status_code == 400 and bad.json()["code"] == "rjct.action.invalid"


def test_token_and_availability_errors_are_typed(example_mapper: RunningMapper) -> None:
    assert httpx.post(f"{example_mapper.url}/resolve", json={}).status_code == 401
    with IdMapperClient(example_mapper.url, "wrong") as intruder, pytest.raises(MapperRequestRejected) as refused:
        intruder.resolve(["BEN-1"])
    assert isinstance(refused.value, ServiceRequestRejected) and refused.value.code == "UNAUTHORIZED"
    with IdMapperClient("http://127.0.0.1:9", "x", timeout=1) as nobody, pytest.raises(MapperUnavailable) as down:
        nobody.resolve(["BEN-1"])
    assert down.value.code == "CONNECTION_FAILED"
    with example_mapper.client() as mapper:
        assert mapper.resolve([]).height == 0
