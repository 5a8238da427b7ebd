"""Runtime fault injection for tests and demos (POST /admin/faults), as ASGI middleware.

A fault applies to the next `count` requests whose path starts with `path_prefix` (never to /admin or /health):
- error             answer `status` (default 500) at once; nothing is processed
- hang              wait `seconds`, then answer 503; nothing is processed (the client usually times out first)
- process_then_hang process the request (it is committed at the bank), then wait `seconds` before answering:
                    the bank has the request, the client times out and must retry (idempotency is tested here)
- slow              wait `seconds`, then process normally
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import asdict, dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MODES = ("error", "hang", "process_then_hang", "slow")
EXEMPT_PREFIXES = ("/admin", "/health")


class FaultError(ValueError):
    pass


@dataclass
class Fault:
    path_prefix: str
    mode: str
    count: int = 1
    seconds: float = 0.0
    status: int = 500

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Fault:
        try:
            fault = cls(
                path_prefix=str(body.get("path_prefix", "/")),
                mode=str(body["mode"]),
                count=int(body.get("count", 1)),
                seconds=float(body.get("seconds", 0.0)),
                status=int(body.get("status", 500)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FaultError(f"a fault needs mode ({', '.join(MODES)}), path_prefix, count, seconds: {exc}") from None
        if fault.mode not in MODES:
            raise FaultError(f"mode must be one of {', '.join(MODES)}")
        if fault.count < 1 or fault.seconds < 0 or not 400 <= fault.status <= 599:
            raise FaultError("count must be >= 1, seconds >= 0 and status a 4xx/5xx code")
        return fault


class FaultInjector:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, path: str) -> Fault | None:
        """The first armed fault for `path`, consuming one of its uses."""
        if path.startswith(EXEMPT_PREFIXES):
            return None
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return Fault(**asdict(fault))
        return None

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class FaultMiddleware:
    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fault = self.injector.take(scope["path"]) if scope["type"] == "http" else None
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.mode == "error":
            await _answer(send, fault.status, "INJECTED_FAULT", f"injected {fault.status} for {scope['path']}")
        elif fault.mode == "hang":
            await asyncio.sleep(fault.seconds)
            await _answer(send, 503, "INJECTED_HANG", f"injected hang of {fault.seconds}s for {scope['path']}")
        elif fault.mode == "slow":
            await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send)
        else:  # process_then_hang: hold the response back until the client has given up
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, hold)
            await asyncio.sleep(fault.seconds)
            try:
                for message in held:
                    await send(message)
            except OSError:  # the client is gone
                pass
