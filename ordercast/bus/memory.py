"""The embedded runtime's bus: handlers in the same process, called in order."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ordercast.bus.base import Handler
from ordercast.lifecycle import Event

logger = logging.getLogger(__name__)


class MemoryBus:
    """`Bus` within one process: `publish` awaits every handler in turn."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._handlers.clear()

    async def publish(self, events: Sequence[Event]) -> None:
        for handler in self._handlers:
            try:
                await handler(events)
            except Exception:
                # One broken handler must not stop the others from hearing.
                logger.exception("bus handler %r failed", handler)

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)
