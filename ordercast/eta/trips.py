"""Trips rebuilt from an order's events, and the ETA each event announces.

Pure: no I/O. Every runtime folds an order's log through `apply_event` and
gets, for each event, the same `event_eta`: the arrival predicted from the
log up to that event, as of the event's time. It depends on nothing but the
log, so a follower gets the same value live, on resume, over HTTP and from
any runtime. Courier positions are not in the log; they refine the ETA of
snapshots and `courier.location` frames only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from ordercast.eta.model import Trip, estimate, point_of, with_ride
from ordercast.lifecycle import Event, Status
from ordercast.wire.frames import format_at


def apply_event(trip: Trip | None, event: Event) -> Trip | None:
    """The trip after `event`; None while the order's first event is unseen."""
    if event.name == "order.received":
        details = event.data.get("details")
        details = details if isinstance(details, dict) else {}
        return with_ride(
            Trip(
                status=event.status,
                placed_at=event.at,
                pickup=point_of(details.get("pickup")),
                dropoff=point_of(details.get("dropoff")),
                details=details,
            )
        )
    if trip is None:
        return None
    picked_up_at = trip.picked_up_at
    if event.status is Status.PICKED_UP and picked_up_at is None:
        picked_up_at = event.at
    return replace(trip, status=event.status, picked_up_at=picked_up_at)


def eta_text(trip: Trip | None, now: datetime) -> str | None:
    """`estimate` as the wire writes times; None for an unknown or final trip."""
    if trip is None:
        return None
    eta = estimate(trip, now)
    return None if eta is None else format_at(eta)


def event_eta(trip_after: Trip | None, event: Event) -> str | None:
    """The ETA `event` announces, given the trip once it is applied."""
    if trip_after is not None and trip_after.courier is not None:
        trip_after = replace(trip_after, courier=None)
    return eta_text(trip_after, event.at)


def fold(
    trip: Trip | None, events: Iterable[Event]
) -> tuple[Trip | None, list[str | None]]:
    """Apply `events` in seq order; the trip after them and each one's ETA."""
    etas: list[str | None] = []
    for event in events:
        trip = apply_event(trip, event)
        etas.append(event_eta(trip, event))
    return trip, etas
