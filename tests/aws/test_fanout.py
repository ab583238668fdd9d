"""The notifier: followers through the index, GoneException, order, staleness."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from ordercast.aws.fanout import Fanout
from ordercast.aws.handlers import notifier
from ordercast.aws.items import event_to_json
from ordercast.eta.trips import fold
from ordercast.lifecycle import Actor, Command, Event, Request, Role
from ordercast.store.base import Applied, Submission
from ordercast.wire.frames import encode, event_frame
from tests.aws.harness import Context, Stack


def _subscribed_order(stack: Stack, order_id: str, *subjects: str) -> list[str]:
    """An order followed by customers `subjects` (all its customer's devices)."""
    stack.create(order_id)
    stack.settle(order_id, 1)
    followers = [stack.follower("customer", "cu-1") for _ in subjects]
    for connection_id in followers:
        stack.send(connection_id, {"action": "subscribe", "orderId": order_id})
    return followers


def _record(stack: Stack, order_id: str, command: Command, **fields: Any) -> Event:
    """Record a command in the store only (no execution, no announcement)."""
    svc = stack.services
    request = Request(command, order_id, Actor(Role.OPS, "ops-1"), **fields)
    outcome = svc.store.apply(
        Submission(order_id, request=request), datetime.now(UTC), svc.settings.timeouts
    )
    assert isinstance(outcome, Applied)
    return outcome.events[0]


def _sns(stack: Stack, event: Event) -> dict[str, Any]:
    return stack.sns_event(
        {"MessageId": "m-1", "Message": json.dumps(event_to_json(event))}
    )


def _events(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames if f["type"] == "order.event"]


def test_notifier_finds_followers_through_the_index_never_a_scan(stack: Stack) -> None:
    # given
    (customer,) = _subscribed_order(stack, "o-1", "phone")
    client = stack.services.store.client
    queries: list[dict[str, Any]] = []

    def forbid_scan(**kwargs: Any) -> None:
        raise AssertionError("the notifier scanned a table")

    def note_query(params: dict[str, Any], **kwargs: Any) -> None:
        queries.append(params)

    client.meta.events.register("before-call.dynamodb.Scan", forbid_scan)
    client.meta.events.register("provide-client-params.dynamodb.Query", note_query)

    # when
    stack.command("o-1", "accept", "restaurant", "r-1")
    stack.settle("o-1", 2)

    # then
    assert any(q.get("IndexName") == "byOrder" for q in queries)
    assert _events(stack.frames(customer)) == [2]


def test_frames_are_the_embedded_runtime_frames(stack: Stack) -> None:
    (customer,) = _subscribed_order(stack, "o-2", "phone")
    event = _record(stack, "o-2", Command.ACCEPT)

    notifier.handler(_sns(stack, event), Context())

    posted = stack.frames(customer)[-1]
    # the ETA the embedded runtime gives the same log (ordercast.eta.trips)
    _, etas = fold(None, stack.services.store.read_events("o-2"))
    assert etas[-1] is not None
    assert encode(posted) == encode(event_frame(event, "en", etas[-1]))


def test_gone_connection_is_removed_and_only_it(stack: Stack) -> None:
    # given two devices following one order
    phone, laptop = _subscribed_order(stack, "o-3", "phone", "laptop")
    event = _record(stack, "o-3", Command.ACCEPT)
    followers = sorted([phone, laptop])  # the index's order
    gone, alive = followers[0], followers[1]
    svc = stack.services

    # when the first answers GoneException and the second takes the frame
    with Stubber(svc.management) as stub:
        stub.add_client_error(
            "post_to_connection",
            service_error_code="GoneException",
            http_status_code=410,
            expected_params={"ConnectionId": gone, "Data": _any()},
        )
        stub.add_response(
            "post_to_connection", {}, {"ConnectionId": alive, "Data": _any()}
        )
        result = notifier.handler(_sns(stack, event), Context())
        stub.assert_no_pending_responses()

    # then only the gone connection and its subscription are forgotten
    assert result == {"posted": 1, "gone": 1, "stale": 0}
    assert svc.connections.get(gone) is None
    assert [f.connection_id for f in svc.connections.followers("o-3")] == [alive]
    assert svc.connections.get(alive) is not None


def test_other_post_failures_keep_the_connection_and_fail_the_delivery(
    stack: Stack,
) -> None:
    (phone,) = _subscribed_order(stack, "o-4", "phone")
    event = _record(stack, "o-4", Command.ACCEPT)
    svc = stack.services

    with Stubber(svc.management) as stub:
        stub.add_client_error(
            "post_to_connection",
            service_error_code="LimitExceededException",
            http_status_code=429,
        )
        with pytest.raises(notifier.DeliveryIncomplete):
            notifier.handler(_sns(stack, event), Context())

    # the connection stays, and a retry posts the event once
    assert svc.connections.get(phone) is not None
    notifier.handler(_sns(stack, event), Context())
    notifier.handler(_sns(stack, event), Context())
    assert _events(stack.frames(phone)) == [2]


def test_connections_older_than_two_hours_are_skipped(stack: Stack) -> None:
    (phone,) = _subscribed_order(stack, "o-5", "phone")
    event = _record(stack, "o-5", Command.ACCEPT)
    svc = stack.services
    later = datetime.now(UTC) + timedelta(hours=2, seconds=1)
    fanout = Fanout(svc.store, svc.connections, svc.fanout.post, clock=lambda: later)

    report = fanout.deliver(event, holder="test")

    assert (report.posted, report.stale, report.gone) == (0, 1, [])
    assert _events(stack.frames(phone)) == []
    assert svc.connections.get(phone) is not None, "only GoneException removes"


def test_repeated_announcement_is_posted_once(stack: Stack) -> None:
    (phone,) = _subscribed_order(stack, "o-6", "phone")
    event = _record(stack, "o-6", Command.ACCEPT)

    for _ in range(3):
        notifier.handler(_sns(stack, event), Context())

    assert _events(stack.frames(phone)) == [2]


def test_gap_is_filled_from_the_store_in_seq_order(stack: Stack) -> None:
    (phone,) = _subscribed_order(stack, "o-7", "phone")
    _record(stack, "o-7", Command.ACCEPT)
    third = _record(stack, "o-7", Command.ASSIGN_COURIER, courier_id="c-7")

    # the announcement of seq 2 is late: seq 3 arrives first
    notifier.handler(_sns(stack, third), Context())

    assert _events(stack.frames(phone)) == [2, 3]


def test_a_leased_subscription_gets_events_after_the_holder_is_done(
    stack: Stack,
) -> None:
    # given another Lambda holding the subscription's lease
    (phone,) = _subscribed_order(stack, "o-8", "phone")
    event = _record(stack, "o-8", Command.ACCEPT)
    connections = stack.services.connections
    assert connections.acquire(phone, "o-8", "other", wait_s=1) == 1

    # when the notifier hears seq 2 meanwhile
    worker = threading.Thread(
        target=stack.services.fanout.deliver, args=(event, "notifier")
    )
    worker.start()
    time.sleep(0.3)
    assert _events(stack.frames(phone)) == [], "it waits for the lease"
    connections.release(phone, "o-8", "other", 1)
    worker.join(timeout=15)

    # then it posts once the holder gave the lease back
    assert _events(stack.frames(phone)) == [2]


class _any:  # noqa: N801
    """Matches any value in Stubber's expected params."""

    def __eq__(self, other: object) -> bool:
        return True
