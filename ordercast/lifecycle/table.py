"""The lifecycle of DESIGN.md, declared as data.

Every other part of ordercast (the local engine, the generated state machine,
the docs) reads these tables; none repeats them. `validate_table` runs at
import, so a broken table fails at startup rather than on the first order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ordercast.errors import LifecycleDefinitionError


class Status(StrEnum):
    """Where an order stands. Members match their wire strings."""

    RECEIVED = "RECEIVED"
    ACCEPTED = "ACCEPTED"
    COURIER_ASSIGNED = "COURIER_ASSIGNED"
    PICKED_UP = "PICKED_UP"
    IN_DELIVERY = "IN_DELIVERY"
    DELIVERED = "DELIVERED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        """Whether no command can move the order on from here."""
        return self in TERMINAL


TERMINAL = frozenset(
    {Status.DELIVERED, Status.REJECTED, Status.CANCELLED, Status.FAILED}
)
"""Statuses an order never leaves."""

HAPPY_PATH = (
    Status.RECEIVED,
    Status.ACCEPTED,
    Status.COURIER_ASSIGNED,
    Status.PICKED_UP,
    Status.IN_DELIVERY,
    Status.DELIVERED,
)
"""The six steps a customer sees on a timeline, in order."""


class Command(StrEnum):
    """What the platform, a restaurant, a courier or ops asks of an order."""

    CREATE = "create"
    ACCEPT = "accept"
    REJECT = "reject"
    ASSIGN_COURIER = "assign_courier"
    PICK_UP = "pick_up"
    START_DELIVERY = "start_delivery"
    DELIVER = "deliver"
    CANCEL = "cancel"
    FAIL = "fail"


class Role(StrEnum):
    """Who is speaking, as stated by the token's `role` claim."""

    CUSTOMER = "customer"
    RESTAURANT = "restaurant"
    COURIER = "courier"
    DISPATCH = "dispatch"
    OPS = "ops"


@dataclass(frozen=True)
class Transition:
    """One row of the command table: `command` moves `sources` to `target`."""

    command: Command
    sources: frozenset[Status]
    target: Status
    event: str
    """Past-tense dotted name of the event the transition records."""
    senders: frozenset[Role]
    """Roles that may send it. Ops may send every command and is always added."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "senders", self.senders | {Role.OPS})


@dataclass(frozen=True)
class Deadline:
    """A deadline tied to a status: set on entering it, cleared on leaving it."""

    kind: str
    status: Status
    timeout_setting: str
    """Name of the `Timeouts` field that gives its length."""
    event: str
    """Event recorded when it fires while the order is still in `status`."""
    target: Status | None
    """Status after it fires; None keeps the status (only an event is recorded)."""
    data: dict[str, str] = field(default_factory=dict)


def _row(
    command: Command,
    sources: set[Status],
    target: Status,
    event: str,
    senders: set[Role],
) -> Transition:
    return Transition(command, frozenset(sources), target, event, frozenset(senders))


_S = Status
_C = Command
_R = Role

TRANSITIONS: tuple[Transition, ...] = (
    _row(_C.CREATE, set(), _S.RECEIVED, "order.received", set()),
    _row(_C.ACCEPT, {_S.RECEIVED}, _S.ACCEPTED, "order.accepted", {_R.RESTAURANT}),
    _row(_C.REJECT, {_S.RECEIVED}, _S.REJECTED, "order.rejected", {_R.RESTAURANT}),
    _row(
        _C.ASSIGN_COURIER,
        {_S.ACCEPTED, _S.COURIER_ASSIGNED},
        _S.COURIER_ASSIGNED,
        "courier.assigned",
        {_R.DISPATCH},
    ),
    _row(
        _C.PICK_UP, {_S.COURIER_ASSIGNED}, _S.PICKED_UP, "order.picked_up", {_R.COURIER}
    ),
    _row(
        _C.START_DELIVERY,
        {_S.PICKED_UP},
        _S.IN_DELIVERY,
        "delivery.started",
        {_R.COURIER},
    ),
    _row(_C.DELIVER, {_S.IN_DELIVERY}, _S.DELIVERED, "order.delivered", {_R.COURIER}),
    _row(
        _C.CANCEL,
        {_S.RECEIVED, _S.ACCEPTED, _S.COURIER_ASSIGNED},
        _S.CANCELLED,
        "order.cancelled",
        {_R.CUSTOMER, _R.RESTAURANT},
    ),
    _row(
        _C.CANCEL,
        {_S.PICKED_UP, _S.IN_DELIVERY},
        _S.CANCELLED,
        "order.cancelled",
        set(),
    ),
    _row(
        _C.FAIL,
        {_S.PICKED_UP, _S.IN_DELIVERY},
        _S.FAILED,
        "delivery.failed",
        {_R.COURIER},
    ),
)
"""DESIGN.md's command table, one row per (command, sources, senders)."""

DEADLINES: tuple[Deadline, ...] = (
    Deadline(
        kind="restaurant_answer",
        status=Status.RECEIVED,
        timeout_setting="restaurant_timeout_s",
        event="order.rejected",
        target=Status.REJECTED,
        data={"reason": "restaurant_timeout"},
    ),
    Deadline(
        kind="courier_assignment",
        status=Status.ACCEPTED,
        timeout_setting="dispatch_timeout_s",
        event="dispatch.overdue",
        target=None,
    ),
)
"""Deadlines of DESIGN.md: a silent restaurant, an order nobody delivers."""


def validate_table(
    transitions: tuple[Transition, ...], deadlines: tuple[Deadline, ...]
) -> None:
    """Check that the tables describe one consistent lifecycle.

    Raises:
        LifecycleDefinitionError: a command row leaves a terminal status, two
            rows claim the same (command, status), a command has no row, or a
            deadline names an unknown setting or fires into a non-status.
    """
    seen: set[tuple[Command, Status]] = set()
    for row in transitions:
        for source in row.sources:
            if source.is_terminal:
                raise LifecycleDefinitionError(f"{row.command} leaves final {source}")
            if (row.command, source) in seen:
                raise LifecycleDefinitionError(
                    f"two rows for {row.command} from {source}"
                )
            seen.add((row.command, source))
    missing = set(Command) - {row.command for row in transitions}
    if missing:
        raise LifecycleDefinitionError(f"commands without a row: {sorted(missing)}")
    for deadline in deadlines:
        if deadline.timeout_setting not in (
            "restaurant_timeout_s",
            "dispatch_timeout_s",
        ):
            raise LifecycleDefinitionError(
                f"unknown setting {deadline.timeout_setting}"
            )
        if deadline.status.is_terminal:
            raise LifecycleDefinitionError(
                f"deadline {deadline.kind} on a final status"
            )
        if deadline.target is not None and not isinstance(deadline.target, Status):
            raise LifecycleDefinitionError(
                f"deadline {deadline.kind} fires into {deadline.target!r}, not a status"
            )


validate_table(TRANSITIONS, DEADLINES)
