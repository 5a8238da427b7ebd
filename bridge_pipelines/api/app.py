"""The synchronous PBMS API (Starlette), wire-compatible with OpenG2P's G2P Bridge 1.x.

POST /create_benefit_program_configuration, /create_disbursement_envelope, /amend_disbursement_envelope,
/cancel_disbursement_envelope, /create_disbursements, /cancel_disbursements, /get_disbursement_envelope_status,
/get_disbursement_status, /upload_mt940 (multipart `statement_file`); GET /ping, /openapi.json. All under
BRIDGE_API_ROOT_PATH when set (e.g. /g2p-bridge). Bearer token per sender (BRIDGE_API_TOKENS); no tokens, no API.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import PurePath

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge_pipelines.api.handlers import WRITE_PLANS, disbursement_status_answer, envelope_status_answer
from bridge_pipelines.api.jsonio import JsonError, dumps, parse_json
from bridge_pipelines.api.models import RequestInvalid, parse_request
from bridge_pipelines.api.openapi import openapi_document
from bridge_pipelines.api.pool import PoolExhausted
from bridge_pipelines.api.service import Answer, ApiService, ServiceBusy
from bridge_pipelines.config import ConfigError, Settings
from bridge_pipelines.statements.inbox import copy_into_inbox, statement_id_for

log = logging.getLogger("bridge.api")

SENDER_KEY = "bridge.api_sender"
OPEN_PATHS = ("/ping", "/openapi.json")
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


def _json_error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps({"code": code, "detail": detail}), status_code=status, media_type="application/json",
                    headers=headers)


async def _send_json(send: Send, status: int, payload: dict, extra: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


class SenderAuthMiddleware:
    """401 unless `Authorization: Bearer <token>` is one of the configured tokens; the request then carries the
    token's sender (scope[SENDER_KEY]). Constant-time comparison against every token; tokens are never logged."""

    def __init__(self, app: ASGIApp, tokens: tuple[tuple[str, str], ...], open_paths: tuple[str, ...]) -> None:
        self.app = app
        self.tokens = [(sender, f"Bearer {token}".encode()) for sender, token in tokens]
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        sender = None
        for candidate, expected in self.tokens:  # no early exit: the time taken does not tell which one matched
            if hmac.compare_digest(given, expected) and sender is None:
                sender = candidate
        if sender is None:
            log.warning("API %s refused: %s bearer token", scope["path"], "wrong" if given else "no")
            await _send_json(send, 401, {"code": "UNAUTHORIZED", "detail": "a valid bearer token is required"},
                             [(b"www-authenticate", b"Bearer")])
            return
        scope[SENDER_KEY] = sender
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for bodies over the limit: at once from Content-Length, else while the body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, {"code": "BAD_REQUEST", "detail": "invalid Content-Length"})
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, {"code": "BODY_TOO_LARGE", "detail":
                                                 f"the body is larger than {self.max_bytes} bytes"})
                    return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"the body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


def _sender(request: Request) -> str:
    return request.scope[SENDER_KEY]


def _answer_response(answer: Answer) -> Response:
    headers = {"X-Bridge-Replayed": "true"} if answer.replayed else None
    return Response(answer.body, status_code=200, media_type="application/json", headers=headers)


def _g2p_endpoint(action: str, service_call: Callable[[ApiService, str, object], Answer]):
    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        service: ApiService = request.app.state.api_service
        sender = _sender(request)
        body = await request.body()
        try:
            parsed = parse_request(action, parse_json(body))
        except JsonError as error:
            return JSONResponse({"detail": [{"loc": ["body"], "msg": str(error), "type": "json_invalid"}]}, 422)
        except RequestInvalid as error:
            log.info("API %s from %r: 422 %s", action, sender, error)
            return Response(dumps(error.as_dict()), status_code=422, media_type="application/json")
        if parsed.header.sender_id != sender:
            log.warning("API %s: header.sender_id %r does not match the token's sender %r", action,
                        parsed.header.sender_id, sender)
            return _json_error(403, "SENDER_MISMATCH", "header.sender_id is not the sender this token belongs to")
        try:
            answer = await run_in_threadpool(service_call, service, sender, parsed)
        except (ServiceBusy, PoolExhausted) as error:
            log.warning("API %s %r from %r: 503 %s", action, parsed.header.message_id, sender, error)
            return _json_error(503, "BUSY", str(error), {"Retry-After": "5"})
        log.info("API %s %r from %r: %s%s in %.0f ms", action, parsed.header.message_id, sender, answer.status,
                 " (replay)" if answer.replayed else "", (time.perf_counter() - started) * 1000)
        return _answer_response(answer)
    endpoint.__name__ = action
    return endpoint


def _write_call(action: str) -> Callable[[ApiService, str, object], Answer]:
    plan_for = WRITE_PLANS[action]
    return lambda service, sender, parsed: service.write(sender, parsed, plan_for(parsed))


async def ping(request: Request) -> Response:
    return JSONResponse({"status": "ok", "message": "pong",
                         "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(request.app.state.root_path))


async def upload_mt940(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    sender = _sender(request)
    field = "statement_file"

    def invalid(msg: str, kind: str) -> Response:
        return JSONResponse({"detail": [{"loc": ["body", field], "msg": msg, "type": kind}]}, 422)

    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return invalid("a multipart/form-data body with a file field statement_file is required", "missing")
    try:
        async with request.form(max_files=1, max_fields=20) as form:
            upload = form.get(field)
            if not isinstance(upload, UploadFile):
                return invalid("a file is required", "missing")
            data = await upload.read()
            client_name = upload.filename or ""
    except HTTPException as error:
        if error.status_code != 400:  # 413 from the body limit
            raise
        return JSONResponse({"detail": [{"loc": ["body"], "msg": f"malformed multipart body: {error.detail}",
                                         "type": "multipart_invalid"}]}, 422)
    except Exception as error:  # noqa: BLE001 - python-multipart's own parse errors vary by version
        return JSONResponse({"detail": [{"loc": ["body"], "msg": f"malformed multipart body: {error}",
                                         "type": "multipart_invalid"}]}, 422)
    if not data:
        return invalid("the file is empty", "empty")
    if len(data) > settings.statement_max_bytes:
        return _json_error(413, "BODY_TOO_LARGE", f"statement files are limited to {settings.statement_max_bytes} "
                           "bytes (BRIDGE_STATEMENT_MAX_BYTES)")
    sha = hashlib.sha256(data).hexdigest()
    statement_id = statement_id_for(sha)
    suffix = PurePath(client_name.replace("\\", "/")).suffix if client_name else ""
    file_name = f"api-{statement_id}-{uuid.uuid4().hex[:12]}{suffix if _SAFE_SUFFIX.match(suffix) else '.mt940'}"
    await run_in_threadpool(copy_into_inbox, settings.statement_inbox, file_name, data)
    log.info("API upload_mt940 from %r: %s bytes stored as %s (statement %s)", sender, len(data), file_name,
             statement_id)
    header = {
        "version": "1.0.0", "message_id": str(uuid.uuid4()),
        "message_ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "action": "upload_mt940",
        "status": "succ", "status_reason_code": None, "status_reason_message": None, "total_count": 1,
        "completed_count": 1, "sender_id": "g2p-bridge", "receiver_id": sender, "is_msg_encrypted": False,
        "meta": {"file_name": file_name, "sha256": sha, "size": len(data)},
    }
    return Response(dumps({"header": header, "message": statement_id}), media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {413: "BODY_TOO_LARGE", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return _json_error(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("API %s failed", request.url.path, exc_info=exc)
    return _json_error(500, "INTERNAL_ERROR", "the request failed inside the bridge; it was logged")


def create_api_app(database_url: str, settings: Settings) -> Starlette:
    """The API app. Refuses to exist without tokens: no API unless configured (BRIDGE_API_TOKENS)."""
    if not settings.api_tokens:
        raise ConfigError("BRIDGE_API_TOKENS is not set: the PBMS API is off until tokens are configured "
                          "(sender_id:token,sender2:token2)")
    if importlib.util.find_spec("python_multipart") is None:
        raise RuntimeError("python-multipart is not installed: /upload_mt940 needs it (reinstall the bridge)")
    routes = [Route(f"/{action}", _g2p_endpoint(action, _write_call(action)), methods=["POST"])
              for action in WRITE_PLANS]
    routes += [
        Route("/get_disbursement_envelope_status",
              _g2p_endpoint("get_disbursement_envelope_status",
                            lambda service, sender, parsed: envelope_status_answer(service, parsed)),
              methods=["POST"]),
        Route("/get_disbursement_status",
              _g2p_endpoint("get_disbursement_status",
                            lambda service, sender, parsed: disbursement_status_answer(service, parsed)),
              methods=["POST"]),
        Route("/upload_mt940", upload_mt940, methods=["POST"]),
        Route("/ping", ping, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    root = settings.api_root_path
    service_holder: dict[str, ApiService] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        service = service_holder.get("service")
        if service is not None:
            service.close()

    app = Starlette(
        routes=[Mount(root, routes=routes)] if root else routes,
        middleware=[
            Middleware(SenderAuthMiddleware, tokens=settings.api_tokens,
                       open_paths=tuple(root + p for p in OPEN_PATHS)),
            Middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    service_holder["service"] = app.state.api_service = ApiService(database_url, settings)
    app.state.settings = settings
    app.state.root_path = root
    return app


def serve_api(settings: Settings, database_url: str) -> int:
    """`bridge api`: run the API alone until Ctrl-C."""
    from bridge_pipelines.serving import serve

    app = create_api_app(database_url, settings)
    print(f"PBMS API for sender(s) {', '.join(s for s, _ in settings.api_tokens)} on "
          f"http://{settings.host}:{settings.api_port}{settings.api_root_path}", flush=True)
    serve(app, host=settings.host, port=settings.api_port, name="PBMS API")
    return 0
