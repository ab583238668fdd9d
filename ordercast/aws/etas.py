"""ETAs on AWS: the same values as the embedded runtime, read from DynamoDB.

The pure part is `ordercast.eta.trips`; this folds an order's events read
from the events table through it, remembering the trip between consecutive
events of one invocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ordercast.aws.store import DynamoStore
from ordercast.eta.model import Trip, point_of
from ordercast.eta.trips import eta_text, fold
from ordercast.lifecycle import Event


class EventEtas:
    """The ETA each event announces, and the ETA of an order now."""

    def __init__(self, store: DynamoStore) -> None:
        self.store = store
        self._trips: dict[str, tuple[int, Trip | None]] = {}

    def along(self, order_id: str, events: Sequence[Event]) -> list[str | None]:
        """ETAs of consecutive events of one order, in seq order."""
        if not events:
            return []
        first = events[0].seq
        known = self._trips.get(order_id)
        if known is not None and known[0] == first - 1:
            trip = known[1]
        else:
            before = self.store.read_events(order_id, 0, first - 1) if first > 1 else []
            trip, _ = fold(None, before)
        trip, etas = fold(trip, events)
        self._trips[order_id] = (events[-1].seq, trip)
        return etas

    def now(
        self, order_id: str, position: dict[str, Any] | None, now: datetime
    ) -> str | None:
        """The ETA now, from the whole log and the courier's latest position."""
        trip, _ = fold(None, self.store.read_events(order_id))
        courier = point_of(position)
        if trip is not None and courier is not None:
            trip = replace(trip, courier=courier)
        return eta_text(trip, now)
