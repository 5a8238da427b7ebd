"""The example sponsor bank's HTTP API (Starlette). Every endpoint but /health needs `Authorization: Bearer <token>`.

Bodies are JSON; amounts are decimal strings. Errors answer {"code": ..., "message": ...} with a 4xx (the request
is refused: do not retry as is) or a 5xx (retry later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge_pipelines.bank.example_bank import ledger, payments, statements
from bridge_pipelines.bank.example_bank.db import ConnectionPool, ensure_schema
from bridge_pipelines.bank.example_bank.errors import BankError, bad_request
from bridge_pipelines.bank.example_bank.faults import Fault, FaultError, FaultInjector, FaultMiddleware
from bridge_pipelines.bank.example_bank.options import BankOptions, OptionError, OptionsHolder
from bridge_pipelines.config import Settings
from bridge_pipelines.serving import BearerAuthMiddleware

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024 * 1024


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Typed errors become their status; database trouble is a 503 (retryable); anything else a 500."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except BankError as exc:
            return _error(exc.status, exc.code, exc.message)
        except psycopg.OperationalError as exc:
            log.warning("example bank: database unavailable: %s", exc)
            return _error(503, "DATABASE_UNAVAILABLE", "the bank's database is unavailable; retry later")
        except Exception:
            log.exception("example bank: %s %s failed", request.method, request.url.path)
            return _error(500, "INTERNAL_ERROR", "the bank could not process the request; retry later")

    endpoint.__name__ = handler.__name__
    return endpoint


def create_bank_app(database_url: str, settings: Settings, *, pool_size: int = 8) -> Starlette:
    """The example bank as an ASGI app. Its schema is created at start-up (lifespan); close-day runs every
    settings.bank_statement_interval seconds when that is > 0."""
    pool = ConnectionPool(database_url, max_size=pool_size)
    options = OptionsHolder(BankOptions.from_settings(settings))
    faults = FaultInjector()

    def sync(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any) -> Any:
            return await run_in_threadpool(function, *args)

        return call

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "example-bank"})

    async def post_account(request: Request) -> Response:
        body = await _json_body(request)
        return JSONResponse(await sync(ledger.create_or_top_up_account)(pool, options.current, body))

    async def get_account(request: Request) -> Response:
        return JSONResponse(await sync(ledger.get_account)(pool, request.path_params["account_number"]))

    async def funds_check(request: Request) -> Response:
        return JSONResponse(await sync(ledger.check_funds)(pool, await _json_body(request)))

    async def funds_block(request: Request) -> Response:
        return JSONResponse(await sync(ledger.block_funds)(pool, await _json_body(request)))

    async def funds_release(request: Request) -> Response:
        return JSONResponse(await sync(ledger.release_funds)(pool, await _json_body(request)))

    async def post_batch(request: Request) -> Response:
        raw = await request.body()
        ack = await sync(payments.submit_payment_batch)(pool, options.current, raw)
        return Response(ack, media_type="application/json")

    async def get_batch(request: Request) -> Response:
        ack = await sync(payments.get_payment_batch)(pool, request.path_params["batch_id"])
        return Response(ack, media_type="application/json")

    async def close_day(request: Request) -> Response:
        body = await _json_body(request)
        day = body.get("business_date")
        try:
            business_date = date.fromisoformat(day) if day else None
        except (TypeError, ValueError):
            raise bad_request(f"business_date={day!r} is not a date YYYY-MM-DD") from None
        written = await sync(statements.close_day)(pool, options.current, business_date)
        current = options.current
        return JSONResponse({
            "business_date": (business_date or current.business_date()).isoformat(),
            "files": [s.file for s in written],
            "statements": [s.as_dict() for s in written],
        })

    async def admin_faults(request: Request) -> Response:
        if request.method == "DELETE":
            faults.reset()
        elif request.method == "POST":
            body = await _json_body(request)
            if body.get("reset"):
                faults.reset()
            for spec in body.get("faults", [body] if "mode" in body else []):
                try:
                    faults.add(Fault.parse(spec))
                except FaultError as exc:
                    raise bad_request(str(exc), "INVALID_FAULT") from None
        return JSONResponse({"faults": faults.listing()})

    async def admin_stats(request: Request) -> Response:
        return JSONResponse(await sync(ledger.stats)(pool))

    async def admin_options(request: Request) -> Response:
        if request.method == "POST":
            try:
                options.update(await _json_body(request))
            except OptionError as exc:
                raise bad_request(str(exc), "INVALID_OPTION") from None
        return JSONResponse(options.current.public())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(ensure_schema, database_url)
        task = None
        if settings.bank_statement_interval > 0:
            task = asyncio.create_task(_periodic_close_day(pool, options, settings.bank_statement_interval))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            pool.close()

    routes = [
        Route("/health", _guarded(health), methods=["GET"]),
        Route("/accounts", _guarded(post_account), methods=["POST"]),
        Route("/accounts/{account_number}", _guarded(get_account), methods=["GET"]),
        Route("/funds/check", _guarded(funds_check), methods=["POST"]),
        Route("/funds/block", _guarded(funds_block), methods=["POST"]),
        Route("/funds/release", _guarded(funds_release), methods=["POST"]),
        Route("/payments/batches", _guarded(post_batch), methods=["POST"]),
        Route("/payments/batches/{batch_id}", _guarded(get_batch), methods=["GET"]),
        Route("/statements/close-day", _guarded(close_day), methods=["POST"]),
        Route("/admin/faults", _guarded(admin_faults), methods=["GET", "POST", "DELETE"]),
        Route("/admin/stats", _guarded(admin_stats), methods=["GET"]),
        Route("/admin/options", _guarded(admin_options), methods=["GET", "POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BearerAuthMiddleware, token=settings.bank_token), Middleware(FaultMiddleware, injector=faults)],
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.pool = pool
    app.state.options = options
    app.state.faults = faults
    return app


async def _periodic_close_day(pool: ConnectionPool, options: OptionsHolder, interval: int) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            written = await run_in_threadpool(statements.close_day, pool, options.current, None)
            if written:
                log.info("example bank: periodic close-day wrote %d statement(s)", len(written))
        except Exception:
            log.exception("example bank: periodic close-day failed; trying again in %ss", interval)


def run_example_servers(settings: Settings, database_url: str) -> None:
    """Run the example bank and the example mapper until Ctrl-C / SIGTERM (`bridge bank`). Blocking."""
    from bridge_pipelines.bank.example_mapper import create_mapper_app
    from bridge_pipelines.serving import run_servers

    run_servers([
        ("example bank", create_bank_app(database_url, settings), settings.host, settings.bank_port),
        ("example mapper", create_mapper_app(settings), settings.host, settings.mapper_port),
    ])


def request_close_day(settings: Settings, business_date: date | None = None) -> list[str]:
    """Ask the running example bank to write its end-of-day statements now (`bridge bank close-day`).
    Returns the paths of the files written."""
    from bridge_pipelines.bank.example_bank_client import ExampleBankClient

    with ExampleBankClient.from_settings(settings) as bank:
        return list(bank.close_day(business_date)["files"])
