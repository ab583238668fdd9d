"""Grubhub Meal Delivery Routing Problem instances, read into plain data.

An instance folder (for example `../shared/data/grubhub-mdrp/0o100t100s1p100`
relative to the repository root) holds tab-separated files with a header
line: `orders.txt`, `couriers.txt`, `restaurants.txt` and
`instance_parameters.txt`. Times are integer minutes from the start of the
instance's operating period; x and y are metres. This module only reads
files: no network, no clock.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ordercast.errors import OrdercastError

FILES = ("orders.txt", "couriers.txt", "restaurants.txt", "instance_parameters.txt")
"""Files an instance folder must hold."""


class InstanceError(OrdercastError):
    """An instance folder is missing, incomplete or unreadable."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass(frozen=True)
class Point:
    """A position in metres (UTM, zone dropped)."""

    x: float
    y: float

    def distance_m(self, other: Point) -> float:
        """Straight-line distance in metres, the instances' travel model."""
        return math.hypot(self.x - other.x, self.y - other.y)


@dataclass(frozen=True)
class Restaurant:
    """A restaurant and where it is."""

    restaurant_id: str
    at: Point


@dataclass(frozen=True)
class GrubhubOrder:
    """An order as published: placed by a customer at `at`, cooked at a restaurant."""

    order_id: str
    at: Point
    """Where the customer waits."""
    placement_minute: int
    restaurant_id: str
    ready_minute: int
    """When the food is ready to be picked up."""


@dataclass(frozen=True)
class Courier:
    """A courier shift: where it starts and when it is on duty."""

    courier_id: str
    at: Point
    on_minute: int
    off_minute: int
    """First minute off duty: on duty while on_minute <= t < off_minute."""

    def is_on_duty(self, minute: float) -> bool:
        """Whether the shift covers `minute`."""
        return self.on_minute <= minute < self.off_minute


@dataclass(frozen=True)
class Parameters:
    """The instance's travel model and service levels."""

    meters_per_minute: float
    pickup_service_minutes: float
    dropoff_service_minutes: float
    target_click_to_door_minutes: float
    maximum_click_to_door_minutes: float


@dataclass(frozen=True)
class Instance:
    """One instance folder, read whole."""

    name: str
    """The folder name, for example `0o100t100s1p100`."""
    number: int
    """The leading digits of the name (the seed instance's number), else 0."""
    parameters: Parameters
    orders: tuple[GrubhubOrder, ...]
    """In placement order (ties kept in file order)."""
    couriers: tuple[Courier, ...]
    restaurants: dict[str, Restaurant]

    def restaurant_of(self, order: GrubhubOrder) -> Restaurant:
        """The restaurant that cooks `order`."""
        return self.restaurants[order.restaurant_id]


def load_instance(path: Path) -> Instance:
    """Read an instance folder.

    Raises:
        InstanceError: the folder or one of its files is missing, a row is
            malformed, or an order names an unknown restaurant.
    """
    if not path.is_dir():
        raise InstanceError(path, "no such instance folder")
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise InstanceError(path, f"missing {', '.join(missing)}")
    try:
        instance = _read(path)
    except (ValueError, IndexError) as exc:
        raise InstanceError(path, f"malformed file: {exc}") from exc
    unknown = {o.restaurant_id for o in instance.orders} - set(instance.restaurants)
    if unknown:
        raise InstanceError(path, f"orders name unknown restaurants {sorted(unknown)}")
    return instance


def _read(path: Path) -> Instance:
    orders = [_order(row) for row in _rows(path / "orders.txt")]
    orders.sort(key=lambda order: order.placement_minute)
    restaurants = [_restaurant(row) for row in _rows(path / "restaurants.txt")]
    number = re.match(r"\d+", path.name)
    return Instance(
        name=path.name,
        number=int(number.group()) if number else 0,
        parameters=_parameters(_rows(path / "instance_parameters.txt")[0]),
        orders=tuple(orders),
        couriers=tuple(_courier(row) for row in _rows(path / "couriers.txt")),
        restaurants={r.restaurant_id: r for r in restaurants},
    )


def _rows(path: Path) -> list[list[str]]:
    """Rows of a tab-separated file, without its header and blank lines."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = [row for row in csv.reader(file, delimiter="\t") if any(row)]
    return rows[1:]


def _point(x: str, y: str) -> Point:
    return Point(float(x), float(y))


def _minute(text: str) -> int:
    return int(float(text))


def _order(row: list[str]) -> GrubhubOrder:
    order_id, x, y, placement, restaurant_id, ready = row[:6]
    return GrubhubOrder(
        order_id, _point(x, y), _minute(placement), restaurant_id, _minute(ready)
    )


def _courier(row: list[str]) -> Courier:
    courier_id, x, y, on, off = row[:5]
    return Courier(courier_id, _point(x, y), _minute(on), _minute(off))


def _restaurant(row: list[str]) -> Restaurant:
    restaurant_id, x, y = row[:3]
    return Restaurant(restaurant_id, _point(x, y))


def _parameters(row: list[str]) -> Parameters:
    speed, pickup, dropoff, target, maximum = (float(v) for v in row[:5])
    if speed <= 0:
        raise ValueError(f"meters_per_minute must be positive, not {speed}")
    return Parameters(speed, pickup, dropoff, target, maximum)
