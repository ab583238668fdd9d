"""Deciding what a command does to an order: pure functions over the table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ordercast.errors import (
    CourierAlreadyAssigned,
    Forbidden,
    InvalidCommand,
    InvalidTransition,
    OrderExists,
    OrderNotFound,
)
from ordercast.lifecycle.table import (
    DEADLINES,
    TRANSITIONS,
    Command,
    Deadline,
    Role,
    Status,
    Transition,
)


@dataclass(frozen=True)
class Actor:
    """Who sends a command or follows an order, taken from a verified token."""

    role: Role
    subject: str
    """The token's `sub`: a customer, restaurant or courier id, or a person in ops."""


SYSTEM = Actor(Role.OPS, "ordercast")
"""The actor that fires deadlines."""


@dataclass(frozen=True)
class OrderState:
    """What the lifecycle needs to know about an order."""

    order_id: str
    status: Status
    seq: int
    """Seq of the last event in the order's log; the next event gets seq + 1."""
    customer_id: str
    restaurant_id: str
    courier_id: str | None = None


@dataclass(frozen=True)
class Request:
    """A command as the lifecycle sees it: validated shape, not yet applied."""

    command: Command
    order_id: str
    actor: Actor
    courier_id: str | None = None
    """Required by assign_courier."""
    customer_id: str | None = None
    """Required by create."""
    restaurant_id: str | None = None
    """Required by create."""
    reason: str | None = None
    """Optional for reject, cancel and fail; recorded in the event's data."""
    details: dict[str, Any] = field(default_factory=dict)
    """Extra data recorded with create (for example pickup and drop-off points)."""


@dataclass(frozen=True)
class Timeouts:
    """Lengths of the deadlines of DESIGN.md, in seconds."""

    restaurant_timeout_s: float = 300.0
    dispatch_timeout_s: float = 600.0


@dataclass(frozen=True)
class NewEvent:
    """An event to append: the store gives it a seq, an id and a time."""

    name: str
    status: Status
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What applying a command means for the store, all in one transaction."""

    order: OrderState
    """The order after the events (its `seq` counts them)."""
    events: tuple[NewEvent, ...]
    deadlines_set: tuple[tuple[str, datetime], ...] = ()
    """(kind, due_at) pairs to store; a kind already stored is replaced."""
    deadlines_cleared: tuple[str, ...] = ()


# queries


def may_follow(actor: Actor, order: OrderState) -> bool:
    """Whether `actor` may subscribe to `order` (DESIGN.md, WebSocket protocol)."""
    if actor.role in (Role.OPS, Role.DISPATCH):
        return True
    return _owns(actor, order)


def _owns(actor: Actor, order: OrderState) -> bool:
    owner = {
        Role.CUSTOMER: order.customer_id,
        Role.RESTAURANT: order.restaurant_id,
        Role.COURIER: order.courier_id,
    }.get(actor.role)
    # Dispatch has no orders of its own: it serves every order it may assign.
    return actor.role in (Role.OPS, Role.DISPATCH) or owner == actor.subject


LOCATION_STATUSES = frozenset(
    {Status.COURIER_ASSIGNED, Status.PICKED_UP, Status.IN_DELIVERY}
)
"""Statuses in which an order has a courier on the way whose position counts."""


def check_location(actor: Actor, order: OrderState) -> None:
    """Whether `actor` may report the courier's position for `order` now.

    Raises:
        Forbidden: the actor is neither ops nor the courier assigned to it.
        InvalidTransition: the order has no courier on the way (before
            assignment, or once final).
    """
    assigned = actor.role is Role.COURIER and order.courier_id == actor.subject
    if actor.role is not Role.OPS and not assigned:
        raise Forbidden(
            f"only the courier assigned to order {order.order_id!r} "
            "reports its location",
            orderId=order.order_id,
        )
    if order.status not in LOCATION_STATUSES:
        allowed = sorted(status.value for status in LOCATION_STATUSES)
        raise InvalidTransition(order.order_id, order.status, "location", allowed)


def rows_for(command: Command) -> tuple[Transition, ...]:
    """Table rows of one command, in table order."""
    return tuple(row for row in TRANSITIONS if row.command == command)


# commands


def decide(
    order: OrderState | None, request: Request, now: datetime, timeouts: Timeouts
) -> Decision:
    """Apply `request` to `order` on paper.

    Args:
        order: the order's current state, or None if no order has that id.
        request: the command and who sends it.
        now: when the command is applied; deadlines count from it.
        timeouts: deadline lengths.

    Returns:
        The events to append and the deadlines to set and clear.

    Raises:
        InvalidCommand: a field the command needs is missing, or one it does
            not take is there; checked first, since it holds in any status.
        OrderNotFound: a command other than create names an unknown order.
        OrderExists: create names an order that exists.
        Forbidden: the actor's role may not send this command, or not for this
            order, or not from this status.
        InvalidTransition: the command does not fit the order's status.
    """
    if request.command is Command.CREATE:
        return _create(order, request, now, timeouts)
    _check_fields(request)
    if order is None:
        raise OrderNotFound(request.order_id)
    row = _authorized_row(order, request)
    assigned = order.courier_id
    if row.command is Command.ASSIGN_COURIER and assigned is not None:
        if assigned == request.courier_id:
            raise CourierAlreadyAssigned(order.order_id, order.status, assigned)
    data = _event_data(request)
    events = (NewEvent(row.event, row.target, data),)
    courier_id = request.courier_id if row.command is Command.ASSIGN_COURIER else None
    after = replace(
        order,
        status=row.target,
        seq=order.seq + 1,
        courier_id=courier_id or order.courier_id,
    )
    return _with_deadlines(order.status, after, events, now, timeouts)


def fire_deadline(
    order: OrderState, kind: str, now: datetime, timeouts: Timeouts
) -> Decision:
    """What a deadline of `kind` does when it comes due.

    A deadline whose order has left its status records nothing: the store
    clears deadlines when the status changes, so this only happens when a
    command and the deadline race.
    """
    deadline = _deadline(kind)
    if order.status is not deadline.status:
        return Decision(order, (), deadlines_cleared=(kind,))
    target = deadline.target or order.status
    event = NewEvent(deadline.event, target, dict(deadline.data))
    after = replace(order, status=target, seq=order.seq + 1)
    if deadline.target is None:
        return Decision(after, (event,), deadlines_cleared=(kind,))
    return _with_deadlines(order.status, after, (event,), now, timeouts)


def _create(
    order: OrderState | None, request: Request, now: datetime, timeouts: Timeouts
) -> Decision:
    if request.actor.role is not Role.OPS:
        raise Forbidden("only the platform's backend (ops) creates orders")
    if not request.customer_id or not request.restaurant_id:
        raise InvalidCommand("create needs customerId and restaurantId")
    if order is not None:
        raise OrderExists(request.order_id)
    created = OrderState(
        request.order_id,
        Status.RECEIVED,
        seq=1,
        customer_id=request.customer_id,
        restaurant_id=request.restaurant_id,
    )
    data: dict[str, Any] = {
        "customerId": request.customer_id,
        "restaurantId": request.restaurant_id,
    }
    if request.details:
        data["details"] = request.details
    events = (NewEvent("order.received", Status.RECEIVED, data),)
    return _with_deadlines(None, created, events, now, timeouts)


def _authorized_row(order: OrderState, request: Request) -> Transition:
    """The table row that lets this actor send this command now.

    Refusals are ordered from most to least fundamental: a role that never
    sends the command, then an order that is not the actor's, then a status
    the command does not fit, then a status only other roles may act on.
    """
    command, actor = request.command, request.actor
    where = {
        "orderId": order.order_id,
        "status": order.status.value,
        "command": command.value,
    }
    rows = rows_for(command)
    if not any(actor.role in row.senders for row in rows):
        raise Forbidden(f"a {actor.role} may not {command} an order", **where)
    if not _owns(actor, order):
        raise Forbidden(
            f"order {order.order_id!r} is not assigned to this {actor.role}", **where
        )
    fitting = [row for row in rows if order.status in row.sources]
    if not fitting:
        allowed = sorted({s.value for row in rows for s in row.sources})
        raise InvalidTransition(order.order_id, order.status, command, allowed)
    for row in fitting:
        if actor.role in row.senders:
            return row
    senders = sorted({role.value for row in fitting for role in row.senders})
    raise Forbidden(
        f"only {' or '.join(senders)} may {command} an order that is {order.status}",
        **where,
    )


REASON_COMMANDS = frozenset({Command.REJECT, Command.CANCEL, Command.FAIL})
"""Commands that may say why; the reason is recorded in the event's data."""


def _check_fields(request: Request) -> None:
    command = request.command
    if command is Command.ASSIGN_COURIER:
        if not request.courier_id:
            raise InvalidCommand("assign_courier needs courierId")
    elif request.courier_id is not None:
        raise InvalidCommand(f"{command} takes no courierId (assign_courier does)")
    if request.reason is not None and command not in REASON_COMMANDS:
        raise InvalidCommand(f"{command} takes no reason (reject, cancel and fail do)")


def _event_data(request: Request) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if request.command is Command.ASSIGN_COURIER:
        data["courierId"] = request.courier_id
    if request.reason:
        data["reason"] = request.reason
    return data


def _with_deadlines(
    before: Status | None,
    after: OrderState,
    events: tuple[NewEvent, ...],
    now: datetime,
    timeouts: Timeouts,
) -> Decision:
    """Attach the deadlines implied by moving from `before` to `after.status`."""
    if before is after.status:
        return Decision(after, events)
    cleared = tuple(d.kind for d in DEADLINES if d.status is before)
    set_ = tuple(
        (d.kind, now + timedelta(seconds=getattr(timeouts, d.timeout_setting)))
        for d in DEADLINES
        if d.status is after.status
    )
    return Decision(after, events, set_, cleared)


def _deadline(kind: str) -> Deadline:
    for deadline in DEADLINES:
        if deadline.kind == kind:
            return deadline
    raise InvalidCommand(f"unknown deadline kind {kind!r}")
