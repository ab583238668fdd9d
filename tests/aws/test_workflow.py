"""The generated state machine, run by moto: deadlines, resumes, races.

Deadlines here are one second long; the waits scale with UNIT_S.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from moto.dynamodb.exceptions import DynamodbException
from moto.dynamodb.models import DynamoDBBackend

from ordercast.aws.workflow import execution_name
from ordercast.lifecycle import Actor, Command, Request, Role
from ordercast.store.base import Applied, Submission
from tests.aws.harness import Reply, Stack
from tests.support import UNIT_S, wait_until


def _names(stack: Stack, order_id: str) -> list[tuple[int, str, str]]:
    return [(e["seq"], e["name"], e["status"]) for e in stack.announced[order_id]]


def _record_without_resume(stack: Stack, order_id: str, request: Request) -> None:
    """Record a command the way the handler does, then stop, as if it crashed."""
    svc = stack.services
    outcome = svc.store.apply(
        Submission(order_id, request=request), datetime.now(UTC), svc.settings.timeouts
    )
    assert isinstance(outcome, Applied)


def _states_entered(stack: Stack, order_id: str) -> list[str]:
    arn = stack.state_machine_arn.replace(":stateMachine:", ":execution:")
    history = stack.sfn.get_execution_history(
        executionArn=f"{arn}:{execution_name(order_id)}"
    )
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in history["events"]
        if "stateEnteredEventDetails" in event
    ]


def _accept(stack: Stack, order_id: str, replies: list[Reply]) -> Callable[[], None]:
    return lambda: replies.append(
        stack.command(order_id, "accept", "restaurant", "r-1")
    )


def test_silent_restaurant_rejects_the_order_by_timeout(
    stack_with: Callable[..., Stack],
) -> None:
    # given an order nobody answers, with a one-second restaurant deadline
    stack = stack_with(restaurant_timeout_s="1")
    customer = stack.follower("customer", "cu-1")
    stack.create("o-1")
    stack.send(customer, {"action": "subscribe", "orderId": "o-1"})

    # when the deadline passes
    stack.settle("o-1", 2)

    # then the order is rejected with the reason, and the execution ends
    rejected = stack.frames(customer)[-1]
    assert (rejected["event"], rejected["status"]) == ("order.rejected", "REJECTED")
    assert rejected["data"] == {"reason": "restaurant_timeout"}
    assert rejected["message"] == "The restaurant could not take your order"
    assert stack.services.store.get_order("o-1").state.status == "REJECTED"
    wait_until(lambda: stack.execution_status("o-1") == "SUCCEEDED")
    late = stack.command("o-1", "accept", "restaurant", "r-1")
    assert (late.status, late.body["code"]) == (409, "invalid_transition")


def test_dispatch_deadline_raises_overdue_once_and_keeps_the_order_accepted(
    stack_with: Callable[..., Stack],
) -> None:
    # given an accepted order and a one-second dispatch deadline
    stack = stack_with(dispatch_timeout_s="1", workflow_recheck_s="1")
    stack.create("o-2")
    assert stack.command("o-2", "accept", "restaurant", "r-1").status == 200

    # when it passes, and twice its length more
    stack.settle("o-2", 3)
    time.sleep(max(2.5, 10 * UNIT_S))
    stack.pump()

    # then one dispatch.overdue, the order still ACCEPTED, and it goes on
    assert _names(stack, "o-2") == [
        (1, "order.received", "RECEIVED"),
        (2, "order.accepted", "ACCEPTED"),
        (3, "dispatch.overdue", "ACCEPTED"),
    ]
    assert stack.services.store.get_order("o-2").state.status == "ACCEPTED"
    assigned = stack.command("o-2", "assign_courier", courierId="c-7")
    assert assigned.status == 200
    stack.settle("o-2", 4)
    assert _names(stack, "o-2")[-1] == (4, "courier.assigned", "COURIER_ASSIGNED")


def test_commands_resume_the_execution_through_the_whole_lifecycle(
    stack: Stack,
) -> None:
    stack.create("o-3")
    steps = [
        ("accept", "restaurant", "r-1", {}),
        ("assign_courier", "dispatch", "d-1", {"courierId": "c-7"}),
        ("pick_up", "courier", "c-7", {}),
        ("start_delivery", "courier", "c-7", {}),
        ("deliver", "courier", "c-7", {}),
    ]
    for seq, (name, role, subject, fields) in enumerate(steps, start=2):
        stack.settle("o-3", seq - 1)  # the step stored its token
        reply = stack.command("o-3", name, role, subject, **fields)
        assert reply.status == 200, reply.body
    stack.settle("o-3", 6)

    assert [s for s, _, _ in _names(stack, "o-3")] == [1, 2, 3, 4, 5, 6]
    assert _names(stack, "o-3")[-1] == (6, "order.delivered", "DELIVERED")
    wait_until(lambda: stack.execution_status("o-3") == "SUCCEEDED")
    assert stack.services.store.task_token("o-3") is None


def test_event_recorded_without_resuming_is_announced_by_the_recheck(
    stack_with: Callable[..., Stack],
) -> None:
    # given an order waiting in COURIER_ASSIGNED (no deadline; rechecks each second)
    stack = stack_with(workflow_recheck_s="1")
    stack.create("o-4")
    stack.settle("o-4", 1)
    stack.command("o-4", "accept", "restaurant", "r-1")
    stack.settle("o-4", 2)
    stack.command("o-4", "assign_courier", courierId="c-7")
    stack.settle("o-4", 3)

    # when a handler records pick_up and stops before resuming the execution
    courier = Actor(Role.COURIER, "c-7")
    _record_without_resume(stack, "o-4", Request(Command.PICK_UP, "o-4", courier))

    # then the execution finds it in the store and announces it
    stack.settle("o-4", 4)
    assert _names(stack, "o-4")[-1] == (4, "order.picked_up", "PICKED_UP")


def test_deadline_that_loses_the_race_to_a_command_records_nothing(
    stack_with: Callable[..., Stack],
) -> None:
    # given a one-second restaurant deadline
    stack = stack_with(restaurant_timeout_s="1")
    stack.create("o-5")
    stack.settle("o-5", 1)

    # when the restaurant's accept is recorded just before the deadline fires
    restaurant = Actor(Role.RESTAURANT, "r-1")
    _record_without_resume(stack, "o-5", Request(Command.ACCEPT, "o-5", restaurant))
    stack.settle("o-5", 2)

    # then the accept stands, no rejection was recorded, and nothing is twice
    time.sleep(max(1.5, 5 * UNIT_S))
    stack.pump()
    assert _names(stack, "o-5") == [
        (1, "order.received", "RECEIVED"),
        (2, "order.accepted", "ACCEPTED"),
    ]
    events = stack.services.store.read_events("o-5")
    assert [e.name for e in events] == ["order.received", "order.accepted"]


def test_command_recorded_before_the_step_stores_its_token_is_announced_once(
    stack: Stack,
) -> None:
    # given an accept recorded after the order's first announcement, just
    # before the waiting step's request to store its token
    replies: list[Reply] = []
    with stack.around_token_write(1, before=_accept(stack, "o-6", replies)):
        stack.create("o-6")

        # when the step's check finds the order moved on
        stack.settle("o-6", 2)

    # then the handler found no token to resume, the step read the event
    # itself, and each event was announced once
    assert [reply.status for reply in replies] == [200]
    assert "Resync" in _states_entered(stack, "o-6")
    assert [seq for seq, _, _ in _names(stack, "o-6")] == [1, 2]
    assert stack.services.store.task_token("o-6").seq == 2


def test_command_recorded_after_the_step_stores_its_token_resumes_it(
    stack: Stack,
) -> None:
    # given an accept recorded just after the waiting step stored its token
    replies: list[Reply] = []
    with stack.around_token_write(1, after=_accept(stack, "o-7", replies)):
        stack.create("o-7")

        # when the handler reads the token
        stack.settle("o-7", 2)

    # then it resumed the step with the event, and nothing was read again
    assert [reply.status for reply in replies] == [200]
    assert "Resync" not in _states_entered(stack, "o-7")
    assert [seq for seq, _, _ in _names(stack, "o-7")] == [1, 2]
    assert stack.services.store.task_token("o-7").seq == 2


def test_command_arriving_inside_the_steps_transaction_waits_for_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness's DynamoDB applies a transaction at one instant, as DynamoDB
    does: without that, moto lets this command run between the step's check
    and its token write, and the step waits for ever after a seq already past."""
    # given an accept sent while moto is inside the step's transaction, its
    # ConditionCheck passed and its token not yet written
    replies: list[Reply] = []
    racing = threading.Thread(target=_accept(stack, "o-9", replies))
    put_item = DynamoDBBackend.put_item

    def put_item_late(
        backend: DynamoDBBackend, table: str, *args: Any, **kw: Any
    ) -> Any:
        if table == stack.names["TaskTokensTable"] and racing.ident is None:
            racing.start()
            racing.join(2 * UNIT_S)  # as long as the command may take the lead
        return put_item(backend, table, *args, **kw)

    monkeypatch.setattr(DynamoDBBackend, "put_item", put_item_late)
    stack.create("o-9")

    # when the transaction ends
    stack.settle("o-9", 2)
    racing.join()

    # then the command went after it, found the token and resumed the step
    assert [reply.status for reply in replies] == [200]
    assert "Resync" not in _states_entered(stack, "o-9")
    assert [seq for seq, _, _ in _names(stack, "o-9")] == [1, 2]


def test_a_throttled_token_write_is_retried_and_the_order_goes_on(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a DynamoDB that throttles the step's first two token writes
    throttled: list[int] = []
    transact = DynamoDBBackend.transact_write_items

    def throttling(backend: DynamoDBBackend, items: list[dict[str, Any]]) -> None:
        tokens = stack.names["TaskTokensTable"]
        writes_token = any(
            item.get("Put", {}).get("TableName") == tokens for item in items
        )
        if writes_token and len(throttled) < 2:
            throttled.append(1)
            raise DynamodbException(
                "ProvisionedThroughputExceededException", "Rate of requests exceeded"
            )
        transact(backend, items)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", throttling)
    stack.create("o-10")

    # when the step has stored its token after all, and a command comes
    wait_until(lambda: stack.services.store.task_token("o-10") is not None)
    assert stack.command("o-10", "accept", "restaurant", "r-1").status == 200
    stack.settle("o-10", 2)

    # then the throttling cost retries only: the command resumed the step
    assert len(throttled) == 2
    assert stack.execution_status("o-10") == "RUNNING"
    assert "Resync" not in _states_entered(stack, "o-10")
    assert [seq for seq, _, _ in _names(stack, "o-10")] == [1, 2]
