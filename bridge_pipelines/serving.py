"""Run ASGI apps with uvicorn: in a background thread (tests, `bridge up`) or blocking (`bridge bank`).

`start_server` binds the socket itself before the server starts, so port 0 gives a free port with no race, and it
returns only once the app's lifespan start-up has finished (or raises if it failed).
"""

from __future__ import annotations

import hmac
import json
import logging
import signal
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"


class ServerStartError(RuntimeError):
    pass


class BearerAuthMiddleware:
    """401 unless the request carries the bearer token (constant-time comparison). /health is open."""

    def __init__(self, app: ASGIApp, token: str, open_paths: tuple[str, ...] = ("/health",)) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"code": "UNAUTHORIZED", "message": "a valid bearer token is required"}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@dataclass
class ServerHandle:
    """A running server. `url` has no trailing slash; `stop()` is idempotent."""

    name: str
    host: str
    port: int
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        host = LOCALHOST if self.host in ("0.0.0.0", "") else self.host
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():  # a request hangs (e.g. an injected fault): stop waiting for it
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerStartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _config(app: ASGIApp, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
    )


def start_server(
    app: ASGIApp,
    *,
    host: str = LOCALHOST,
    port: int = 0,
    name: str = "server",
    log_level: str = "warning",
    startup_timeout: float = 30.0,
) -> ServerHandle:
    """Start `app` in a daemon thread on host:port (0 = a free port) and wait until it accepts requests."""
    sock = _bind(host, port)
    actual_port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, host, actual_port, log_level))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            failure.append(exc)
        finally:
            sock.close()

    thread = threading.Thread(target=run, name=f"{name}:{actual_port}", daemon=True)
    thread.start()
    waited = threading.Event()
    step = 0.01
    elapsed = 0.0
    while not server.started:
        if not thread.is_alive() or elapsed > startup_timeout:
            server.should_exit = True
            thread.join(5)
            reason = repr(failure[0]) if failure else "start-up failed (see the log above)"
            raise ServerStartError(f"{name} did not start on {host}:{actual_port}: {reason}")
        waited.wait(step)
        elapsed += step
    log.info("%s listening on http://%s:%s", name, host, actual_port)
    return ServerHandle(name=name, host=host, port=actual_port, _server=server, _thread=thread)


def run_servers(apps: Sequence[tuple[str, ASGIApp, str, int]], *, log_level: str = "info") -> None:
    """Run several apps (name, app, host, port) until SIGINT/SIGTERM, then stop them all. Blocking."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    handles: list[ServerHandle] = []
    try:
        for name, app, host, port in apps:
            handles.append(start_server(app, host=host, port=port, name=name, log_level=log_level))
            print(f"{name} listening on {handles[-1].url}", flush=True)
        while not stop.wait(0.5):
            dead = [h.name for h in handles if not h.running]
            if dead:
                raise ServerStartError(f"{', '.join(dead)} stopped unexpectedly")
    finally:
        for handle in reversed(handles):
            handle.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(app: ASGIApp, *, host: str = LOCALHOST, port: int, name: str = "server", log_level: str = "info") -> None:
    """Run one app until SIGINT/SIGTERM. Blocking."""
    run_servers([(name, app, host, port)], log_level=log_level)
