"""Turning a Grubhub instance into a plan: the timed commands of a delivery day.

A deterministic discrete-event simulation plays the parts the instances leave
out: restaurants answer, a simple dispatcher assigns the nearest free courier
on duty, couriers travel in straight lines at the instance's speed. A few
orders take the other paths of the lifecycle (DESIGN.md) so that every status
appears. The result is a `Plan`: steps sorted by simulated minute, which a
driver sends to a server. Nothing here does I/O; one seed gives one plan.
"""

from __future__ import annotations

import heapq
import random
import re
import secrets
import string
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from ordercast.lifecycle import Command, Role, Status
from ordercast.replay.grubhub import Courier, GrubhubOrder, Instance, Point
from ordercast.replay.tracks import Track, fit, to_lat_lng

ACCEPT_DELAY_MINUTES = (0.5, 3.0)
"""How long a restaurant takes to answer; below the 5-minute deadline of DESIGN.md."""

RESTAURANT_DEADLINE_MINUTES = 5.0
"""The server's restaurant deadline, in simulated minutes, a replay assumes."""

DISPATCH_DEADLINE_MINUTES = 10.0
"""The server's courier-assignment deadline, in simulated minutes."""

assert ACCEPT_DELAY_MINUTES[1] < RESTAURANT_DEADLINE_MINUTES, (
    "an accept slower than the deadline would be refused: the order is REJECTED"
)

OPS_SUBJECT = "ordercast-replay"
"""Subject of the platform backend that creates the orders."""

DISPATCHER_SUBJECT = "dispatcher"

_ID_CHARS = re.compile(r"^[A-Za-z0-9._:~-]{1,32}$")

_REASONS = {
    Command.REJECT: "restaurant_busy",
    Command.CANCEL: "customer_changed_mind",
    Command.FAIL: "customer_unreachable",
}


def new_prefix() -> str:
    """A short random run prefix (`k3f9`), so repeated runs never share ids."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(4))


class Fate(StrEnum):
    """Which path of the lifecycle an order takes."""

    DELIVER = "deliver"
    REJECT = "reject"
    NO_ANSWER = "no_answer"
    CANCEL = "cancel"
    FAIL = "fail"


@dataclass(frozen=True)
class Shares:
    """Shares of orders that leave the happy path, each between 0 and 1."""

    reject: float = 0.03
    """The restaurant declines."""
    no_answer: float = 0.02
    """The restaurant never answers; the server's deadline rejects the order."""
    cancel: float = 0.03
    """The customer cancels after acceptance, before pickup."""
    fail: float = 0.02
    """The courier cannot deliver; fails midway through the delivery."""

    def __post_init__(self) -> None:
        values = (self.reject, self.no_answer, self.cancel, self.fail)
        if any(not 0 <= v <= 1 for v in values) or sum(values) > 1:
            raise ValueError(f"shares must be in [0, 1] and sum to at most 1: {self}")

    def fate_of(self, draw: float) -> Fate:
        """The fate a uniform draw in [0, 1) selects."""
        bound = 0.0
        for fate, share in (
            (Fate.REJECT, self.reject),
            (Fate.NO_ANSWER, self.no_answer),
            (Fate.CANCEL, self.cancel),
            (Fate.FAIL, self.fail),
        ):
            bound += share
            if draw < bound:
                return fate
        return Fate.DELIVER


@dataclass(frozen=True)
class PlanOptions:
    """What to replay of an instance, and how."""

    prefix: str = field(default_factory=new_prefix)
    """Starts every order id, so runs against one store never collide."""
    seed: int = 7
    limit: int | None = None
    """Replay only the first N orders by placement time."""
    start_minute: float | None = None
    """Skip orders placed before it; None starts at the first placement."""
    shares: Shares = field(default_factory=Shares)
    tracks: tuple[Track, ...] = ()
    """Real GPS tracks to move couriers along; none: no positions are planned."""

    def __post_init__(self) -> None:
        if not _ID_CHARS.match(self.prefix):
            raise ValueError(
                f"prefix {self.prefix!r}: use 1-32 of A-Z a-z 0-9 . _ : ~ -"
            )
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must not be negative, not {self.limit}")


@dataclass(frozen=True)
class Step:
    """One command to send at a simulated minute, as one actor."""

    at_minute: float
    order_id: str
    command: Command
    role: Role
    subject: str
    """The token's subject: a restaurant, courier or customer id, or a service."""
    fields: Mapping[str, Any]
    """Body fields besides `command` (for create: the whole body but `orderId`)."""


@dataclass(frozen=True)
class Leg:
    """A courier moving for one order: timed positions, from a real track."""

    order_id: str
    subject: str
    """The courier's id, which reports the positions."""
    track_id: int
    path: tuple[tuple[float, float, float], ...]
    """(minute, lat, lng), minutes increasing."""

    @property
    def start_minute(self) -> float:
        return self.path[0][0]

    @property
    def end_minute(self) -> float:
        return self.path[-1][0]


@dataclass(frozen=True)
class Plan:
    """Steps of a replay, sorted by minute; one order's steps in lifecycle order."""

    instance: str
    start_minute: float
    """Simulated minute that maps to the start of the replay."""
    steps: tuple[Step, ...]
    intended: Mapping[str, Status]
    """Status each order should end in by the plan: a restaurant that never
    answers leaves REJECTED to the server's deadline; ACCEPTED means no courier
    became free in time."""
    fates: Mapping[str, Fate]
    legs: tuple[Leg, ...] = ()
    """Where couriers move, if the plan was given GPS tracks."""

    @property
    def end_minute(self) -> float:
        """Minute of the last step."""
        return self.steps[-1].at_minute if self.steps else self.start_minute

    def steps_of(self, order_id: str) -> list[Step]:
        """Steps of one order, in the order they are sent."""
        return [step for step in self.steps if step.order_id == order_id]


class Ids:
    """Server-side ids of an instance's orders, restaurants, couriers, customers."""

    def __init__(self, prefix: str, instance_number: int) -> None:
        self.prefix = prefix
        self.number = instance_number

    def order(self, order: GrubhubOrder) -> str:
        """`{prefix}-{instance}-{order}`, for example `k3f9-0-o17`."""
        return f"{self.prefix}-{self.number}-{order.order_id}"

    def restaurant(self, restaurant_id: str) -> str:
        return f"i{self.number}-{restaurant_id}"

    def courier(self, courier: Courier) -> str:
        return f"i{self.number}-{courier.courier_id}"

    def customer(self, order: GrubhubOrder) -> str:
        return f"i{self.number}-cu-{order.order_id}"


def build_plan(instance: Instance, options: PlanOptions) -> Plan:
    """Simulate the instance's orders and return the commands that tell it.

    Raises:
        ValueError: the options select no order.
    """
    orders = select_orders(instance, options)
    if not orders:
        raise ValueError(
            f"no order of {instance.name} matches limit={options.limit}, "
            f"start_minute={options.start_minute}"
        )
    # the clock starts with the first order, wherever the selection began
    start = float(orders[0].placement_minute)
    simulation = _Simulation(instance, orders, options)
    simulation.run()
    steps = sorted(simulation.steps, key=lambda step: step.at_minute)
    return Plan(
        instance.name,
        start,
        tuple(steps),
        simulation.intended,
        simulation.fates,
        tuple(simulation.legs),
    )


def select_orders(instance: Instance, options: PlanOptions) -> list[GrubhubOrder]:
    """Orders placed from `start_minute` on, the first `limit` by placement time."""
    start = options.start_minute
    orders = [
        o for o in instance.orders if start is None or o.placement_minute >= start
    ]
    return orders if options.limit is None else orders[: options.limit]


def travel_minutes(a: Point, b: Point, meters_per_minute: float) -> float:
    """Straight-line travel time, the instances' model."""
    return a.distance_m(b) / meters_per_minute


# simulation


class _Kind(IntEnum):
    """Kinds of simulated events; the value breaks ties at one minute."""

    CANCEL = 0
    """Before a pickup at the same minute: a customer cancels before pickup."""
    PLACE = 1
    ANSWER = 2
    PICK_UP = 3
    DROP_OFF = 4
    TICK = 5


@dataclass
class _Order:
    source: GrubhubOrder
    fate: Fate
    answer_at: float
    cancel_fraction: float
    accepted_at: float | None = None
    courier: _Courier | None = None
    picked_up: bool = False
    done: bool = False


@dataclass(eq=False)
class _Courier:
    shift: Courier
    at: Point
    order: _Order | None = None
    left_at: float = 0.0
    """When it set off to the current order's restaurant."""
    arrives_at: float = 0.0


class _Simulation:
    """Event loop over a heap of (minute, kind, counter); state in plain objects."""

    def __init__(
        self, instance: Instance, orders: list[GrubhubOrder], options: PlanOptions
    ) -> None:
        self.instance = instance
        self.params = instance.parameters
        self.ids = Ids(options.prefix, instance.number)
        self.couriers = [_Courier(c, c.at) for c in instance.couriers]
        self.tracks = options.tracks
        self.legs: list[Leg] = []
        self.origin = _middle([r.at for r in instance.restaurants.values()])
        self.last_off_minute = max((c.off_minute for c in instance.couriers), default=0)
        self.steps: list[Step] = []
        self.intended: dict[str, Status] = {}
        self.fates: dict[str, Fate] = {}
        self.waiting: list[_Order] = []
        self.tick_pending = False
        self._heap: list[tuple[float, int, int, Callable[[float], None]]] = []
        self._counter = 0
        rng = random.Random(options.seed)
        for source in orders:
            order = self._draw(source, options.shares, rng)
            self.at(source.placement_minute, _Kind.PLACE, self._place_handler(order))

    def _draw(self, source: GrubhubOrder, shares: Shares, rng: random.Random) -> _Order:
        """Draw an order's fate and delays; three draws each, whatever the fate."""
        fate = shares.fate_of(rng.random())
        answer_at = source.placement_minute + rng.uniform(*ACCEPT_DELAY_MINUTES)
        order = _Order(source, fate, answer_at, rng.uniform(0.1, 0.9))
        order_id = self.ids.order(source)
        self.fates[order_id] = fate
        self.intended[order_id] = Status.RECEIVED
        return order

    def at(self, minute: float, kind: _Kind, handler: Callable[[float], None]) -> None:
        """Schedule `handler(minute)`."""
        self._counter += 1
        heapq.heappush(self._heap, (minute, kind, self._counter, handler))

    def run(self) -> None:
        """Process events in time order until nothing is left to happen."""
        while self._heap:
            minute, _, _, handler = heapq.heappop(self._heap)
            handler(minute)
            self._dispatch(minute)

    # steps

    def emit(
        self,
        minute: float,
        order: _Order,
        command: Command,
        actor: tuple[Role, str],
        target: Status,
        **fields: Any,
    ) -> None:
        order_id = self.ids.order(order.source)
        role, subject = actor
        if command in _REASONS:
            fields["reason"] = _REASONS[command]
        self.steps.append(Step(minute, order_id, command, role, subject, fields))
        self.intended[order_id] = target

    def _lat_lng(self, point: Point) -> dict[str, float]:
        lat, lng = to_lat_lng(point, self.origin)
        return {"lat": lat, "lng": lng}

    def _move(
        self,
        order: _Order,
        courier: _Courier,
        a: Point,
        b: Point,
        span: tuple[float, float],
    ) -> None:
        """Plan a courier's positions from `a` to `b` over `span` minutes."""
        if not self.tracks or a.distance_m(b) < 1.0 or span[1] <= span[0]:
            return
        order_id = self.ids.order(order.source)
        # a stable pick: the same order and leg always get the same track
        pick = zlib.crc32(f"{order_id}:{span[0]}".encode()) % len(self.tracks)
        track = self.tracks[pick]
        path = tuple(
            (minute, *to_lat_lng(point, self.origin))
            for minute, point in fit(track, a, b, *span)
        )
        subject = self.ids.courier(courier.shift)
        self.legs.append(Leg(order_id, subject, track.track_id, path))

    def _restaurant(self, order: _Order) -> tuple[Role, str]:
        return Role.RESTAURANT, self.ids.restaurant(order.source.restaurant_id)

    def _courier_actor(self, courier: _Courier) -> tuple[Role, str]:
        return Role.COURIER, self.ids.courier(courier.shift)

    # handlers

    def _place_handler(self, order: _Order) -> Callable[[float], None]:
        return lambda minute: self._place(minute, order)

    def _place(self, minute: float, order: _Order) -> None:
        source = order.source
        fields = {
            "customerId": self.ids.customer(source),
            "restaurantId": self.ids.restaurant(source.restaurant_id),
            "details": {
                "source": f"grubhub-mdrp/{self.instance.name}",
                "order": source.order_id,
                "pickup": self._lat_lng(self.instance.restaurant_of(source).at),
                "dropoff": self._lat_lng(source.at),
            },
        }
        actor = (Role.OPS, OPS_SUBJECT)
        self.emit(minute, order, Command.CREATE, actor, Status.RECEIVED, **fields)
        if order.fate is Fate.NO_ANSWER:
            # no step: the server's restaurant deadline rejects the order
            self.intended[self.ids.order(source)] = Status.REJECTED
            return
        self.at(order.answer_at, _Kind.ANSWER, lambda m: self._answer(m, order))

    def _answer(self, minute: float, order: _Order) -> None:
        if order.fate is Fate.REJECT:
            restaurant = self._restaurant(order)
            self.emit(minute, order, Command.REJECT, restaurant, Status.REJECTED)
            order.done = True
            return
        self.emit(
            minute, order, Command.ACCEPT, self._restaurant(order), Status.ACCEPTED
        )
        order.accepted_at = minute
        self.waiting.append(order)
        if order.fate is Fate.CANCEL:
            self.at(
                self._cancel_minute(order), _Kind.CANCEL, self._cancel_handler(order)
            )

    def _cancel_minute(self, order: _Order) -> float:
        """A minute after acceptance and before any possible pickup.

        Pickup is never before max(ready, acceptance) + pickup service, since
        a courier is assigned only after acceptance.
        """
        assert order.accepted_at is not None, "only accepted orders are cancelled"
        earliest_pickup = max(float(order.source.ready_minute), order.accepted_at)
        earliest_pickup += self.params.pickup_service_minutes
        return order.accepted_at + order.cancel_fraction * (
            earliest_pickup - order.accepted_at
        )

    def _cancel_handler(self, order: _Order) -> Callable[[float], None]:
        return lambda minute: self._cancel(minute, order)

    def _cancel(self, minute: float, order: _Order) -> None:
        assert not order.picked_up, "a cancel is planned before the earliest pickup"
        customer = (Role.CUSTOMER, self.ids.customer(order.source))
        self.emit(minute, order, Command.CANCEL, customer, Status.CANCELLED)
        order.done = True
        if order in self.waiting:
            self.waiting.remove(order)
        courier = order.courier
        if courier is not None:
            courier.at = self._position_on_the_way(courier, minute)
            courier.order = None

    def _position_on_the_way(self, courier: _Courier, minute: float) -> Point:
        """Where a courier heading to a restaurant is at `minute`."""
        assert courier.order is not None, "only a courier with an order travels"
        target = self.instance.restaurant_of(courier.order.source).at
        span = courier.arrives_at - courier.left_at
        share = 1.0 if span <= 0 else min(1.0, (minute - courier.left_at) / span)
        return _between(courier.at, target, share)

    def _assign(self, minute: float, order: _Order, courier: _Courier) -> None:
        actor = (Role.DISPATCH, DISPATCHER_SUBJECT)
        courier_id = self.ids.courier(courier.shift)
        target = Status.COURIER_ASSIGNED
        self.emit(
            minute, order, Command.ASSIGN_COURIER, actor, target, courierId=courier_id
        )
        restaurant = self.instance.restaurant_of(order.source).at
        speed = self.params.meters_per_minute
        order.courier = courier
        courier.order = order
        courier.left_at = minute
        courier.arrives_at = minute + travel_minutes(courier.at, restaurant, speed)
        self._move(order, courier, courier.at, restaurant, (minute, courier.arrives_at))
        ready = max(courier.arrives_at, float(order.source.ready_minute))
        pickup_at = ready + self.params.pickup_service_minutes
        self.at(pickup_at, _Kind.PICK_UP, lambda m: self._pick_up(m, order, courier))

    def _pick_up(self, minute: float, order: _Order, courier: _Courier) -> None:
        if order.done or order.courier is not courier:
            return  # cancelled while the courier was on the way
        actor = self._courier_actor(courier)
        self.emit(minute, order, Command.PICK_UP, actor, Status.PICKED_UP)
        self.emit(minute, order, Command.START_DELIVERY, actor, Status.IN_DELIVERY)
        order.picked_up = True
        courier.at = self.instance.restaurant_of(order.source).at
        ride = travel_minutes(
            courier.at, order.source.at, self.params.meters_per_minute
        )
        if order.fate is Fate.FAIL:
            halfway = _between(courier.at, order.source.at, 0.5)
            self._move(order, courier, courier.at, halfway, (minute, minute + ride / 2))
            self.at(minute + ride / 2, _Kind.DROP_OFF, lambda m: self._fail(m, order))
            return
        self._move(order, courier, courier.at, order.source.at, (minute, minute + ride))
        drop_at = minute + ride + self.params.dropoff_service_minutes
        self.at(drop_at, _Kind.DROP_OFF, lambda m: self._deliver(m, order))

    def _deliver(self, minute: float, order: _Order) -> None:
        courier = order.courier
        assert courier is not None, "a delivered order has a courier"
        actor = self._courier_actor(courier)
        self.emit(minute, order, Command.DELIVER, actor, Status.DELIVERED)
        self._release(courier, order, order.source.at)

    def _fail(self, minute: float, order: _Order) -> None:
        courier = order.courier
        assert courier is not None, "a failed delivery has a courier"
        self.emit(
            minute, order, Command.FAIL, self._courier_actor(courier), Status.FAILED
        )
        self._release(courier, order, _between(courier.at, order.source.at, 0.5))

    def _release(self, courier: _Courier, order: _Order, at: Point) -> None:
        order.done = True
        courier.at = at
        courier.order = None

    # dispatcher

    def _dispatch(self, minute: float) -> None:
        """Assign the nearest free courier on duty to each waiting order, FIFO."""
        if not self.waiting:
            return
        free = [
            c for c in self.couriers if c.order is None and c.shift.is_on_duty(minute)
        ]
        for order in sorted(self.waiting, key=lambda o: o.source.placement_minute):
            if not free:
                break
            restaurant = self.instance.restaurant_of(order.source).at
            nearest = min(free, key=lambda c: c.at.distance_m(restaurant))
            free.remove(nearest)
            self.waiting.remove(order)
            self._assign(minute, order, nearest)
        self._keep_ticking(minute)

    def _keep_ticking(self, minute: float) -> None:
        """Look again every minute while orders wait and a shift may still start."""
        if self.tick_pending or not self.waiting or minute >= self.last_off_minute:
            return
        self.tick_pending = True
        self.at(float(int(minute) + 1), _Kind.TICK, self._tick)

    def _tick(self, minute: float) -> None:
        self.tick_pending = False


def _middle(points: list[Point]) -> Point:
    if not points:
        return Point(0.0, 0.0)
    return Point(
        sum(p.x for p in points) / len(points), sum(p.y for p in points) / len(points)
    )


def _between(a: Point, b: Point, share: float) -> Point:
    return Point(a.x + (b.x - a.x) * share, a.y + (b.y - a.y) * share)
