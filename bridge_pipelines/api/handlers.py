"""From a validated request to a write plan (staged rows + how to answer), per endpoint; and the read answers."""

from __future__ import annotations

import os
import uuid
from datetime import date
from typing import Any

from bridge_pipelines.api.jsonio import dumps
from bridge_pipelines.api.models import ParsedRequest
from bridge_pipelines.api.service import (
    INVALID_DISBURSEMENT_PAYLOAD,
    Answer,
    ApiService,
    ItemResult,
    WritePlan,
    response_header,
)

DISBURSEMENT_ENVELOPE_NOT_FOUND = "DISBURSEMENT_ENVELOPE_NOT_FOUND"
INVALID_DISBURSEMENT_ID = "INVALID_DISBURSEMENT_ID"


def new_id() -> str:
    """A generated identifier: random (uuid4), never derived from a clock."""
    return str(uuid.uuid4())


def new_ids(count: int) -> list[str]:
    """`count` uuid4 strings from one read of the OS's random source (uuid.uuid4() reads it once per id)."""
    raw = bytearray(os.urandom(16 * count))
    ids = []
    for start in range(0, 16 * count, 16):
        raw[start + 6] = (raw[start + 6] & 0x0F) | 0x40  # version 4
        raw[start + 8] = (raw[start + 8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw[start:start + 16].hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def _echo(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in values.items()}


def _single_answer(extra_on_success: dict[str, Any] | None = None):
    def answer(results: list[ItemResult], rolled_back: bool, echo: dict[str, Any]) -> tuple[str, str | None, Any]:
        result = results[0]
        if result.status == "ACCEPTED":
            return "succ", None, {**echo, **(extra_on_success or {})}
        return "rjct", result.code, echo
    return answer


def _single_plan(action: str, table: str, row: dict[str, Any], echo: dict[str, Any],
                 extra_on_success: dict[str, Any] | None = None) -> WritePlan:
    single = _single_answer(extra_on_success)
    return WritePlan(action=action, table=table, rows=[row], all_or_nothing=False,
                     answer=lambda results, rolled_back: single(results, rolled_back, echo))


def _list_plan(action: str, table: str, rows: list[dict[str, Any]], echoes: list[dict[str, Any]],
               extra_on_success: dict[str, Any] | None = None) -> WritePlan:
    def answer(results: list[ItemResult], rolled_back: bool) -> tuple[str, str | None, Any]:
        if rolled_back:
            items = [{**echo, "response_error_codes": [r.code] if r.status == "REJECTED" else []}
                     for echo, r in zip(echoes, results)]
            return "rjct", INVALID_DISBURSEMENT_PAYLOAD, items
        return "succ", None, [{**echo, **(extra_on_success or {}), "response_error_codes": None}
                              for echo in echoes]
    return WritePlan(action=action, table=table, rows=rows, all_or_nothing=True, answer=answer)


# --- plans per write endpoint ---------------------------------------------------------------------------------------

def plan_create_benefit_program_configuration(request: ParsedRequest) -> WritePlan:
    row = dict(request.message)
    if row.get("id_mapper_resolution_required") is None:
        row["id_mapper_resolution_required"] = True  # OpenG2P's default
    if row.get("disbursement_currency_code") is None:
        row["disbursement_currency_code"] = row.get("sponsor_bank_account_currency")
    return _single_plan("create_benefit_program_configuration", "benefit_program", row, _echo(row))


def plan_create_disbursement_envelope(request: ParsedRequest) -> WritePlan:
    row = dict(request.message)
    if row.get("disbursement_envelope_id") is None:
        row["disbursement_envelope_id"] = new_id()
    return _single_plan("create_disbursement_envelope", "disbursement_envelope", row, _echo(row),
                        extra_on_success={"cancellation_status": "NOT_CANCELLED"})


def plan_amend_disbursement_envelope(request: ParsedRequest) -> WritePlan:
    row = dict(request.message)
    return _single_plan("amend_disbursement_envelope", "envelope_amendment", row, _echo(row))


def plan_cancel_disbursement_envelope(request: ParsedRequest) -> WritePlan:
    row = dict(request.message)
    return _single_plan("cancel_disbursement_envelope", "envelope_cancellation", row, _echo(row),
                        extra_on_success={"cancellation_status": "CANCELLED"})


def plan_create_disbursements(request: ParsedRequest) -> WritePlan:
    rows = [dict(item) for item in request.message]
    missing = [row for row in rows if row.get("disbursement_id") is None]
    for row, generated in zip(missing, new_ids(len(missing))):
        row["disbursement_id"] = generated
    return _list_plan("create_disbursements", "disbursement", rows, [_echo(r) for r in rows])


def plan_cancel_disbursements(request: ParsedRequest) -> WritePlan:
    rows = [dict(item) for item in request.message]
    return _list_plan("cancel_disbursements", "disbursement_cancellation", rows, [_echo(r) for r in rows],
                      extra_on_success={"cancellation_status": "CANCELLED"})


WRITE_PLANS = {
    "create_benefit_program_configuration": plan_create_benefit_program_configuration,
    "create_disbursement_envelope": plan_create_disbursement_envelope,
    "amend_disbursement_envelope": plan_amend_disbursement_envelope,
    "cancel_disbursement_envelope": plan_cancel_disbursement_envelope,
    "create_disbursements": plan_create_disbursements,
    "cancel_disbursements": plan_cancel_disbursements,
}


# --- reads ----------------------------------------------------------------------------------------------------------

def envelope_status_answer(service: ApiService, request: ParsedRequest) -> Answer:
    envelope_id = request.message
    row = service.envelope_status(envelope_id)
    if row is None:
        body = {"header": response_header(request, "rjct", DISBURSEMENT_ENVELOPE_NOT_FOUND, 1, 0), "message": None}
        return Answer(dumps(body), "rjct")
    body = {"header": response_header(request, "succ", None, 1, 1), "message": row}
    return Answer(dumps(body), "succ")


_RECON_FIELDS = (
    "remittance_reference_number", "remittance_statement_id", "remittance_statement_number",
    "remittance_statement_sequence", "remittance_entry_sequence", "remittance_entry_date", "remittance_value_date",
    "reversal_found", "reversal_statement_id", "reversal_statement_number", "reversal_statement_sequence",
    "reversal_entry_sequence", "reversal_entry_date", "reversal_value_date", "reversal_reason",
)


def _status_item(disbursement_id: str, row: dict[str, Any], errors: list[dict[str, Any]]) -> dict[str, Any]:
    recon = []
    if row.get("remittance_statement_id") or row.get("reversal_found"):
        recon.append({"bank_disbursement_batch_id": row.get("shipment_batch_id"), "disbursement_id": disbursement_id,
                      "disbursement_envelope_id": row.get("disbursement_envelope_id"),
                      "beneficiary_name_from_bank": None, **{f: row.get(f) for f in _RECON_FIELDS}})
    return {
        **row,
        "disbursement_recon_records": {
            "disbursement_recon_payloads": recon,
            "disbursement_error_recon_payloads": errors,
        },
        "response_error_codes": None,
    }


def disbursement_status_answer(service: ApiService, request: ParsedRequest) -> Answer:
    wanted = [item.get("disbursement_id") for item in request.message]
    found, errors = service.disbursement_status([w for w in wanted if w is not None])
    items = []
    for disbursement_id in wanted:
        row = found.get(disbursement_id) if disbursement_id is not None else None
        if row is None:
            items.append({"disbursement_id": disbursement_id, "disbursement_recon_records": None,
                          "response_error_codes": [INVALID_DISBURSEMENT_ID]})
        else:
            items.append(_status_item(disbursement_id, row, errors.get(disbursement_id, [])))
    completed = sum(1 for item in items if item["response_error_codes"] is None)
    body = {"header": response_header(request, "succ", None, len(items), completed), "message": items}
    return Answer(dumps(body), "succ")

