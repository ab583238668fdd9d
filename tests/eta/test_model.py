"""The ETA as a pure function of an order's trip."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ordercast.eta.model import (
    Linear,
    Model,
    Point,
    Trip,
    estimate,
    point_of,
    ride_features,
    shipped_model,
)
from ordercast.lifecycle import Status

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
RESTAURANT = Point(-10.93, -37.06)
CUSTOMER = Point(-10.95, -37.04)  # about 3.1 km away
FLAT = Model(
    preparation=Linear(15.0, {}, {}),
    ride=Linear(10.0, {"distance_km": 2.0}, {"distance_km": 5.0}),
)
"""15 minutes to cook; 10 minutes plus 2 per km to ride."""


def trip(status: Status = Status.RECEIVED, **fields: object) -> Trip:
    base = Trip(status, placed_at=NOW, pickup=RESTAURANT, dropoff=CUSTOMER)
    return replace(base, **fields)  # type: ignore[arg-type]


def minutes_after(eta: datetime | None, start: datetime) -> float:
    assert eta is not None
    return (eta - start).total_seconds() / 60


def test_before_pickup_the_eta_is_preparation_plus_ride() -> None:
    ride = 10.0 + 2.0 * RESTAURANT.distance_km(CUSTOMER)

    eta = estimate(trip(), NOW, FLAT)

    assert minutes_after(eta, NOW) == pytest.approx(15.0 + ride)


def test_food_that_should_be_ready_waits_no_longer_than_now() -> None:
    later = NOW + timedelta(minutes=40)

    eta = estimate(trip(Status.COURIER_ASSIGNED), later, FLAT)

    assert minutes_after(eta, later) == pytest.approx(
        10.0 + 2.0 * RESTAURANT.distance_km(CUSTOMER)
    )


def test_without_coordinates_the_ride_is_the_average_one() -> None:
    eta = estimate(trip(pickup=None, dropoff=None), NOW, FLAT)

    assert minutes_after(eta, NOW) == pytest.approx(15.0 + 10.0 + 2.0 * 5.0)


def test_after_pickup_the_ride_counts_from_the_pickup() -> None:
    picked_up_at = NOW + timedelta(minutes=20)
    ride = 10.0 + 2.0 * RESTAURANT.distance_km(CUSTOMER)

    eta = estimate(
        trip(Status.PICKED_UP, picked_up_at=picked_up_at), picked_up_at, FLAT
    )

    assert minutes_after(eta, picked_up_at) == pytest.approx(ride)


def test_a_courier_closer_to_the_customer_brings_the_eta_closer() -> None:
    halfway = Point(-10.94, -37.05)
    moving = trip(Status.IN_DELIVERY, picked_up_at=NOW)

    at_restaurant = estimate(replace(moving, courier=RESTAURANT), NOW, FLAT)
    at_halfway = estimate(replace(moving, courier=halfway), NOW, FLAT)
    at_door = estimate(replace(moving, courier=CUSTOMER), NOW, FLAT)

    assert at_restaurant is not None
    assert at_halfway is not None
    assert at_door is not None
    assert at_restaurant > at_halfway > at_door
    assert at_door == NOW


def test_a_courier_far_off_the_route_is_expected_later_than_the_whole_ride() -> None:
    # given a courier with the food, 110 km from the customer on a 3 km trip
    far_away = Point(-10.95, -36.04)
    moving = trip(Status.IN_DELIVERY, picked_up_at=NOW)

    at_restaurant = estimate(replace(moving, courier=RESTAURANT), NOW, FLAT)
    off_route = estimate(replace(moving, courier=far_away), NOW, FLAT)

    # then the ETA says so, bounded by a day
    assert at_restaurant is not None
    assert off_route is not None
    assert at_restaurant < off_route <= NOW + timedelta(days=1)


def test_a_late_courier_is_never_expected_in_the_past() -> None:
    much_later = NOW + timedelta(hours=3)

    eta = estimate(trip(Status.IN_DELIVERY, picked_up_at=NOW), much_later, FLAT)

    assert eta == much_later


@pytest.mark.parametrize(
    "status", [Status.DELIVERED, Status.CANCELLED, Status.REJECTED, Status.FAILED]
)
def test_a_final_order_has_no_eta(status: Status) -> None:
    assert estimate(trip(status), NOW, FLAT) is None


def test_details_feed_the_ride_model() -> None:
    details = {"traffic": "Jam", "vehicle": "bicycle", "festival": True}

    features = ride_features(trip(details=details))

    assert features["traffic=Jam"] == 1.0
    assert features["traffic=Low"] == 0.0
    assert features["vehicle=bicycle"] == 1.0
    assert features["festival"] == 1.0
    assert "weather=Sunny" not in features  # not given: taken at its mean


def test_unknown_detail_values_are_ignored() -> None:
    features = ride_features(trip(details={"traffic": "gridlock", "festival": "yes"}))

    assert set(features) == {"distance_km"}


@pytest.mark.parametrize("number", [-1e9, -1, 4, 1e12, float("nan"), float("inf")])
def test_a_number_outside_what_the_model_was_trained_on_counts_as_not_given(
    number: float,
) -> None:
    details = {"multipleDeliveries": number, "vehicleCondition": 2}

    features = ride_features(trip(details=details))

    assert "multipleDeliveries" not in features  # taken at its mean
    assert features["vehicleCondition"] == 2.0


def test_the_shipped_model_expects_heavier_traffic_to_take_longer() -> None:
    model = shipped_model()
    calm = trip(Status.IN_DELIVERY, picked_up_at=NOW, details={"traffic": "Low"})
    jammed = replace(calm, details={"traffic": "Jam"})

    assert minutes_after(estimate(jammed, NOW, model), NOW) > minutes_after(
        estimate(calm, NOW, model), NOW
    )


@pytest.mark.parametrize(
    ("value", "point"),
    [
        ({"lat": 1, "lng": 2.5}, Point(1.0, 2.5)),
        ({"lat": 91, "lng": 0}, None),
        ({"lat": "1", "lng": 2}, None),
        ({"lat": True, "lng": 2}, None),
        ({"lat": 1}, None),
        ([1, 2], None),
        (None, None),
    ],
)
def test_points_are_read_only_when_valid(value: object, point: Point | None) -> None:
    assert point_of(value) == point


@pytest.mark.parametrize("number", [1e12, 1e300, float("inf"), float("nan")])
def test_an_absurd_detail_gives_at_most_a_day_not_an_error(number: float) -> None:
    model = Model(
        preparation=Linear(15.0, {}, {}),
        ride=Linear(10.0, {"multipleDeliveries": 5.0}, {"multipleDeliveries": 1.0}),
    )
    absurd = trip(details={"multipleDeliveries": number})

    eta = estimate(absurd, NOW, model)

    assert 0 < minutes_after(eta, NOW) <= 15.0 + 24 * 60
