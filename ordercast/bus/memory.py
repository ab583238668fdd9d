"""The embedded runtime's bus: handlers in the same process, called in order."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ordercast.bus.base import (
    CourierPosition,
    Handler,
    PositionHandler,
    ResumeHandler,
)
from ordercast.lifecycle import Event

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_POSITIONS = 100_000
"""Latest positions kept; past this the least recently reported is forgotten."""


class MemoryBus:
    """`Bus` within one process: `publish` awaits every handler in turn.

    Nothing comes between a publisher and the handlers, so delivery is never
    interrupted and the resume handlers are never called.
    """

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._position_handlers: list[PositionHandler] = []
        self._positions: OrderedDict[str, CourierPosition] = OrderedDict()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._handlers.clear()
        self._position_handlers.clear()

    async def ping(self) -> None:
        pass

    async def publish(self, events: Sequence[Event]) -> None:
        await _call_each(self._handlers, events)

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def publish_position(self, position: CourierPosition) -> None:
        self._positions[position.order_id] = position
        self._positions.move_to_end(position.order_id)
        if len(self._positions) > MAX_POSITIONS:
            self._positions.popitem(last=False)
        await _call_each(self._position_handlers, position)

    def subscribe_positions(self, handler: PositionHandler) -> None:
        self._position_handlers.append(handler)

    async def latest_position(self, order_id: str) -> CourierPosition | None:
        return self._positions.get(order_id)

    def on_resume(self, handler: ResumeHandler) -> None:
        pass


async def _call_each(handlers: list[Callable[[T], Awaitable[None]]], item: T) -> None:
    for handler in handlers:
        try:
            await handler(item)
        except Exception:
            # One broken handler must not stop the others from hearing.
            logger.exception("bus handler %r failed", handler)
