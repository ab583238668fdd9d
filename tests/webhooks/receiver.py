"""A real HTTP receiver for webhook tests: an aiohttp server on a free port.

Each request is answered as `behave` decides (a status after an optional
pause), and recorded: what came in, when, and what was answered when.
`stop` and `start` take it off the network and bring it back on the same
port, like a partner's endpoint that goes away for a while.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiohttp import web

from ordercast.webhooks.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from tests.support import free_port

T = TypeVar("T")


@dataclass
class Request:
    """One request as the receiver saw it."""

    event_id: str
    body: bytes
    headers: dict[str, str]
    received_at: float
    """time.monotonic() on arrival."""
    attempt: int
    """How many requests for this event id came before, plus one."""
    status: int | None = None
    answered_at: float | None = None

    @property
    def document(self) -> dict[str, Any]:
        loaded: dict[str, Any] = orjson.loads(self.body)
        return loaded

    def signed_with(self, secret: str) -> bool:
        return verify(
            secret,
            self.headers[EVENT_ID_HEADER],
            self.headers[TIMESTAMP_HEADER],
            self.body,
            self.headers[SIGNATURE_HEADER],
            time.time(),
        )


Behaviour = Callable[[Request], Awaitable[int]]
"""Decides the answer to a request (and may sleep first)."""


async def always_ok(request: Request) -> int:
    return 200


@dataclass
class Receiver:
    behave: Behaviour = always_ok
    port: int = field(default_factory=free_port)
    requests: list[Request] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, http: web.Request) -> web.Response:
        body = await http.read()
        event_id = http.headers.get(EVENT_ID_HEADER, "")
        seen = sum(1 for r in self.requests if r.event_id == event_id)
        request = Request(
            event_id, body, dict(http.headers), time.monotonic(), seen + 1
        )
        self.requests.append(request)
        request.status = await self.behave(request)
        request.answered_at = time.monotonic()
        return web.Response(status=request.status)

    # what arrived

    def delivered(self) -> list[Request]:
        """Requests answered 2xx, in the order they were answered."""
        ok = [r for r in self.requests if r.status is not None and r.status < 300]
        return sorted(ok, key=lambda r: r.answered_at or 0.0)

    def event_ids(self) -> set[str]:
        """Every event id that reached the receiver at all."""
        return {r.event_id for r in self.requests}

    def delivered_ids(self) -> set[str]:
        return {r.event_id for r in self.delivered()}


async def wait_for(
    check: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.05
) -> None:
    """Poll `check` on the event loop until it holds."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout_s:.1f} s")
        await asyncio.sleep(step_s)


async def eventually(
    read: Callable[[], Awaitable[T]], good: Callable[[T], bool], timeout_s: float
) -> T:
    """Read until what is read is good; return it."""
    deadline = time.monotonic() + timeout_s
    while not good(found := await read()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {found!r} after {timeout_s:.1f} s")
        await asyncio.sleep(0.05)
    return found
