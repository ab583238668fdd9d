"""Helpers for tests that talk to a real server process over real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ordercast.auth import issue_token
from ordercast.lifecycle import Role

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

T = TypeVar("T")

SECRET = "test-secret-of-at-least-thirty-two-bytes"
UNIT_S = float(os.environ.get("ORDERCAST_TEST_UNIT_S", "0.2"))
"""One unit of real waiting in tests; scale it up on a slow machine."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token(role: str, subject: str) -> str:
    return issue_token(SECRET, Role(role), subject)


def auth(role: str, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, subject)}"}


OPS = auth("ops", "ops-1")


@dataclass
class Server:
    """An `ordercast serve` process on a free port and a SQLite file."""

    db_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    program: tuple[str, ...] = ("-m", "ordercast", "serve")
    """What Python runs, before `--port N`."""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, role: str = "ops", subject: str = "ops-1", **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        extra = f"&{params}" if params else ""
        return f"ws://127.0.0.1:{self.port}/ws?token={token(role, subject)}{extra}"

    def start(self, timeout_s: float = 20.0) -> Server:
        self.launch()
        return self.wait_ready(timeout_s)

    def launch(self) -> None:
        """Start the process without waiting for it (see `wait_ready`)."""
        env = {
            **os.environ,
            "ORDERCAST_DATABASE_URL": f"sqlite:///{self.db_path}",
            "ORDERCAST_TOKEN_SECRET": SECRET,
            **self.env,
        }
        self.log_path = self.db_path.with_suffix(f".{self.port}.log")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self.program, "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = 20.0) -> Server:
        """Wait until `/healthz` answers. Raises: RuntimeError if it does not."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not answer in {timeout_s} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no drain, no flush, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


@contextmanager
def running(db_path: Path, **env: str) -> Iterator[Server]:
    server = Server(db_path, env=env).start()
    try:
        yield server
    finally:
        server.stop()


def create_order(
    client: httpx.Client, order_id: str, customer: str = "cu-1", restaurant: str = "r-1"
) -> dict[str, Any]:
    response = client.post(
        "/orders",
        json={"orderId": order_id, "customerId": customer, "restaurantId": restaurant},
        headers=OPS,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def command(
    client: httpx.Client,
    order_id: str,
    name: str,
    headers: dict[str, str] = OPS,
    **fields: Any,
) -> httpx.Response:
    return client.post(
        f"/orders/{order_id}/commands",
        json={"command": name, **fields},
        headers=headers,
    )


def frames_of(raw: list[str]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in raw]


# helpers for end-to-end tests

LONG_DEADLINES = {
    "ORDERCAST_RESTAURANT_TIMEOUT_S": "600",
    "ORDERCAST_DISPATCH_TIMEOUT_S": "600",
}
"""Server settings under which no deadline fires during a test module."""

WAIT_S = 25 * UNIT_S
"""Longest a test waits for something that should happen at once."""


def unique_id(prefix: str = "o") -> str:
    """An id no other test uses, so tests can share one server."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def order_of(client: httpx.Client, order_id: str) -> dict[str, Any]:
    response = client.get(f"/orders/{order_id}", headers=OPS)
    assert response.status_code == 200, response.text
    return dict(response.json())


def events_of(client: httpx.Client, order_id: str, since: int = 0) -> list[Any]:
    response = client.get(
        f"/orders/{order_id}/events", params={"since": since}, headers=OPS
    )
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


def wait_until(check: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    """Poll `check` until it returns something other than None or False."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing after {timeout_s} s")
        time.sleep(UNIT_S / 4)


async def send_frame(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def receive_frame(ws: ClientConnection, timeout_s: float = WAIT_S) -> Any:
    """The next frame, decoded; fails the test if none comes in time."""
    async with asyncio.timeout(timeout_s):
        return json.loads(await ws.recv())


async def frames_before_pong(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every frame the server queued for `ws` before it got this ping.

    The server answers frames in order and pushes an event before it answers
    the command that caused it, so this returns every event of commands
    that were answered before the call.
    """
    await send_frame(ws, {"action": "ping"})
    frames = []
    while (frame := await receive_frame(ws))["type"] != "pong":
        frames.append(frame)
    return frames


async def subscribe(
    ws: ClientConnection, order_id: str, since: int | None = None
) -> dict[str, Any]:
    """Subscribe and return the `subscribed` answer; fails on an error frame."""
    frame: dict[str, Any] = {"action": "subscribe", "orderId": order_id}
    if since is not None:
        frame["since"] = since
    await send_frame(ws, frame)
    answer = await receive_frame(ws)
    assert answer["type"] == "subscribed", answer
    return dict(answer)
