"""`ordercast watch`: follow one order, or every order, over the WebSocket.

The watcher prints every frame it receives. When the connection drops it
reconnects and, for one order, subscribes again with `since` set to the last
seq it saw, so it misses nothing and sees nothing twice (DESIGN.md, WebSocket
protocol). Following every order has no `since`; it simply subscribes again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from rich.console import Console
from rich.markup import escape
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from ordercast.errors import OrdercastError
from ordercast.wire.frames import ALL_ORDERS

logger = logging.getLogger(__name__)

Emit = Callable[[str], None]
"""Receives each frame's text, exactly as it came off the socket."""

FIRST_RETRY_S = 0.1
"""Wait before the first reconnect; each further wait is 1.5 times longer."""
LAST_RETRY_S = 5.0
"""Longest wait between reconnects."""


class WatchRefused(OrdercastError):
    """The server refused the connection or the subscription; retrying won't help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def websocket_url(http_url: str, token: str, lang: str | None = None) -> str:
    """The `/ws` URL of a server given by its HTTP URL, with the token attached.

    Browsers cannot set headers on a WebSocket, so the token goes in the query
    (DESIGN.md); `https` becomes `wss`.

    Raises:
        ValueError: not an http(s) or ws(s) URL with a host.
    """
    parts = urlsplit(http_url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ValueError(f"{http_url!r} is not a server URL like http://127.0.0.1:8000")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = {"token": token} | ({"lang": lang} if lang else {})
    path = parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


class Watcher:
    """Keeps one subscription alive across reconnects and passes frames on."""

    def __init__(
        self, url: str, order_id: str, emit: Emit, since_seq: int | None = 0
    ) -> None:
        """Args:
        url: the `ws://…/ws?token=…` URL.
        order_id: the order to follow, or `*` for every order.
        emit: called with each frame's text.
        since_seq: for one order, the last seq already seen (0: everything).
        """
        self.url = url
        self.order_id = order_id
        self.emit = emit
        self.last_seq = None if order_id == ALL_ORDERS else since_seq
        self.connections = 0
        """Connections opened so far; more than one means it resumed."""

    def subscribe_frame(self) -> str:
        """The `subscribe` frame for the next connection."""
        frame: dict[str, Any] = {"action": "subscribe", "orderId": self.order_id}
        if self.last_seq is not None:
            frame["since"] = self.last_seq
        return json.dumps(frame)

    async def run(self) -> None:
        """Follow until cancelled.

        Raises:
            WatchRefused: the server refused the token or the subscription,
                or nothing answered the first connection (a wrong URL, or
                no server yet); once connected, it reconnects for ever.
        """
        retry_s = FIRST_RETRY_S
        while True:
            opened = self.connections
            try:
                await self._follow_once()
            except InvalidStatus as exc:
                _raise_if_refused(exc)
                logger.warning("handshake answered %d", exc.response.status_code)
            except OSError as exc:
                if self.connections == 0:
                    host = urlsplit(self.url).netloc
                    raise WatchRefused(f"no server answers at {host} ({exc})") from exc
                logger.warning("connection lost (%s)", exc.__class__.__name__)
            except (ConnectionClosed, WebSocketException) as exc:
                logger.warning("connection lost (%s)", exc.__class__.__name__)
            if self.connections > opened:
                retry_s = FIRST_RETRY_S  # it was up: start the backoff over
            logger.warning("reconnecting in %.1f s", retry_s)
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 1.5, LAST_RETRY_S)

    async def _follow_once(self) -> None:
        async with connect(self.url, proxy=None) as websocket:
            self.connections += 1
            await websocket.send(self.subscribe_frame())
            await self._receive(websocket)

    async def _receive(self, websocket: ClientConnection) -> None:
        subscribed = False
        async for text in websocket:
            if isinstance(text, bytes):
                text = text.decode("utf-8", errors="replace")
            self.emit(text)
            frame = _parse(text)
            kind = frame.get("type")
            if kind == "error" and not subscribed:
                raise WatchRefused(f"subscribe refused: {frame.get('message')}")
            subscribed = subscribed or kind == "subscribed"
            self._note_seq(frame)

    def _note_seq(self, frame: dict[str, Any]) -> None:
        if self.last_seq is None or frame.get("type") != "order.event":
            return
        if frame.get("orderId") == self.order_id:
            self.last_seq = max(self.last_seq, int(frame["seq"]))


def _raise_if_refused(exc: InvalidStatus) -> None:
    """A 4xx handshake answer will not change on retry (403: a bad token)."""
    status = exc.response.status_code
    if 400 <= status < 500:
        reason = f"the server refused the handshake (HTTP {status})"
        raise WatchRefused(f"{reason}; check the token and URL") from exc


def _parse(text: str) -> dict[str, Any]:
    try:
        frame = json.loads(text)
    except ValueError:
        return {}
    return frame if isinstance(frame, dict) else {}


def raw_printer() -> Emit:
    """Print each frame exactly as received, one per line, flushed at once."""

    def emit(text: str) -> None:
        print(text, flush=True)

    return emit


def pretty_printer(console: Console) -> Emit:
    """Print one readable line per frame: time, order, seq, status, message."""

    def emit(text: str) -> None:
        console.print(describe(_parse(text)) or escape(text), highlight=False)

    return emit


def describe(frame: dict[str, Any]) -> str:
    """A one-line rich-markup rendering of a server frame ('' if unknown)."""
    kind = frame.get("type")
    order = escape(str(frame.get("orderId", "")))
    if kind == "order.event":
        at = str(frame.get("at", ""))[11:23]
        status = escape(str(frame.get("status", "")))
        message = escape(str(frame.get("message", "")))
        seq = frame.get("seq")
        return f"[dim]{at}[/] {order} #{seq} [bold]{status:<16}[/] {message}"
    if kind == "subscribed":
        snapshot = frame.get("snapshot") or {}
        where = f"{snapshot.get('status')} at seq {snapshot.get('seq')}"
        return f"[cyan]following {order}[/]" + (f" ({where})" if snapshot else "")
    if kind == "courier.location":
        return f"[dim]{order} courier at {frame.get('lat')}, {frame.get('lng')}[/]"
    if kind == "error":
        code = escape(str(frame.get("code")))
        return f"[red]error {code}[/]: {escape(str(frame.get('message')))}"
    return ""


async def follow(
    url: str,
    order_id: str,
    since_seq: int | None,
    emit: Emit,
) -> None:
    """Follow `order_id` (or `*`) at the `/ws` URL until cancelled.

    Raises:
        WatchRefused: the server refused the token or the subscription.
    """
    await Watcher(url, order_id, emit, since_seq).run()
