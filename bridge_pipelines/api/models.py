"""Request shapes of the PBMS API (G2P Connect envelope, OpenG2P G2P Bridge 1.x payloads) and their validation.

Validation here is about *form* only: JSON types, and values PostgreSQL could not store (NUL characters, integers
beyond bigint, amounts beyond any currency). A request that fails it gets 422 naming every wrong field, in FastAPI's
shape (`{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`), as OpenG2P's own API answers. Everything that is a
business rule (empty ids, unknown programs, amounts <= 0, dates, caps...) is left to the intake rules, which answer
with their error codes: one set of rules for staging writers and API callers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

Loc = tuple[str | int, ...]

MAX_TEXT = 4096           # longer strings are refused at the door (ids longer than 64 get the intake's code)
MAX_MESSAGE_ID = 256
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
AMOUNT_LIMIT = Decimal(10) ** 20  # |amount| below this; anything larger is no payment in any currency
AMOUNT_MAX_DECIMALS = 20          # more decimals than any currency (the intake checks the currency's own)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class FieldProblem:
    loc: Loc
    msg: str
    type: str

    def as_dict(self) -> dict:
        return {"loc": ["body", *self.loc], "msg": self.msg, "type": self.type}


class RequestInvalid(Exception):
    """422: the request is not well-formed. Carries every problem found."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc)) or 'body'}: {p.msg}" for p in problems))
        self.problems = problems

    def as_dict(self) -> dict:
        return {"detail": [p.as_dict() for p in self.problems]}


class _Checker:
    def __init__(self) -> None:
        self.problems: list[FieldProblem] = []

    def fail(self, loc: Loc, msg: str, kind: str) -> None:
        self.problems.append(FieldProblem(loc, msg, kind))

    # --- scalar kinds: each returns the value to stage (or None) -------------------------------------------------

    def text(self, value: Any, loc: Loc, max_length: int = MAX_TEXT) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(loc, "must be a string", "string_type")
            return None
        if "\x00" in value:
            self.fail(loc, "must not contain NUL characters", "string_nul")
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(loc, "must be valid Unicode (no lone surrogates)", "string_unicode")
            return None
        if len(value) > max_length:
            self.fail(loc, f"must be at most {max_length} characters", "string_too_long")
            return None
        return value

    def integer(self, value: Any, loc: Loc) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
                value = int(value)  # 5.0 is a whole number
            else:
                self.fail(loc, "must be a whole number", "int_type")
                return None
        if not BIGINT_MIN <= value <= BIGINT_MAX:
            self.fail(loc, "is out of range", "int_range")
            return None
        return value

    def amount(self, value: Any, loc: Loc) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            self.fail(loc, "must be a number", "number_type")
            return None
        amount = Decimal(value)
        if not amount.is_finite() or abs(amount) >= AMOUNT_LIMIT:
            self.fail(loc, "is out of range", "number_range")
            return None
        if amount.as_tuple().exponent < -AMOUNT_MAX_DECIMALS:  # type: ignore[operator]
            self.fail(loc, f"has more than {AMOUNT_MAX_DECIMALS} decimals", "number_precision")
            return None
        return amount

    def day(self, value: Any, loc: Loc) -> date | None:
        if value is None:
            return None
        if not isinstance(value, str) or not _DATE.match(value):
            self.fail(loc, "must be a date in the form YYYY-MM-DD", "date_type")
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.fail(loc, "is not a calendar date", "date_value")
            return None

    def boolean(self, value: Any, loc: Loc) -> bool | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            self.fail(loc, "must be true or false", "bool_type")
            return None
        return value

    def anything(self, value: Any, loc: Loc) -> Any:
        return value


Kind = Callable[[_Checker, Any, Loc], Any]
TEXT: Kind = _Checker.text
INTEGER: Kind = _Checker.integer
AMOUNT: Kind = _Checker.amount
DATE: Kind = _Checker.day
BOOLEAN: Kind = _Checker.boolean
ANY: Kind = _Checker.anything

# Payload fields we read, by kind. Other fields OpenG2P's models carry (receipt_time_stamp, cancellation_status,
# response_error_codes, id...) are accepted and ignored, as OpenG2P's own models ignore unknown ones.
PROGRAM_FIELDS: dict[str, Kind] = {
    "benefit_program_mnemonic": TEXT, "benefit_program_name": TEXT, "funding_org_code": TEXT,
    "funding_org_name": TEXT, "sponsor_bank_code": TEXT, "sponsor_bank_account_number": TEXT,
    "sponsor_bank_branch_code": TEXT, "sponsor_bank_account_currency": TEXT, "disbursement_currency_code": TEXT,
    "id_mapper_resolution_required": BOOLEAN,
}
ENVELOPE_FIELDS: dict[str, Kind] = {
    "disbursement_envelope_id": TEXT, "benefit_program_mnemonic": TEXT, "disbursement_frequency": TEXT,
    "cycle_code_mnemonic": TEXT, "number_of_beneficiaries": INTEGER, "number_of_disbursements": INTEGER,
    "total_disbursement_amount": AMOUNT, "disbursement_currency_code": TEXT, "disbursement_schedule_date": DATE,
}
AMENDMENT_FIELDS: dict[str, Kind] = {
    "disbursement_envelope_id": TEXT, "number_of_beneficiaries": INTEGER, "number_of_disbursements": INTEGER,
    "total_disbursement_amount": AMOUNT, "disbursement_schedule_date": DATE,
}
ENVELOPE_ID_FIELDS: dict[str, Kind] = {"disbursement_envelope_id": TEXT}
DISBURSEMENT_FIELDS: dict[str, Kind] = {
    "disbursement_id": TEXT, "disbursement_envelope_id": TEXT, "mis_reference_number": TEXT,
    "beneficiary_id": TEXT, "beneficiary_name": TEXT, "disbursement_amount": AMOUNT, "narrative": TEXT,
}
DISBURSEMENT_ID_FIELDS: dict[str, Kind] = {"disbursement_id": TEXT}

HEADER_FIELDS: dict[str, Kind] = {
    "version": TEXT, "message_id": TEXT, "message_ts": TEXT, "action": TEXT, "sender_id": TEXT,
    "sender_uri": TEXT, "receiver_id": TEXT, "total_count": INTEGER, "is_msg_encrypted": BOOLEAN, "meta": ANY,
}


@dataclass
class Header:
    message_id: str
    sender_id: str
    action: str | None = None
    version: str | None = None
    message_ts: str | None = None
    receiver_id: str | None = None
    total_count: int | None = None


@dataclass
class ParsedRequest:
    action: str                        # the endpoint, e.g. create_disbursements
    header: Header
    message: Any                       # the validated message: a dict, a list of dicts, or a string


def _object(checker: _Checker, value: Any, loc: Loc, fields: dict[str, Kind], what: str) -> dict | None:
    if not isinstance(value, dict):
        checker.fail(loc, f"must be an object ({what})", "dict_type")
        return None
    out: dict[str, Any] = {}
    for name, kind in fields.items():
        if name in value:
            out[name] = kind(checker, value[name], (*loc, name))
    return out


def _header(checker: _Checker, value: Any) -> Header | None:
    raw = _object(checker, value, ("header",), HEADER_FIELDS, "the G2P Connect request header")
    if raw is None:
        return None
    ok = True
    for required in ("message_id", "sender_id"):
        if not raw.get(required):
            if required not in value or value[required] is None or value[required] == "":
                checker.fail(("header", required), "is required", "missing")
            ok = False
    message_id = raw.get("message_id")
    if isinstance(message_id, str) and len(message_id) > MAX_MESSAGE_ID:
        checker.fail(("header", "message_id"), f"must be at most {MAX_MESSAGE_ID} characters", "string_too_long")
        ok = False
    if raw.get("is_msg_encrypted"):
        checker.fail(("header", "is_msg_encrypted"), "encrypted messages are not supported", "unsupported")
        ok = False
    if not ok:
        return None
    return Header(message_id=raw["message_id"], sender_id=raw["sender_id"], action=raw.get("action"),
                  version=raw.get("version"), message_ts=raw.get("message_ts"),
                  receiver_id=raw.get("receiver_id"), total_count=raw.get("total_count"))


# Message shapes ---------------------------------------------------------------------------------------------------

def _one(fields: dict[str, Kind], what: str) -> Callable[[_Checker, Any], Any]:
    def parse(checker: _Checker, message: Any) -> Any:
        return _object(checker, message, ("message",), fields, what)
    return parse


def _many(fields: dict[str, Kind], what: str, id_field: str | None = None) -> Callable[[_Checker, Any], Any]:
    """A non-empty list of objects; with id_field, a bare string item means {id_field: item}."""
    def parse(checker: _Checker, message: Any) -> Any:
        if not isinstance(message, list):
            checker.fail(("message",), f"must be a list ({what})", "list_type")
            return None
        if not message:
            checker.fail(("message",), "must not be empty", "too_short")
            return None
        items = []
        for index, item in enumerate(message):
            if id_field is not None and isinstance(item, str):
                item = {id_field: item}
            items.append(_object(checker, item, ("message", index), fields, what))
        return items
    return parse


def _envelope_id_message(checker: _Checker, message: Any) -> Any:
    """get_disbursement_envelope_status: the envelope id (OpenG2P), or {disbursement_envelope_id}."""
    if isinstance(message, dict):
        message = message.get("disbursement_envelope_id")
        loc: Loc = ("message", "disbursement_envelope_id")
    else:
        loc = ("message",)
    if message is None:
        checker.fail(loc, "the envelope id is required", "missing")
        return None
    return checker.text(message, loc)


MESSAGE_PARSERS: dict[str, Callable[[_Checker, Any], Any]] = {
    "create_benefit_program_configuration": _one(PROGRAM_FIELDS, "a benefit program configuration"),
    "create_disbursement_envelope": _one(ENVELOPE_FIELDS, "a disbursement envelope"),
    "amend_disbursement_envelope": _one(AMENDMENT_FIELDS, "a disbursement envelope amendment"),
    "cancel_disbursement_envelope": _one(ENVELOPE_ID_FIELDS, "{disbursement_envelope_id}"),
    "create_disbursements": _many(DISBURSEMENT_FIELDS, "disbursements"),
    "cancel_disbursements": _many(DISBURSEMENT_ID_FIELDS, "disbursement ids", id_field="disbursement_id"),
    "get_disbursement_envelope_status": _envelope_id_message,
    "get_disbursement_status": _many(DISBURSEMENT_ID_FIELDS, "disbursement ids", id_field="disbursement_id"),
}


def parse_request(action: str, document: Any) -> ParsedRequest:
    """Validate a decoded G2P Connect request for `action`; raises RequestInvalid listing every problem."""
    checker = _Checker()
    if not isinstance(document, dict):
        raise RequestInvalid([FieldProblem((), "the body must be a JSON object {signature, header, message}",
                                           "dict_type")])
    if "signature" in document:
        checker.text(document["signature"], ("signature",), max_length=64 * 1024)
    header = None
    if "header" not in document or document["header"] is None:
        checker.fail(("header",), "is required", "missing")
    else:
        header = _header(checker, document["header"])
    message = None
    if "message" not in document or document["message"] is None:
        checker.fail(("message",), "is required", "missing")
    else:
        message = MESSAGE_PARSERS[action](checker, document["message"])
    if checker.problems:
        raise RequestInvalid(checker.problems)
    assert header is not None
    return ParsedRequest(action=action, header=header, message=message)
