"""Connections and their subscriptions, independent of the socket library.

A connection pushes text frames through an outbox drained by one task, so a
slow socket delays only itself. Each subscription remembers the last seq it
passed on; that one number is what makes delivery exactly-once and in order:
an event at or below it is a duplicate and is dropped, an event past the next
one reveals a gap, which is filled from the store before anything else goes
out.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ordercast.lifecycle import Actor, Event
from ordercast.wire.frames import format_at

logger = logging.getLogger(__name__)

SendText = Callable[[str], Coroutine[Any, Any, None]]
Close = Callable[[int, str], Coroutine[Any, Any, None]]

CLOSE_SLOW_CONSUMER = 4008
"""Close code for a connection that fell too far behind; it should resume."""

CLOSE_RESUME = 4009
"""Close code for a connection that may have missed events the server cannot
send it (the bus was interrupted while it followed every order, or the store
failed while filling a gap). The client reconnects, to any node, and
subscribes again with `since` set to the last seq it saw."""


def new_connection_id() -> str:
    """An opaque id in the style of API Gateway's (`L0SM9cOFvHcCIhw=`)."""
    return secrets.token_urlsafe(12)


@dataclass
class Subscription:
    """One connection following one order."""

    order_id: str
    last_seq: int = 0
    """Seq of the last event passed to the connection."""
    catching_up: bool = True
    """While True, live events wait in `held` until history has been sent."""
    held: list[Event] = field(default_factory=list)
    active: bool = True
    behind_at: int | None = None
    """The order's seq when `Hub.catch_up` last found this subscription behind."""


@dataclass(eq=False)
class Connection:
    """An open client connection and what it follows."""

    actor: Actor
    lang: str
    send_text: SendText
    close_socket: Close
    connected_at: datetime
    source_ip: str = ""
    max_outbox_frames: int = 2048
    connection_id: str = field(default_factory=new_connection_id)
    last_active_at: datetime | None = None
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    follows_all: bool = False
    closed: bool = False
    _outbox: deque[str] = field(default_factory=deque)
    _sender: asyncio.Task[None] | None = None

    def push(self, text: str) -> None:
        """Queue a frame; it is sent after every frame queued before it."""
        if self.closed:
            return
        if len(self._outbox) >= self.max_outbox_frames:
            logger.warning(
                "slow connection dropped after %d queued frames",
                len(self._outbox),
                extra={"connection_id": self.connection_id},
            )
            self._outbox.clear()
            self.closed = True
            asyncio.get_running_loop().create_task(
                self.close_socket(
                    CLOSE_SLOW_CONSUMER,
                    "too far behind; reconnect and subscribe again "
                    "(with since for an order)",
                )
            )
            return
        self._outbox.append(text)
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._outbox and not self.closed:
                await self.send_text(self._outbox.popleft())
        except Exception as exc:  # the peer went away mid-send
            logger.warning(
                "push to a dead connection: %s",
                exc.__class__.__name__,
                extra={"connection_id": self.connection_id},
            )
            self.closed = True
        finally:
            self._sender = None

    def info(self) -> dict[str, object]:
        """What `GET /@connections/{id}` answers, in API Gateway's shape."""
        return {
            "connectionId": self.connection_id,
            "connectedAt": format_at(self.connected_at),
            "lastActiveAt": format_at(self.last_active_at or self.connected_at),
            "identity": {
                "sourceIp": self.source_ip,
                "role": self.actor.role.value,
                "subject": self.actor.subject,
            },
            "subscriptions": sorted(self.subscriptions),
        }

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket; the gateway forgets the connection when it ends."""
        self.closed = True
        await self.close_socket(code, reason)
