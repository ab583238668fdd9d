"""Each followed order's trip, kept up to date, and the ETAs that come of it.

The notifier and the hub ask for the ETA of events they send; the hub shows
the tracker every courier position it passes on. A trip the tracker has not
followed from the start (an order created before a restart, or on another
node) is rebuilt from the order's log. Memory is bounded: the least recently
used trips are forgotten first, and rebuilt when needed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from ordercast.eta.model import Point, Trip
from ordercast.eta.trips import eta_text, fold
from ordercast.lifecycle import Event
from ordercast.store.base import Store

MAX_TRIPS = 50_000
"""Trips kept in memory; past this the least recently used is forgotten."""


RECENT_ETAS = 8
"""ETAs remembered per order: an event's frame is built more than once (for
followers, for the command's answer), and each time must not read the log."""


@dataclass(frozen=True)
class _Known:
    seq: int
    """Seq of the last event applied to `trip`."""
    trip: Trip
    recent: dict[int, str | None] = field(default_factory=dict)
    """ETAs of the order's latest events, by seq."""


class EtaTracker:
    """Trips of orders, as of their latest event and courier position."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_trips: int = MAX_TRIPS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_trips = max_trips
        self._trips: OrderedDict[str, _Known] = OrderedDict()

    def observe(self, event: Event) -> None:
        """Note the next event of an order, if its trip is known (no I/O)."""
        known = self._trips.get(event.order_id)
        if event.name == "order.received" or (known and known.seq == event.seq - 1):
            before = known.trip if known else None
            trip, [eta] = fold(before, [event])
            self._keep(event.order_id, event.seq, trip, {event.seq: eta})

    async def etas(self, order_id: str, events: Sequence[Event]) -> list[str | None]:
        """The ETA each of `events` announces (`ordercast.eta.trips.event_eta`).

        `events` are consecutive events of one order, in seq order. Reads the
        log before them from the store unless the trip is known up to there.
        """
        if not events:
            return []
        known = self._trips.get(order_id)
        if known is not None and all(e.seq in known.recent for e in events):
            return [known.recent[e.seq] for e in events]
        trip, etas = fold(await self._trip_before(order_id, events[0].seq), events)
        recent = {e.seq: eta for e, eta in zip(events, etas, strict=True)}
        self._keep(order_id, events[-1].seq, trip, recent)
        return etas

    async def current(self, order_id: str, seq: int) -> str | None:
        """The ETA now, with the courier's latest position: for a snapshot.

        `seq` is the order's last seq; a trip known only up to an earlier
        event is rebuilt from the log.
        """
        known = self._trips.get(order_id)
        if known is None or known.seq != seq:
            trip = await self._trip_before(order_id, seq + 1)
            self._keep(order_id, seq, trip)
            known = self._trips.get(order_id)
        return eta_text(known.trip if known else None, self.clock())

    def at_position(self, order_id: str, lat: float, lng: float) -> str | None:
        """The ETA with the courier at (lat, lng); None if the trip is unknown."""
        known = self._trips.get(order_id)
        if known is None:
            return None
        trip = replace(known.trip, courier=Point(lat, lng))
        self._trips[order_id] = _Known(known.seq, trip, known.recent)
        return eta_text(trip, self.clock())

    async def _trip_before(self, order_id: str, seq: int) -> Trip | None:
        known = self._trips.get(order_id)
        if known is not None and known.seq == seq - 1:
            return known.trip
        if seq <= 1:
            return None
        trip, _ = fold(None, await self.store.read_events(order_id, 0, seq - 1))
        return trip

    def _keep(
        self,
        order_id: str,
        seq: int,
        trip: Trip | None,
        etas: dict[int, str | None] | None = None,
    ) -> None:
        """Remember `trip` as of `seq`, unless a later one is known already."""
        known = self._trips.get(order_id)
        if trip is None or (known is not None and known.seq > seq):
            return
        recent = {**known.recent, **(etas or {})} if known is not None else etas or {}
        if len(recent) > RECENT_ETAS:
            recent = {s: recent[s] for s in sorted(recent)[-RECENT_ETAS:]}
        if known is not None and known.trip.courier is not None:
            trip = replace(trip, courier=known.trip.courier)
        self._trips[order_id] = _Known(seq, trip, recent)
        self._trips.move_to_end(order_id)
        while len(self._trips) > self.max_trips:
            self._trips.popitem(last=False)
