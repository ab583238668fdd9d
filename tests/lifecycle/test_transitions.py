"""The lifecycle core, checked against DESIGN.md's command table.

The expected table below is written out again from DESIGN.md on purpose: the
tests must not read `TRANSITIONS`, or they would agree with any mistake in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from ordercast.errors import (
    CourierAlreadyAssigned,
    Forbidden,
    InvalidCommand,
    InvalidTransition,
    OrderExists,
    OrderNotFound,
    Refusal,
)
from ordercast.lifecycle import (
    Actor,
    Command,
    NewEvent,
    OrderState,
    Request,
    Role,
    Status,
    Timeouts,
    decide,
    fire_deadline,
    may_follow,
)
from ordercast.lifecycle.transitions import check_location

NOW = datetime(2026, 12, 3, 12, 0, 5, 120000, tzinfo=UTC)
TIMEOUTS = Timeouts(restaurant_timeout_s=120.0, dispatch_timeout_s=480.0)

S, C, R = Status, Command, Role


@dataclass(frozen=True)
class Row:
    target: Status
    event: str
    senders: frozenset[Role]


def _row(target: Status, event: str, *senders: Role) -> Row:
    return Row(target, event, frozenset({*senders, R.OPS}))


_CANCEL_EARLY = _row(S.CANCELLED, "order.cancelled", R.CUSTOMER, R.RESTAURANT)
_CANCEL_LATE = _row(S.CANCELLED, "order.cancelled")
_ASSIGN = _row(S.COURIER_ASSIGNED, "courier.assigned", R.DISPATCH)
_FAIL = _row(S.FAILED, "delivery.failed", R.COURIER)

DESIGN_TABLE: dict[tuple[Command, Status], Row] = {
    (C.ACCEPT, S.RECEIVED): _row(S.ACCEPTED, "order.accepted", R.RESTAURANT),
    (C.REJECT, S.RECEIVED): _row(S.REJECTED, "order.rejected", R.RESTAURANT),
    (C.ASSIGN_COURIER, S.ACCEPTED): _ASSIGN,
    (C.ASSIGN_COURIER, S.COURIER_ASSIGNED): _ASSIGN,
    (C.PICK_UP, S.COURIER_ASSIGNED): _row(S.PICKED_UP, "order.picked_up", R.COURIER),
    (C.START_DELIVERY, S.PICKED_UP): _row(S.IN_DELIVERY, "delivery.started", R.COURIER),
    (C.DELIVER, S.IN_DELIVERY): _row(S.DELIVERED, "order.delivered", R.COURIER),
    (C.CANCEL, S.RECEIVED): _CANCEL_EARLY,
    (C.CANCEL, S.ACCEPTED): _CANCEL_EARLY,
    (C.CANCEL, S.COURIER_ASSIGNED): _CANCEL_EARLY,
    (C.CANCEL, S.PICKED_UP): _CANCEL_LATE,
    (C.CANCEL, S.IN_DELIVERY): _CANCEL_LATE,
    (C.FAIL, S.PICKED_UP): _FAIL,
    (C.FAIL, S.IN_DELIVERY): _FAIL,
}
"""DESIGN.md's command table (create aside), keyed by (command, from)."""

DEADLINE_OF = {S.RECEIVED: "restaurant_answer", S.ACCEPTED: "courier_assignment"}
TIMEOUT_OF = {
    "restaurant_answer": TIMEOUTS.restaurant_timeout_s,
    "courier_assignment": TIMEOUTS.dispatch_timeout_s,
}

OWNER = {
    R.CUSTOMER: Actor(R.CUSTOMER, "cu-1"),
    R.RESTAURANT: Actor(R.RESTAURANT, "r-1"),
    R.COURIER: Actor(R.COURIER, "c-1"),
    R.DISPATCH: Actor(R.DISPATCH, "d-1"),
    R.OPS: Actor(R.OPS, "ops-1"),
}
"""For each role, an actor who owns the order built by `order_in`."""

COMMANDS = [c for c in Command if c is not C.CREATE]


def order_in(status: Status, courier_id: str | None = "c-1") -> OrderState:
    return OrderState("o-1", status, 4, "cu-1", "r-1", courier_id)


def request(command: Command, actor: Actor, **fields: str) -> Request:
    return Request(command, "o-1", actor, **fields)  # type: ignore[arg-type]


def well_formed(command: Command, actor: Actor) -> Request:
    """`command` with the fields it takes: a courier (c-2) for assign_courier."""
    if command is C.ASSIGN_COURIER:
        return request(command, actor, courier_id="c-2")
    return request(command, actor)


def sends_ever(role: Role, command: Command) -> bool:
    rows = [row for (c, _), row in DESIGN_TABLE.items() if c is command]
    return any(role in row.senders for row in rows)


def expected_refusal(command: Command, status: Status, role: Role) -> type[Refusal]:
    """Most fundamental first: a role that never sends it, then the status."""
    if not sends_ever(role, command):
        return Forbidden
    if (command, status) not in DESIGN_TABLE:
        return InvalidTransition
    return Forbidden


def assert_readable(refusal: Refusal, command: Command, status: Status) -> None:
    message = str(refusal)
    assert command.value in message
    for enum_repr in ("Command.", "Status.", "Role.", "<"):
        assert enum_repr not in message, message
    assert refusal.fields["orderId"] == "o-1"
    assert refusal.fields["status"] == status.value
    assert refusal.fields["command"] == command.value


# the whole table: every status x command x role


def _allows(status: Status, command: Command, role: Role) -> bool:
    row = DESIGN_TABLE.get((command, status))
    return row is not None and role in row.senders


GRID = [(s, c, r) for s in Status for c in COMMANDS for r in Role]
ALLOWED = [case for case in GRID if _allows(*case)]
REFUSED = [case for case in GRID if not _allows(*case)]


def test_grid_covers_every_status_command_and_role() -> None:
    assert len(ALLOWED) + len(REFUSED) == len(Status) * len(COMMANDS) * len(Role)
    # ops on each of the 14 (command, from) pairs, plus 15 for the owners
    assert len(ALLOWED) == 14 + 15


@pytest.mark.parametrize(("status", "command", "role"), ALLOWED)
def test_command_is_accepted_when_design_table_allows_it(
    status: Status, command: Command, role: Role
) -> None:
    row = DESIGN_TABLE[(command, status)]
    order = order_in(status)

    decision = decide(order, well_formed(command, OWNER[role]), NOW, TIMEOUTS)

    data = {"courierId": "c-2"} if command is C.ASSIGN_COURIER else {}
    assert decision.events == (NewEvent(row.event, row.target, data),)
    assert decision.order.status is row.target
    assert decision.order.seq == order.seq + 1
    expected_courier = "c-2" if command is C.ASSIGN_COURIER else "c-1"
    assert decision.order.courier_id == expected_courier
    assert decision.order.customer_id == "cu-1"
    assert decision.order.restaurant_id == "r-1"


@pytest.mark.parametrize(("status", "command", "role"), REFUSED)
def test_command_is_refused_with_403_or_409_when_design_table_says_no(
    status: Status, command: Command, role: Role
) -> None:
    expected = expected_refusal(command, status, role)

    with pytest.raises(Refusal) as raised:
        decide(
            order_in(status),
            well_formed(command, OWNER[role]),
            NOW,
            TIMEOUTS,
        )

    assert type(raised.value) is expected
    assert raised.value.http_status == (403 if expected is Forbidden else 409)
    assert_readable(raised.value, command, status)


@pytest.mark.parametrize(("command", "status"), list(DESIGN_TABLE))
def test_accepted_command_moves_deadlines_with_the_status(
    status: Status, command: Command
) -> None:
    row = DESIGN_TABLE[(command, status)]

    decision = decide(
        order_in(status),
        well_formed(command, OWNER[R.OPS]),
        NOW,
        TIMEOUTS,
    )

    if row.target is status:
        assert decision.deadlines_set == ()
        assert decision.deadlines_cleared == ()
        return
    left = DEADLINE_OF.get(status)
    entered = DEADLINE_OF.get(row.target)
    assert decision.deadlines_cleared == ((left,) if left else ())
    due = [(k, NOW + timedelta(seconds=TIMEOUT_OF[k])) for k in [entered] if k]
    assert list(decision.deadlines_set) == due


# named behaviours


def test_courier_cannot_deliver_before_pickup() -> None:
    order = order_in(S.COURIER_ASSIGNED)

    with pytest.raises(InvalidTransition) as raised:
        decide(order, request(C.DELIVER, OWNER[R.COURIER]), NOW, TIMEOUTS)

    assert raised.value.code == "invalid_transition"
    assert "IN_DELIVERY" in str(raised.value)
    assert "COURIER_ASSIGNED" in str(raised.value)


def test_courier_cannot_pick_up_an_order_assigned_to_another_courier() -> None:
    order = order_in(S.COURIER_ASSIGNED, courier_id="c-1")

    with pytest.raises(Forbidden):
        decide(order, request(C.PICK_UP, Actor(R.COURIER, "c-9")), NOW, TIMEOUTS)


def test_assigning_the_courier_an_order_has_records_nothing() -> None:
    order = order_in(S.COURIER_ASSIGNED, courier_id="c-1")
    again = request(C.ASSIGN_COURIER, OWNER[R.DISPATCH], courier_id="c-1")

    with pytest.raises(CourierAlreadyAssigned) as raised:
        decide(order, again, NOW, TIMEOUTS)

    assert raised.value.http_status == 409
    assert raised.value.to_wire()["code"] == "invalid_transition"
    assert "'c-1' is already the courier" in str(raised.value)
    other = request(C.ASSIGN_COURIER, OWNER[R.DISPATCH], courier_id="c-2")
    assert decide(order, other, NOW, TIMEOUTS).order.courier_id == "c-2"


def test_courier_cannot_act_on_an_order_with_no_courier_yet() -> None:
    order = order_in(S.ACCEPTED, courier_id=None)

    with pytest.raises(Forbidden):
        decide(order, request(C.FAIL, OWNER[R.COURIER]), NOW, TIMEOUTS)


@pytest.mark.parametrize("command", [C.PICK_UP, C.START_DELIVERY, C.DELIVER, C.FAIL])
def test_courier_commands_need_the_assigned_courier(command: Command) -> None:
    status = {
        C.PICK_UP: S.COURIER_ASSIGNED,
        C.START_DELIVERY: S.PICKED_UP,
        C.DELIVER: S.IN_DELIVERY,
        C.FAIL: S.IN_DELIVERY,
    }[command]
    other = Actor(R.COURIER, "c-2")

    with pytest.raises(Forbidden):
        decide(order_in(status), request(command, other), NOW, TIMEOUTS)
    decision = decide(
        order_in(status), request(command, OWNER[R.COURIER]), NOW, TIMEOUTS
    )
    assert decision.order.status is DESIGN_TABLE[(command, status)].target


@pytest.mark.parametrize("status", [S.RECEIVED, S.ACCEPTED, S.COURIER_ASSIGNED])
def test_customer_may_cancel_own_order_before_pickup(status: Status) -> None:
    decision = decide(
        order_in(status), request(C.CANCEL, OWNER[R.CUSTOMER]), NOW, TIMEOUTS
    )

    assert decision.order.status is S.CANCELLED


@pytest.mark.parametrize("status", [S.PICKED_UP, S.IN_DELIVERY])
def test_customer_cannot_cancel_after_pickup_but_ops_can(status: Status) -> None:
    with pytest.raises(Forbidden) as raised:
        decide(order_in(status), request(C.CANCEL, OWNER[R.CUSTOMER]), NOW, TIMEOUTS)
    assert "ops" in str(raised.value)

    decision = decide(order_in(status), request(C.CANCEL, OWNER[R.OPS]), NOW, TIMEOUTS)
    assert decision.order.status is S.CANCELLED


def test_customer_cannot_cancel_someone_elses_order() -> None:
    with pytest.raises(Forbidden):
        decide(
            order_in(S.RECEIVED),
            request(C.CANCEL, Actor(R.CUSTOMER, "cu-2")),
            NOW,
            TIMEOUTS,
        )


@pytest.mark.parametrize("command", [C.ACCEPT, C.REJECT, C.CANCEL])
def test_restaurant_acts_only_on_its_own_orders(command: Command) -> None:
    other = Actor(R.RESTAURANT, "r-2")

    with pytest.raises(Forbidden):
        decide(order_in(S.RECEIVED), request(command, other), NOW, TIMEOUTS)


def test_reassignment_is_allowed_until_pickup() -> None:
    # given an order with courier c-1
    order = order_in(S.COURIER_ASSIGNED, courier_id="c-1")
    dispatch = Actor(R.DISPATCH, "d-1")

    # when dispatch assigns c-2
    decision = decide(
        order, request(C.ASSIGN_COURIER, dispatch, courier_id="c-2"), NOW, TIMEOUTS
    )

    # then c-2 has it, and after pickup no one can reassign it
    assert decision.order.courier_id == "c-2"
    assert decision.order.status is S.COURIER_ASSIGNED
    picked_up = order_in(S.PICKED_UP)
    with pytest.raises(InvalidTransition):
        decide(
            picked_up,
            request(C.ASSIGN_COURIER, dispatch, courier_id="c-3"),
            NOW,
            TIMEOUTS,
        )


def test_assign_courier_needs_a_courier_id() -> None:
    with pytest.raises(InvalidCommand) as raised:
        decide(
            order_in(S.ACCEPTED),
            request(C.ASSIGN_COURIER, OWNER[R.DISPATCH]),
            NOW,
            TIMEOUTS,
        )

    assert raised.value.http_status == 422
    assert "courierId" in str(raised.value)


@pytest.mark.parametrize(
    ("command", "fields", "says"),
    [
        (C.ACCEPT, {"courier_id": "c-9"}, "accept takes no courierId"),
        (C.PICK_UP, {"courier_id": "c-9"}, "pick_up takes no courierId"),
        (C.ACCEPT, {"reason": "hi"}, "accept takes no reason"),
        (C.ASSIGN_COURIER, {"courier_id": "c-9", "reason": "x"}, "takes no reason"),
        (C.DELIVER, {"reason": "left at the door"}, "deliver takes no reason"),
    ],
)
@pytest.mark.parametrize("status", [S.RECEIVED, S.PICKED_UP, S.DELIVERED])
def test_a_field_the_command_does_not_take_is_refused_in_any_status(
    command: Command, fields: dict[str, str], says: str, status: Status
) -> None:
    sent = request(command, OWNER[R.OPS], **fields)

    with pytest.raises(InvalidCommand) as raised:
        decide(order_in(status), sent, NOW, TIMEOUTS)

    assert raised.value.http_status == 422
    assert says in str(raised.value)


@pytest.mark.parametrize("status", list(Status))
def test_assign_courier_without_a_courier_is_refused_in_any_status(
    status: Status,
) -> None:
    with pytest.raises(InvalidCommand, match="needs courierId"):
        decide(order_in(status), request(C.ASSIGN_COURIER, OWNER[R.OPS]), NOW, TIMEOUTS)


@pytest.mark.parametrize("command", [C.REJECT, C.CANCEL])
def test_reason_is_recorded_in_event_data(command: Command) -> None:
    decision = decide(
        order_in(S.RECEIVED),
        request(command, OWNER[R.RESTAURANT], reason="out of stock"),
        NOW,
        TIMEOUTS,
    )

    assert decision.events[0].data == {"reason": "out of stock"}


def test_happy_path_walks_every_status_with_the_right_senders() -> None:
    # given a new order
    create = Request(
        C.CREATE, "o-1", OWNER[R.OPS], customer_id="cu-1", restaurant_id="r-1"
    )
    order = decide(None, create, NOW, TIMEOUTS).order
    steps = [
        (C.ACCEPT, Actor(R.RESTAURANT, "r-1")),
        (C.ASSIGN_COURIER, Actor(R.DISPATCH, "d-1")),
        (C.PICK_UP, Actor(R.COURIER, "c-1")),
        (C.START_DELIVERY, Actor(R.COURIER, "c-1")),
        (C.DELIVER, Actor(R.COURIER, "c-1")),
    ]

    # when each party sends its command
    statuses = [order.status]
    for command, actor in steps:
        fields = {"courier_id": "c-1"} if command is C.ASSIGN_COURIER else {}
        order = decide(order, request(command, actor, **fields), NOW, TIMEOUTS).order
        statuses.append(order.status)

    # then the order walks DESIGN.md's six steps, one seq each
    assert statuses == [
        S.RECEIVED,
        S.ACCEPTED,
        S.COURIER_ASSIGNED,
        S.PICKED_UP,
        S.IN_DELIVERY,
        S.DELIVERED,
    ]
    assert order.seq == 6
    assert order.status.is_terminal


@pytest.mark.parametrize("command", COMMANDS)
def test_command_on_unknown_order_is_not_found(command: Command) -> None:
    with pytest.raises(OrderNotFound) as raised:
        decide(None, well_formed(command, OWNER[R.OPS]), NOW, TIMEOUTS)

    assert raised.value.http_status == 404
    assert raised.value.fields == {"orderId": "o-1"}


# create


def create_request(actor: Actor = OWNER[R.OPS], **fields: object) -> Request:
    given: dict[str, object] = {"customer_id": "cu-1", "restaurant_id": "r-1"}
    given.update(fields)
    return Request(C.CREATE, "o-1", actor, **given)  # type: ignore[arg-type]


def test_ops_creates_a_received_order_with_a_restaurant_deadline() -> None:
    decision = decide(None, create_request(details={"items": 2}), NOW, TIMEOUTS)

    assert decision.order == OrderState("o-1", S.RECEIVED, 1, "cu-1", "r-1", None)
    data = {"customerId": "cu-1", "restaurantId": "r-1", "details": {"items": 2}}
    assert decision.events == (NewEvent("order.received", S.RECEIVED, data),)
    assert decision.deadlines_set == (
        ("restaurant_answer", NOW + timedelta(seconds=120)),
    )
    assert decision.deadlines_cleared == ()


@pytest.mark.parametrize("role", [r for r in Role if r is not R.OPS])
def test_only_ops_creates_orders(role: Role) -> None:
    with pytest.raises(Forbidden):
        decide(None, create_request(OWNER[role]), NOW, TIMEOUTS)


@pytest.mark.parametrize("missing", ["customer_id", "restaurant_id"])
def test_create_needs_customer_and_restaurant(missing: str) -> None:
    with pytest.raises(InvalidCommand):
        decide(None, create_request(**{missing: None}), NOW, TIMEOUTS)


@pytest.mark.parametrize("status", list(Status))
def test_create_with_a_taken_id_is_refused(status: Status) -> None:
    with pytest.raises(OrderExists) as raised:
        decide(order_in(status), create_request(), NOW, TIMEOUTS)

    assert raised.value.http_status == 409
    assert raised.value.fields == {"orderId": "o-1"}
    assert "o-1" in str(raised.value)


# deadlines


def test_restaurant_timeout_rejects_a_received_order() -> None:
    decision = fire_deadline(order_in(S.RECEIVED), "restaurant_answer", NOW, TIMEOUTS)

    data = {"reason": "restaurant_timeout"}
    assert decision.events == (NewEvent("order.rejected", S.REJECTED, data),)
    assert decision.order.status is S.REJECTED
    assert decision.order.seq == 5
    assert decision.deadlines_cleared == ("restaurant_answer",)
    assert decision.deadlines_set == ()


def test_dispatch_timeout_raises_overdue_and_keeps_the_order_accepted() -> None:
    decision = fire_deadline(order_in(S.ACCEPTED), "courier_assignment", NOW, TIMEOUTS)

    assert decision.events == (NewEvent("dispatch.overdue", S.ACCEPTED, {}),)
    assert decision.order.status is S.ACCEPTED
    assert decision.order.seq == 5
    assert decision.deadlines_cleared == ("courier_assignment",)
    assert decision.deadlines_set == ()


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        *[("restaurant_answer", s) for s in Status if s is not S.RECEIVED],
        *[("courier_assignment", s) for s in Status if s is not S.ACCEPTED],
    ],
)
def test_deadline_of_an_order_that_moved_on_does_nothing(
    kind: str, status: Status
) -> None:
    order = order_in(status)

    decision = fire_deadline(order, kind, NOW, TIMEOUTS)

    assert decision.events == ()
    assert decision.order == order
    assert decision.deadlines_set == ()


def test_unknown_deadline_kind_is_refused() -> None:
    with pytest.raises(InvalidCommand):
        fire_deadline(order_in(S.RECEIVED), "lunch_break", NOW, TIMEOUTS)


# who may follow


@pytest.mark.parametrize(
    ("actor", "allowed"),
    [
        (Actor(R.OPS, "ops-9"), True),
        (Actor(R.DISPATCH, "d-9"), True),
        (Actor(R.CUSTOMER, "cu-1"), True),
        (Actor(R.CUSTOMER, "cu-2"), False),
        (Actor(R.RESTAURANT, "r-1"), True),
        (Actor(R.RESTAURANT, "r-2"), False),
        (Actor(R.COURIER, "c-1"), True),
        (Actor(R.COURIER, "c-2"), False),
    ],
)
def test_may_follow_own_orders_only_unless_ops_or_dispatch(
    actor: Actor, allowed: bool
) -> None:
    assert may_follow(actor, order_in(S.PICKED_UP, courier_id="c-1")) is allowed


def test_courier_may_not_follow_an_order_with_no_courier() -> None:
    assert not may_follow(Actor(R.COURIER, "c-1"), order_in(S.ACCEPTED, None))


# courier location


def _order_in(status: Status) -> OrderState:
    return OrderState("o-1", status, 3, "cu-1", "r-1", courier_id="c-1")


@pytest.mark.parametrize("status", list(Status))
def test_the_assigned_courier_reports_a_position_only_while_on_the_way(
    status: Status,
) -> None:
    order = _order_in(status)
    on_the_way = status in (S.COURIER_ASSIGNED, S.PICKED_UP, S.IN_DELIVERY)

    if on_the_way:
        check_location(Actor(R.COURIER, "c-1"), order)
        check_location(Actor(R.OPS, "ops-1"), order)
    else:
        with pytest.raises(InvalidTransition):
            check_location(Actor(R.COURIER, "c-1"), order)


@pytest.mark.parametrize(
    "actor",
    [Actor(R.COURIER, "c-2"), Actor(R.CUSTOMER, "cu-1"), Actor(R.DISPATCH, "d-1")],
)
def test_nobody_but_the_assigned_courier_and_ops_reports_a_position(
    actor: Actor,
) -> None:
    with pytest.raises(Forbidden):
        check_location(actor, _order_in(S.PICKED_UP))
