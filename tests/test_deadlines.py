"""Deadlines against real server processes: timeouts, and surviving a crash."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support import (
    UNIT_S,
    WAIT_S,
    Server,
    auth,
    command,
    create_order,
    events_of,
    order_of,
    receive_frame,
    running,
    subscribe,
    unique_id,
    wait_until,
)

SHORT_S = 0.5
"""The deadlines of the quick server, in seconds."""


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("deadlines") / "x.db",
        ORDERCAST_RESTAURANT_TIMEOUT_S=str(SHORT_S),
        ORDERCAST_DISPATCH_TIMEOUT_S=str(SHORT_S),
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(quick_server: Server) -> Iterator[httpx.Client]:
    with quick_server.client() as http:
        yield http


async def next_event(server: Server, order_id: str, since: int) -> dict[str, Any]:
    """The first event after `since`, as the order's customer receives it."""
    async with connect(server.ws_url("customer", "cu-1")) as ws:
        await subscribe(ws, order_id, since=since)
        frame = await receive_frame(ws, timeout_s=SHORT_S + WAIT_S)
    assert frame["type"] == "order.event", frame
    return dict(frame)


def named(log: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in log if e["event"] == event]


def test_an_unanswered_order_is_rejected_by_timeout_and_followers_hear_it(
    quick_server: Server, client: httpx.Client
) -> None:
    # given
    order_id = unique_id()
    create_order(client, order_id)

    # when: the restaurant never answers
    event = asyncio.run(next_event(quick_server, order_id, since=1))

    # then
    assert (event["seq"], event["event"], event["status"]) == (
        2,
        "order.rejected",
        "REJECTED",
    )
    assert event["data"]["reason"] == "restaurant_timeout"
    assert event["message"] == "The restaurant could not take your order"
    assert order_of(client, order_id)["status"] == "REJECTED"
    late_accept = command(client, order_id, "accept", headers=auth("restaurant", "r-1"))
    assert late_accept.status_code == 409
    assert len(named(events_of(client, order_id), "order.rejected")) == 1


def test_an_accepted_order_without_a_courier_is_overdue_and_stays_accepted(
    quick_server: Server, client: httpx.Client
) -> None:
    # given: the restaurant answers in time
    order_id = unique_id()
    create_order(client, order_id)
    accepted = command(client, order_id, "accept", headers=auth("restaurant", "r-1"))
    assert accepted.status_code == 200, accepted.text

    # when: nobody assigns a courier
    event = asyncio.run(next_event(quick_server, order_id, since=2))

    # then
    assert (event["seq"], event["event"], event["status"]) == (
        3,
        "dispatch.overdue",
        "ACCEPTED",
    )
    assert order_of(client, order_id)["status"] == "ACCEPTED"
    assigned = command(client, order_id, "assign_courier", courierId="c-1")
    assert assigned.status_code == 200, assigned.text
    log = events_of(client, order_id)
    assert [e["event"] for e in log] == [
        "order.received",
        "order.accepted",
        "dispatch.overdue",
        "courier.assigned",
    ]


def test_an_order_that_moves_on_in_time_is_not_timed_out(
    quick_server: Server, client: httpx.Client
) -> None:
    order_id = unique_id()
    create_order(client, order_id)
    command(client, order_id, "accept", headers=auth("restaurant", "r-1"))
    command(client, order_id, "assign_courier", courierId="c-1")

    # an order that moved on keeps its status past both deadlines; the quick
    # server's other orders show the deadlines fire within this wait
    other = unique_id()
    create_order(client, other)
    wait_until(lambda: order_of(client, other)["status"] == "REJECTED")

    assert [e["event"] for e in events_of(client, order_id)] == [
        "order.received",
        "order.accepted",
        "courier.assigned",
    ]


def test_deadlines_fire_exactly_once_after_a_crash_and_restart(
    tmp_path: Path,
) -> None:
    # given: orders with deadlines, on a server that dies before they come due
    timeout_s = 5 * UNIT_S
    env = {
        "ORDERCAST_RESTAURANT_TIMEOUT_S": str(timeout_s),
        "ORDERCAST_DISPATCH_TIMEOUT_S": str(timeout_s),
    }
    db_path = tmp_path / "x.db"
    unanswered = [unique_id() for _ in range(3)]
    accepted = unique_id()
    first = Server(db_path, env=env).start()
    try:
        created_at = time.monotonic()
        with first.client() as http:
            for order_id in [*unanswered, accepted]:
                create_order(http, order_id)
            command(http, accepted, "accept", headers=auth("restaurant", "r-1"))
            statuses = {order_of(http, o)["status"] for o in unanswered}
        first.kill()
        killed_after_s = time.monotonic() - created_at
    finally:
        first.stop()
    assert statuses == {"RECEIVED"}
    assert killed_after_s < timeout_s, "the server died after the deadlines"

    # when: it comes back after they came due
    time.sleep(max(0.0, created_at + timeout_s + UNIT_S - time.monotonic()))
    with running(db_path, **env) as second, second.client() as http:
        # then: each deadline fires, once
        for order_id in unanswered:
            wait_until(lambda o=order_id: order_of(http, o)["status"] == "REJECTED")
        wait_until(lambda: named(events_of(http, accepted), "dispatch.overdue"))
        logs = {o: events_of(http, o) for o in [*unanswered, accepted]}
        accepted_status = order_of(http, accepted)["status"]

    for order_id in unanswered:
        log = logs[order_id]
        assert [e["seq"] for e in log] == [1, 2], order_id
        [rejected] = named(log, "order.rejected")
        assert rejected["data"]["reason"] == "restaurant_timeout"
    assert [e["event"] for e in logs[accepted]] == [
        "order.received",
        "order.accepted",
        "dispatch.overdue",
    ]
    assert accepted_status == "ACCEPTED"
