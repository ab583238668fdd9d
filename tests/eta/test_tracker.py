"""Trips rebuilt from events, the way the tracker keeps them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ordercast.eta.model import Point
from ordercast.eta.tracker import apply_event
from ordercast.lifecycle import Event, Status

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def event(seq: int, name: str, status: Status, **data: object) -> Event:
    return Event("o-1", seq, f"e{seq}", name, status, T0 + timedelta(minutes=seq), data)


RECEIVED = event(
    1,
    "order.received",
    Status.RECEIVED,
    details={"pickup": {"lat": 1.0, "lng": 2.0}, "dropoff": {"lat": 1.1, "lng": 2.1}},
)


def test_the_first_event_starts_the_trip_with_its_places() -> None:
    trip = apply_event(None, RECEIVED)

    assert trip is not None
    assert trip.placed_at == RECEIVED.at
    assert trip.pickup == Point(1.0, 2.0)
    assert trip.dropoff == Point(1.1, 2.1)


def test_a_trip_follows_the_status_and_remembers_the_pickup_time() -> None:
    trip = apply_event(None, RECEIVED)
    for later in (
        event(2, "order.accepted", Status.ACCEPTED),
        event(3, "courier.assigned", Status.COURIER_ASSIGNED, courierId="c-1"),
        event(4, "order.picked_up", Status.PICKED_UP),
        event(5, "delivery.started", Status.IN_DELIVERY),
    ):
        trip = apply_event(trip, later)

    assert trip is not None
    assert trip.status is Status.IN_DELIVERY
    assert trip.picked_up_at == T0 + timedelta(minutes=4)


def test_a_trip_seen_from_the_middle_is_unknown() -> None:
    assert apply_event(None, event(2, "order.accepted", Status.ACCEPTED)) is None


def test_an_order_without_details_has_no_places() -> None:
    trip = apply_event(None, event(1, "order.received", Status.RECEIVED))

    assert trip is not None
    assert trip.pickup is None
    assert trip.details == {}
