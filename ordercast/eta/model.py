"""The ETA of an order: a pure function over coefficients shipped as JSON.

Two linear models, trained by `ordercast train-eta` (`ordercast.eta.train`):

- preparation: minutes from placement until the food is ready, learnt from
  Grubhub's placement and ready times;
- ride: minutes from pickup to the door, learnt from the Zomato table
  (its duration less its order-to-pickup gap), on the straight-line
  distance and, when the order's details give them, traffic, weather,
  vehicle and the like.

A feature the order does not give is taken at its training mean, so an order
with nothing but coordinates gets the average case. The coefficients are read
once; `estimate` does no I/O and no numpy, so it is cheap on every status
change and courier fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

from ordercast.lifecycle import Status

COEFFICIENTS = "coefficients.json"
"""The shipped model, next to this module; `ordercast train-eta` rewrites it."""

MIN_RIDE_MINUTES = 1.0
"""No ride is predicted shorter than this, whatever a linear model says."""

MAX_MINUTES = 24 * 60.0
"""No preparation or ride is predicted longer than a day: a linear model fed
an absurd detail would otherwise predict an absurd time, or overflow."""

EARTH_RADIUS_KM = 6371.0

CATEGORIES = {
    "traffic": ("Low", "Medium", "High", "Jam"),
    "weather": ("Sunny", "Cloudy", "Windy", "Fog", "Stormy", "Sandstorms"),
    "vehicle": ("bicycle", "electric_scooter", "scooter", "motorcycle"),
    "city": ("Urban", "Metropolitian", "Semi-Urban"),
    "orderType": ("Snack", "Meal", "Drinks", "Buffet"),
}
"""Order details read as categories, with the values the training data uses."""

NUMBERS = {"multipleDeliveries": (0.0, 3.0), "vehicleCondition": (0.0, 3.0)}
"""Order details read as numbers, with the range the training data covers: a
linear model knows nothing outside it, so a value there counts as not given."""


@dataclass(frozen=True)
class Point:
    """A position in WGS84 degrees."""

    lat: float
    lng: float

    def distance_km(self, other: Point) -> float:
        """Great-circle distance (haversine)."""
        lat1, lat2 = math.radians(self.lat), math.radians(other.lat)
        dlat, dlng = lat2 - lat1, math.radians(other.lng - self.lng)
        h = math.sin(dlat / 2) ** 2
        h += math.cos(lat1) * math.cos(lat2) * math.sin(dlng / 2) ** 2
        return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


@dataclass(frozen=True)
class Linear:
    """intercept + sum(coef * x); a missing x is taken at its training mean."""

    intercept: float
    coefficients: dict[str, float]
    means: dict[str, float]

    def predict(self, features: dict[str, float]) -> float:
        total = self.intercept
        for name, coef in self.coefficients.items():
            total += coef * features.get(name, self.means[name])
        return total

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Linear:
        rows = body["features"]
        return cls(
            float(body["intercept"]),
            {row["name"]: float(row["coef"]) for row in rows},
            {row["name"]: float(row["mean"]) for row in rows},
        )


@dataclass(frozen=True)
class Model:
    """The preparation and ride models."""

    preparation: Linear
    ride: Linear

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Model:
        return cls(
            Linear.from_json(body["preparation"]), Linear.from_json(body["ride"])
        )


@cache
def shipped_model() -> Model:
    """The model in `coefficients.json`, read once."""
    text = (resources.files("ordercast.eta") / COEFFICIENTS).read_text()
    return Model.from_json(json.loads(text))


@dataclass(frozen=True)
class Trip:
    """What the ETA depends on, gathered from an order's events and its courier."""

    status: Status
    placed_at: datetime
    pickup: Point | None = None
    """The restaurant."""
    dropoff: Point | None = None
    """The customer."""
    picked_up_at: datetime | None = None
    courier: Point | None = None
    """The courier's latest position, if one was reported."""
    details: dict[str, Any] = field(default_factory=dict)
    """The order's details (traffic, weather, vehicle, …) as created."""
    ride_min: float | None = None
    """The shipped model's ride, worked out once from the places and details
    (`with_ride`): they never change, and every event and fix needs it."""


def ride_features(trip: Trip) -> dict[str, float]:
    """The ride model's inputs that this trip gives; the rest stay unknown."""
    features: dict[str, float] = {}
    if trip.pickup is not None and trip.dropoff is not None:
        features["distance_km"] = trip.pickup.distance_km(trip.dropoff)
    for name, values in CATEGORIES.items():
        given = trip.details.get(name)
        if given in values:
            for value in values:
                features[f"{name}={value}"] = 1.0 if given == value else 0.0
    festival = trip.details.get("festival")
    if isinstance(festival, bool):
        features["festival"] = 1.0 if festival else 0.0
    for name, (least, most) in NUMBERS.items():
        number = _number(trip.details.get(name))
        if number is not None and least <= number <= most:
            features[name] = number
    return features


def estimate(trip: Trip, now: datetime, model: Model | None = None) -> datetime | None:
    """When the order should reach the customer, or None once it is final.

    Before pickup: when the food is ready (placement plus the preparation
    model, or now if that has passed) plus the ride. After pickup: the ride
    from the pickup time, or, with a courier position, the share of the ride
    still ahead from now. Never earlier than `now`.
    """
    if trip.status.is_terminal:
        return None
    if model is None and trip.ride_min is not None:
        ride_min, model = trip.ride_min, shipped_model()
    else:
        model = model or shipped_model()
        ride_min = ride_minutes(trip, model)
    if trip.status in (Status.PICKED_UP, Status.IN_DELIVERY):
        return _after_pickup(trip, now, ride_min)
    preparation_min = _bounded(model.preparation.predict({}), 0.0)
    ready_at = trip.placed_at + timedelta(minutes=preparation_min)
    return max(ready_at, now) + timedelta(minutes=ride_min)


def ride_minutes(trip: Trip, model: Model | None = None) -> float:
    """The ride model's minutes from pickup to the door, for this trip."""
    model = model or shipped_model()
    return _bounded(model.ride.predict(ride_features(trip)), MIN_RIDE_MINUTES)


def with_ride(trip: Trip) -> Trip:
    """`trip` carrying its ride minutes under the shipped model."""
    return replace(trip, ride_min=ride_minutes(trip))


def _bounded(minutes: float, least: float) -> float:
    """`minutes` within [least, MAX_MINUTES]; a non-finite prediction is the most."""
    if not math.isfinite(minutes):
        return MAX_MINUTES
    return min(max(minutes, least), MAX_MINUTES)


def _after_pickup(trip: Trip, now: datetime, ride_min: float) -> datetime:
    share = _share_ahead(trip)
    if share is not None:
        return now + timedelta(minutes=_bounded(ride_min * share, 0.0))
    picked_up_at = trip.picked_up_at or now
    return max(now, picked_up_at + timedelta(minutes=ride_min))


def _share_ahead(trip: Trip) -> float | None:
    """How much of the ride is still ahead: 0 at the door, 1 at the restaurant,
    more for a courier farther from the customer than the restaurant is."""
    if trip.courier is None or trip.pickup is None or trip.dropoff is None:
        return None
    whole_km = trip.pickup.distance_km(trip.dropoff)
    if whole_km <= 0:
        return 0.0
    return trip.courier.distance_km(trip.dropoff) / whole_km


def point_of(value: Any) -> Point | None:
    """A `{"lat": …, "lng": …}` object as a Point, or None if it is not one."""
    if not isinstance(value, dict):
        return None
    lat, lng = _number(value.get("lat")), _number(value.get("lng"))
    if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return None
    return Point(lat, lng)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
