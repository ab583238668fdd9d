"""Keeping each followed order's trip up to date, and its ETA with it.

The notifier shows the tracker every event; the hub shows it every courier
position it passes on. A trip the tracker has not seen from the start (an
order created before a restart, or on another node) is rebuilt from the
order's event log the first time someone follows it. Memory is bounded: the
least recently used trips are forgotten first, and rebuilt when needed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from ordercast.eta.model import Point, Trip, estimate, point_of
from ordercast.lifecycle import Event, Status
from ordercast.store.base import Store
from ordercast.wire.frames import format_at

MAX_TRIPS = 50_000
"""Trips kept in memory; past this the least recently used is forgotten."""


def apply_event(trip: Trip | None, event: Event) -> Trip | None:
    """The trip after `event`; None while the order's first event is unseen."""
    if event.name == "order.received":
        details = event.data.get("details")
        details = details if isinstance(details, dict) else {}
        return Trip(
            status=event.status,
            placed_at=event.at,
            pickup=point_of(details.get("pickup")),
            dropoff=point_of(details.get("dropoff")),
            details=details,
        )
    if trip is None:
        return None
    picked_up_at = trip.picked_up_at
    if event.status is Status.PICKED_UP and picked_up_at is None:
        picked_up_at = event.at
    return replace(trip, status=event.status, picked_up_at=picked_up_at)


class EtaTracker:
    """Trips of orders, and the ETA each had when it last changed."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_trips: int = MAX_TRIPS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_trips = max_trips
        self._trips: OrderedDict[str, Trip] = OrderedDict()

    def observe(self, event: Event) -> None:
        """Note an event of an order nobody may be following (cheap, no I/O)."""
        known = self._trips.get(event.order_id)
        if known is not None or event.name == "order.received":
            self._keep(event.order_id, apply_event(known, event))

    async def after_event(self, event: Event) -> str | None:
        """The ETA once `event` is applied, as an RFC 3339 time (None if final).

        Reads the order's log from the store if its trip is not known here.
        """
        if event.order_id in self._trips or event.name == "order.received":
            self.observe(event)
        trip = await self.trip(event.order_id)
        return self._eta(trip)

    async def current(self, order_id: str) -> str | None:
        """The ETA now, for a snapshot."""
        return self._eta(await self.trip(order_id))

    def at_position(self, order_id: str, lat: float, lng: float) -> str | None:
        """The ETA with the courier at (lat, lng); None if the trip is unknown."""
        trip = self._trips.get(order_id)
        if trip is None:
            return None
        trip = replace(trip, courier=Point(lat, lng))
        self._keep(order_id, trip)
        return self._eta(trip)

    async def trip(self, order_id: str) -> Trip | None:
        """The order's trip, rebuilt from its log if needed; None if no order."""
        trip = self._trips.get(order_id)
        if trip is not None:
            self._trips.move_to_end(order_id)
            return trip
        for event in await self.store.read_events(order_id):
            trip = apply_event(trip, event)
        # an event noted while the log was read is at least as fresh
        fresher = self._trips.get(order_id)
        if fresher is not None:
            return fresher
        self._keep(order_id, trip)
        return trip

    def forget(self, order_id: str) -> None:
        """Drop the order's trip (it missed events); it is rebuilt when next needed."""
        self._trips.pop(order_id, None)

    def forget_all(self) -> None:
        """Drop every trip; each is rebuilt from its log when next needed."""
        self._trips.clear()

    def _eta(self, trip: Trip | None) -> str | None:
        if trip is None:
            return None
        eta = estimate(trip, self.clock())
        return None if eta is None else format_at(eta)

    def _keep(self, order_id: str, trip: Trip | None) -> None:
        if trip is None:
            return
        self._trips[order_id] = trip
        self._trips.move_to_end(order_id)
        while len(self._trips) > self.max_trips:
            self._trips.popitem(last=False)
