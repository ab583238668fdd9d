"""The bus port: announces every recorded event to whoever delivers it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from ordercast.lifecycle import Event

Handler = Callable[[Sequence[Event]], Awaitable[None]]
"""Receives events in the order they were published."""


class Bus(Protocol):
    """Announces events after they are stored.

    Contract for every implementation:

    - Events are published only after the store made them durable, so a
      subscriber that misses one (a bus restart, a dropped message) can read
      it back from the store; the bus is for speed, the store for truth.
    - Within one order, handlers receive events in seq order.
    - Delivery is at most once per handler. Gaps are detected by the
      notifier (a seq it did not expect) and filled from the store.
    """

    async def start(self) -> None:
        """Connect and begin delivering to subscribed handlers."""

    async def close(self) -> None:
        """Stop delivering; pending publishes may be dropped."""

    async def publish(self, events: Sequence[Event]) -> None:
        """Announce events, in the order given.

        Raises:
            BusError: the announcement failed. The events are stored all the
                same; followers will get them when they resume.
        """

    def subscribe(self, handler: Handler) -> None:
        """Call `handler` with every batch of published events from now on."""
