"""Trips rebuilt from events, and the ETA each event announces."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ordercast.eta.model import Point, estimate
from ordercast.eta.trips import apply_event, event_eta, fold
from ordercast.lifecycle import Event, Status
from ordercast.wire.frames import format_at

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


LOG = [
    RECEIVED,
    event(2, "order.accepted", Status.ACCEPTED),
    event(3, "courier.assigned", Status.COURIER_ASSIGNED, courierId="c-1"),
    event(4, "order.picked_up", Status.PICKED_UP),
    event(5, "delivery.started", Status.IN_DELIVERY),
    event(6, "order.delivered", Status.DELIVERED),
]


def test_each_event_announces_the_eta_of_the_log_up_to_it_at_its_time() -> None:
    _, etas = fold(None, LOG)

    for seq in range(1, len(LOG) + 1):
        trip, _ = fold(None, LOG[:seq])
        assert trip is not None
        expected = estimate(trip, LOG[seq - 1].at)
        assert etas[seq - 1] == (format_at(expected) if expected else None)
    assert etas[-1] is None
    assert all(isinstance(eta, str) for eta in etas[:-1])


def test_resuming_from_the_middle_announces_the_same_etas() -> None:
    _, whole = fold(None, LOG)
    trip, first = fold(None, LOG[:3])
    _, rest = fold(trip, LOG[3:])

    assert first + rest == whole


def test_a_courier_position_does_not_change_what_an_event_announced() -> None:
    trip, _ = fold(None, LOG[:4])
    assert trip is not None
    moved = replace(trip, courier=Point(1.09, 2.09))
    later = LOG[4]

    assert event_eta(apply_event(moved, later), later) == fold(trip, [later])[1][0]
