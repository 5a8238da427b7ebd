"""The example ID mapper: G2P Connect-style POST /resolve (also /mapper/resolve), bearer token, no state.

Request:  {"signature", "header": {"version", "message_id", "message_ts", "action": "resolve", "sender_id",
           "total_count", ...}, "message": {"transaction_id", "resolve_request": [{"reference_id", "timestamp", "id",
           "scope": "details"}, ...]}}
Response: {"signature", "header": {..., "action": "on-resolve", "status": "succ", "total_count", "completed_count"},
           "message": {"transaction_id", "correlation_id", "resolve_response": [{"reference_id", "timestamp", "id",
           "fa", "status": "succ" | "rjct", "status_reason_code", "status_reason_message"}, ...]}}
Every request item gets an answer (duplicate ids included); a repeated reference_id is rejected.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

import polars as pl
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge_pipelines.bank.example_mapper.directory import (
    ID_NOT_FOUND,
    REFERENCE_ID_DUPLICATE,
    REFERENCE_ID_INVALID,
    resolve_ids,
)
from bridge_pipelines.config import Settings
from bridge_pipelines.serving import BearerAuthMiddleware

MAX_ITEMS = 100_000
_MESSAGES = {
    ID_NOT_FOUND: "no financial address is linked to this id",
    REFERENCE_ID_INVALID: "reference_id is missing",
    REFERENCE_ID_DUPLICATE: "reference_id is repeated in this request",
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def answer_resolve_request(body: Any, seed: int, failure_rate: float) -> str | tuple[int, str, str]:
    """The G2P Connect response (JSON text) for a resolve request, or (status, code, message) for a malformed one."""
    if not isinstance(body, dict):
        return 400, "rjct.request.invalid", "the body must be a JSON object"
    header = body.get("header") or {}
    message = body.get("message") or {}
    if not isinstance(header, dict) or not isinstance(message, dict):
        return 400, "rjct.request.invalid", "header and message must be objects"
    if header.get("action", "resolve") != "resolve":
        return 400, "rjct.action.invalid", f"action {header.get('action')!r} is not resolve"
    items = message.get("resolve_request")
    if not isinstance(items, list):
        return 400, "rjct.request.invalid", "message.resolve_request must be a list"
    if len(items) > MAX_ITEMS:
        return 413, "rjct.request.too_large", f"at most {MAX_ITEMS} ids per request"
    timestamp = _now()
    references: list[str | None] = []
    ids: list[str | None] = []
    for item in items:
        item = item if isinstance(item, dict) else {}
        reference_id, beneficiary_id = item.get("reference_id"), item.get("id")
        references.append(reference_id if isinstance(reference_id, str) and reference_id else None)
        ids.append(beneficiary_id if isinstance(beneficiary_id, str) else None)
    resolved = resolve_ids(ids, seed, failure_rate)
    reference = pl.Series("reference_id", references, dtype=pl.String)
    request_problem = (
        pl.when(pl.col("reference_id").is_null())
        .then(pl.lit(REFERENCE_ID_INVALID))
        .when(~pl.col("reference_id").is_first_distinct())
        .then(pl.lit(REFERENCE_ID_DUPLICATE))
    )
    resolved = resolved.with_columns(reference, pl.Series("id", ids, dtype=pl.String)).with_columns(
        request_problem.alias("problem")
    ).select(
        "reference_id",
        "id",
        pl.when(pl.col("problem").is_null()).then(pl.col("fa")).alias("fa"),
        pl.coalesce("problem", "reason").alias("status_reason_code"),
    )
    answers = resolved.select(
        "reference_id",
        pl.lit(timestamp).alias("timestamp"),
        "id",
        "fa",
        pl.when(pl.col("status_reason_code").is_null()).then(pl.lit("succ")).otherwise(pl.lit("rjct")).alias("status"),
        "status_reason_code",
        pl.col("status_reason_code").replace_strict(_MESSAGES, default=None, return_dtype=pl.String).alias("status_reason_message"),
    )
    envelope = {
        "signature": "",
        "header": {
            "version": header.get("version", "1.0.0"),
            "message_id": str(uuid.uuid4()),
            "message_ts": timestamp,
            "action": "on-resolve",
            "status": "succ",
            "status_reason_code": None,
            "total_count": answers.height,
            "completed_count": answers.height,
            "sender_id": "example-mapper",
            "receiver_id": header.get("sender_id"),
            "is_msg_encrypted": False,
        },
        "message": {"transaction_id": message.get("transaction_id"), "correlation_id": str(uuid.uuid4())},
    }
    head = json.dumps(envelope, separators=(",", ":"))
    # the answers are written by Polars (Rust), spliced into the envelope
    rows = answers.write_json() if answers.height else "[]"
    return f'{head[:-2]},"resolve_response":{rows}}}}}'


def create_mapper_app(settings: Settings) -> Starlette:
    seed = settings.bank_seed
    failure_rate = settings.mapper_failure_rate

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "example-mapper"})

    async def resolve(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return _refuse(400, "rjct.request.invalid", f"the body is not JSON: {exc}")
        answer = answer_resolve_request(body, seed, failure_rate)
        if isinstance(answer, tuple):
            return _refuse(*answer)
        return Response(answer, media_type="application/json")

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/resolve", resolve, methods=["POST"]),
            Route("/mapper/resolve", resolve, methods=["POST"]),
        ],
        middleware=[Middleware(BearerAuthMiddleware, token=settings.mapper_token)],
        max_body_size=64 * 1024 * 1024,
    )
