"""The bus port: announces every recorded event to whoever delivers it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ordercast.lifecycle import Event

Handler = Callable[[Sequence[Event]], Awaitable[None]]
"""Receives events in the order they were published."""


@dataclass(frozen=True)
class CourierPosition:
    """The latest fix of an order's courier, as followers receive it."""

    order_id: str
    lat: float
    lng: float
    at: str
    """When the fix was reported, RFC 3339 UTC (`format_at`)."""

    def fields(self) -> dict[str, Any]:
        """`lat`, `lng` and `at`, as in the snapshot and `courier.location`."""
        return {"lat": self.lat, "lng": self.lng, "at": self.at}


PositionHandler = Callable[[CourierPosition], Awaitable[None]]
"""Receives courier positions, each order's in the order they were published."""

ResumeHandler = Callable[[], Awaitable[None]]
"""Called after delivery was interrupted and has started again."""


class Bus(Protocol):
    """Announces events after they are stored, and courier positions.

    Contract for every implementation:

    - Events are published only after the store made them durable, so a
      subscriber that misses one (a bus restart, a dropped message) can read
      it back from the store; the bus is for speed, the store for truth.
    - Within one order, handlers receive the events one publisher published
      in seq order. Events of one order published by two nodes may cross;
      the gateway puts them in order (it drops what it has already passed
      on, and reads a gap from the store).
    - Delivery is at most once per handler. Gaps are detected by the
      notifier (a seq it did not expect) and filled from the store.
    - When delivery was interrupted (the connection to a shared bus broke),
      the resume handlers are called once it runs again, so that subscribers
      catch up from the store on whatever the interruption swallowed.
    - The latest courier position of each order is kept for a while
      (`latest_position`) and every position published is delivered to the
      position handlers, at most once.
    """

    async def start(self) -> None:
        """Connect and begin delivering to subscribed handlers."""

    async def close(self) -> None:
        """Stop delivering; pending publishes may be dropped."""

    async def ping(self) -> None:
        """Return once the bus answers.

        Raises:
            BusError: it does not.
        """

    async def publish(self, events: Sequence[Event]) -> None:
        """Announce events, in the order given.

        Raises:
            BusError: the announcement failed. The events are stored all the
                same; followers will get them when they resume.
        """

    def subscribe(self, handler: Handler) -> None:
        """Call `handler` with every batch of published events from now on."""

    async def publish_position(self, position: CourierPosition) -> None:
        """Keep `position` as its order's latest and announce it.

        Raises:
            BusError: it was neither kept nor announced.
        """

    def subscribe_positions(self, handler: PositionHandler) -> None:
        """Call `handler` with every courier position published from now on."""

    async def latest_position(self, order_id: str) -> CourierPosition | None:
        """The order's latest courier position, if one was published lately.

        Raises:
            BusError: the bus could not be asked.
        """

    def on_resume(self, handler: ResumeHandler) -> None:
        """Call `handler` each time delivery starts again after an interruption."""
