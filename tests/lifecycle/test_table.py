"""The lifecycle declared as data, and the check that refuses a broken one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ordercast.errors import LifecycleDefinitionError, OrdercastError, Refusal
from ordercast.lifecycle import (
    DEADLINES,
    TRANSITIONS,
    Command,
    Deadline,
    Role,
    Status,
    Transition,
)
from ordercast.lifecycle.table import HAPPY_PATH, validate_table

S, C = Status, Command


def test_shipped_table_is_valid() -> None:
    validate_table(TRANSITIONS, DEADLINES)


def test_statuses_and_commands_match_their_wire_strings() -> None:
    assert [s.value for s in Status] == [
        "RECEIVED",
        "ACCEPTED",
        "COURIER_ASSIGNED",
        "PICKED_UP",
        "IN_DELIVERY",
        "DELIVERED",
        "REJECTED",
        "CANCELLED",
        "FAILED",
    ]
    assert {c.value for c in Command} == {
        "create",
        "accept",
        "reject",
        "assign_courier",
        "pick_up",
        "start_delivery",
        "deliver",
        "cancel",
        "fail",
    }
    assert {r.value for r in Role} == {
        "customer",
        "restaurant",
        "courier",
        "dispatch",
        "ops",
    }


def test_only_delivered_rejected_cancelled_and_failed_are_terminal() -> None:
    terminal = {s for s in Status if s.is_terminal}

    assert terminal == {S.DELIVERED, S.REJECTED, S.CANCELLED, S.FAILED}
    assert HAPPY_PATH[-1] is S.DELIVERED
    assert not any(s.is_terminal for s in HAPPY_PATH[:-1])


def test_ops_is_always_a_sender() -> None:
    row = Transition(C.ACCEPT, frozenset({S.RECEIVED}), S.ACCEPTED, "x", frozenset())

    assert row.senders == {Role.OPS}


# broken tables


def _without(command: Command) -> tuple[Transition, ...]:
    return tuple(row for row in TRANSITIONS if row.command is not command)


def _row(command: Command, sources: set[Status], target: Status) -> Transition:
    return Transition(command, frozenset(sources), target, "x.y", frozenset())


def test_row_leaving_a_terminal_status_is_a_definition_error() -> None:
    broken = (*TRANSITIONS, _row(C.ACCEPT, {S.DELIVERED}, S.ACCEPTED))

    with pytest.raises(LifecycleDefinitionError, match="DELIVERED"):
        validate_table(broken, DEADLINES)


def test_two_rows_for_one_command_and_status_are_a_definition_error() -> None:
    broken = (*TRANSITIONS, _row(C.ACCEPT, {S.RECEIVED}, S.CANCELLED))

    with pytest.raises(LifecycleDefinitionError, match="two rows"):
        validate_table(broken, DEADLINES)


def test_command_without_a_row_is_a_definition_error() -> None:
    with pytest.raises(LifecycleDefinitionError, match="fail"):
        validate_table(_without(C.FAIL), DEADLINES)


def test_deadline_with_an_unknown_setting_is_a_definition_error() -> None:
    broken = replace(DEADLINES[0], timeout_setting="lunch_timeout_s")

    with pytest.raises(LifecycleDefinitionError, match="lunch_timeout_s"):
        validate_table(TRANSITIONS, (broken, *DEADLINES[1:]))


def test_deadline_on_a_terminal_status_is_a_definition_error() -> None:
    broken = Deadline(
        kind="late_review",
        status=S.DELIVERED,
        timeout_setting="dispatch_timeout_s",
        event="review.overdue",
        target=None,
    )

    with pytest.raises(LifecycleDefinitionError, match="late_review"):
        validate_table(TRANSITIONS, (*DEADLINES, broken))


def test_deadline_firing_into_a_non_status_is_a_definition_error() -> None:
    broken = replace(DEADLINES[0], target="TIMED_OUT")

    with pytest.raises(LifecycleDefinitionError, match="TIMED_OUT"):
        validate_table(TRANSITIONS, (broken,))


def test_definition_error_is_not_a_refusal() -> None:
    assert issubclass(LifecycleDefinitionError, OrdercastError)
    assert not issubclass(LifecycleDefinitionError, Refusal)
