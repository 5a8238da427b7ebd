"""The API's OpenAPI 3.0 document, written by hand and built from the same field tables the validation uses, so
the spec and the checks cannot drift apart (tests load it with schemathesis and exercise every operation)."""

from __future__ import annotations

from typing import Any

from bridge_pipelines.api import models as m

_KIND_SCHEMAS: dict[Any, dict[str, Any]] = {
    m.TEXT: {"type": "string", "nullable": True, "maxLength": m.MAX_TEXT},
    m.INTEGER: {"type": "integer", "format": "int64", "nullable": True,
                "minimum": m.BIGINT_MIN, "maximum": m.BIGINT_MAX},
    m.AMOUNT: {"type": "number", "nullable": True, "description": "exact decimal; more decimals than the "
               "currency allows are rejected by the intake rules with a code"},
    m.DATE: {"type": "string", "format": "date", "nullable": True},
    m.BOOLEAN: {"type": "boolean", "nullable": True},
    m.ANY: {"nullable": True},
}


def _object(fields: dict[str, Any], description: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "description": description,
        "properties": {name: dict(_KIND_SCHEMAS[kind]) for name, kind in fields.items()},
    }
    if required:
        schema["required"] = list(required)
    return schema


def _request(message_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["header", "message"],
        "properties": {
            "signature": {"type": "string", "nullable": True, "description": "not verified (see README)"},
            "header": {"$ref": "#/components/schemas/RequestHeader"},
            "message": message_schema,
        },
    }


_ERROR_RESPONSES = {
    "401": {"description": "missing or wrong bearer token",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    "403": {"description": "header.sender_id is not the sender the token belongs to",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    "413": {"description": "the body is larger than BRIDGE_API_MAX_BODY_BYTES",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    "422": {"description": "malformed JSON or a field of the wrong type; every such field is named",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ValidationError"}}}},
    "503": {"description": "busy (the intake lock or a connection could not be had in time); retry",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
}

_WRITE_NOTE = (" Business errors are HTTP 200 with header.status = rjct and header.status_reason_message = the "
               "intake error code. A replayed header.message_id (same sender, same message) returns the stored "
               "response and does nothing again; the same message_id with another message is refused with "
               "DUPLICATE_MESSAGE_ID.")

OPERATIONS: dict[str, dict[str, Any]] = {
    "create_benefit_program_configuration": {
        "summary": "Create or update a benefit program (upsert by mnemonic)" + _WRITE_NOTE,
        "message": _object(m.PROGRAM_FIELDS, "a benefit program; id_mapper_resolution_required defaults to true "
                           "and disbursement_currency_code to the account currency, as in OpenG2P"),
    },
    "create_disbursement_envelope": {
        "summary": "Create a disbursement envelope; disbursement_envelope_id is generated when absent" + _WRITE_NOTE,
        "message": _object(m.ENVELOPE_FIELDS, "a disbursement envelope"),
    },
    "amend_disbursement_envelope": {
        "summary": "Amend an envelope's counts, total or schedule date (absent fields keep their value)" + _WRITE_NOTE,
        "message": _object(m.AMENDMENT_FIELDS, "an envelope amendment"),
    },
    "cancel_disbursement_envelope": {
        "summary": "Cancel an envelope" + _WRITE_NOTE,
        "message": _object(m.ENVELOPE_ID_FIELDS, "the envelope to cancel"),
    },
    "create_disbursements": {
        "summary": "Add disbursements to envelopes; all-or-nothing: if any item is rejected, none is kept "
                   "(header code INVALID_DISBURSEMENT_PAYLOAD, per-item response_error_codes)" + _WRITE_NOTE,
        "message": {"type": "array", "minItems": 1,
                    "items": _object(m.DISBURSEMENT_FIELDS, "a disbursement; disbursement_id generated when absent")},
    },
    "cancel_disbursements": {
        "summary": "Cancel disbursements; all-or-nothing like create_disbursements" + _WRITE_NOTE,
        "message": {"type": "array", "minItems": 1, "items": {"oneOf": [
            _object(m.DISBURSEMENT_ID_FIELDS, "a disbursement to cancel"), {"type": "string"}]}},
    },
    "get_disbursement_envelope_status": {
        "summary": "An envelope's progress (bridge.envelope_status); rjct DISBURSEMENT_ENVELOPE_NOT_FOUND if unknown",
        "message": {"oneOf": [{"type": "string", "description": "the envelope id"},
                              _object(m.ENVELOPE_ID_FIELDS, "the envelope")]},
    },
    "get_disbursement_status": {
        "summary": "Disbursements' states with remittance and reversal details (bridge.disbursement_status)",
        "message": {"type": "array", "minItems": 1, "items": {"oneOf": [
            {"type": "string", "description": "a disbursement id"},
            _object(m.DISBURSEMENT_ID_FIELDS, "a disbursement")]}},
    },
}


def openapi_document(root_path: str = "") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for action, spec in OPERATIONS.items():
        paths[f"/{action}"] = {"post": {
            "operationId": action,
            "summary": spec["summary"],
            "security": [{"bearerAuth": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _request(spec["message"])}}},
            "responses": {"200": {"description": "G2P Connect sync response (succ or rjct)", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SyncResponse"}}}}, **_ERROR_RESPONSES},
        }}
    paths["/upload_mt940"] = {"post": {
        "operationId": "upload_mt940",
        "summary": "Upload a bank statement (MT940 or camt.053) into the statement inbox; answered with its "
                   "statement id (message)",
        "security": [{"bearerAuth": []}],
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["statement_file"],
            "properties": {"statement_file": {"type": "string", "format": "binary"}}}}}},
        "responses": {"200": {"description": "stored; message = the statement id", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SyncResponse"}}}}, **_ERROR_RESPONSES},
    }}
    paths["/ping"] = {"get": {"operationId": "ping", "summary": "liveness", "security": [],
                              "responses": {"200": {"description": "alive", "content": {"application/json": {
                                  "schema": {"type": "object"}}}}}}}
    paths["/openapi.json"] = {"get": {"operationId": "openapi", "summary": "this document", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.0 document", "content": {
                                          "application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "G2P disbursement bridge: PBMS API",
            "version": "1.0.0",
            "description": "Wire-compatible with OpenG2P G2P Bridge 1.x (G2P Connect request/response envelope), "
                           "stricter: the same intake rules as the staging tables, replay protection per "
                           "(sender, message_id), all-or-nothing lists, exact decimal amounts.",
        },
        "servers": [{"url": root_path or "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "one token per sender (BRIDGE_API_TOKENS)"}},
            "schemas": {
                "RequestHeader": {
                    **_object(m.HEADER_FIELDS, "G2P Connect request header", required=("message_id", "sender_id")),
                },
                "ResponseHeader": {"type": "object", "required": ["message_id", "status"], "properties": {
                    "version": {"type": "string"}, "message_id": {"type": "string"},
                    "message_ts": {"type": "string"}, "action": {"type": "string", "nullable": True},
                    "status": {"type": "string", "enum": ["succ", "rjct"]},
                    "status_reason_code": {"type": "string", "nullable": True},
                    "status_reason_message": {"type": "string", "nullable": True},
                    "total_count": {"type": "integer"}, "completed_count": {"type": "integer"},
                    "sender_id": {"type": "string", "nullable": True},
                    "receiver_id": {"type": "string", "nullable": True},
                    "is_msg_encrypted": {"type": "boolean"}, "meta": {"type": "object"}}},
                "SyncResponse": {"type": "object", "required": ["header"], "properties": {
                    "header": {"$ref": "#/components/schemas/ResponseHeader"}, "message": {"nullable": True}}},
                "Error": {"type": "object", "properties": {"code": {"type": "string"},
                                                           "detail": {"type": "string"}}},
                "ValidationError": {"type": "object", "properties": {"detail": {"type": "array", "items": {
                    "type": "object", "properties": {"loc": {"type": "array"}, "msg": {"type": "string"},
                                                     "type": {"type": "string"}}}}}},
            },
        },
    }
