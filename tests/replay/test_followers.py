"""Many WebSocket followers while a real Grubhub replay runs against a server.

Every follower must see every event of the orders it follows exactly once and
in seq order: the customer's phone that stays connected, the customer's laptop
that drops its connection and resumes with `since`, the restaurant's tablet,
and ops following every order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from ordercast.lifecycle import Command
from ordercast.replay.grubhub import Instance
from ordercast.replay.plan import Plan
from tests.replay.replaying import SERVER_ENV, plan_of, replay_async
from tests.support import (
    OPS,
    UNIT_S,
    WAIT_S,
    Server,
    receive_frame,
    running,
    send_frame,
)

pytestmark = pytest.mark.anyio

ORDERS = 30
OPS_FOLLOWERS = 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db_path = tmp_path_factory.mktemp("followers") / "ordercast.db"
    with running(db_path, **SERVER_ENV) as srv:
        yield srv


@dataclass
class Follower:
    """One client: who it is, what it follows, and every event frame it got."""

    name: str
    role: str
    subject: str
    order_id: str
    """An order id, or `*` for every order."""
    drop_after_seq: int | None = None
    """Close the socket after this seq and resume with `since` on a new one."""
    events: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    connections: int = 0

    def last_seq(self) -> int:
        frames = self.events.get(self.order_id, [])
        return frames[-1]["seq"] if frames else 0


async def subscribe_when_created(ws: Any, order_id: str, since: int | None) -> None:
    """Subscribe, retrying while the replay has not created the order yet."""
    frame: dict[str, Any] = {"action": "subscribe", "orderId": order_id}
    if since is not None:
        frame["since"] = since
    while True:
        await send_frame(ws, frame)
        answer = await receive_frame(ws)
        if answer["type"] == "subscribed":
            return
        assert answer.get("code") == "order_not_found", answer
        await asyncio.sleep(UNIT_S / 10)


async def follow(server: Server, follower: Follower) -> None:
    """Follow until cancelled, resuming once if told to drop the connection."""
    since: int | None = None if follower.order_id == "*" else 0
    while True:
        url = server.ws_url(follower.role, follower.subject)
        async with connect(url, max_queue=None) as ws:
            follower.connections += 1
            await subscribe_when_created(ws, follower.order_id, since)
            while True:
                frame = await ws.recv()
                event = _event(frame)
                if event is None:
                    continue
                follower.events[event["orderId"]].append(event)
                if follower.drop_after_seq == event["seq"]:
                    follower.drop_after_seq = None
                    break
        # a phone going through a tunnel: away for a moment, then resume
        await asyncio.sleep(UNIT_S)
        since = follower.last_seq()


def _event(text: str | bytes) -> dict[str, Any] | None:
    frame = json.loads(text)
    return frame if frame["type"] == "order.event" else None


def followers_of(plan: Plan) -> list[Follower]:
    """Three followers for each order, and ops following them all."""
    followers = [
        Follower(f"ops-{i}", "ops", f"ops-{i}", "*") for i in range(OPS_FOLLOWERS)
    ]
    for step in plan.steps:
        if step.command is not Command.CREATE:
            continue
        customer = step.fields["customerId"]
        restaurant = step.fields["restaurantId"]
        order_id = step.order_id
        followers += [
            Follower(f"{order_id} phone", "customer", customer, order_id),
            Follower(f"{order_id} laptop", "customer", customer, order_id, 2),
            Follower(f"{order_id} tablet", "restaurant", restaurant, order_id),
        ]
    return followers


async def stored_events(server: Server, plan: Plan) -> dict[str, list[Any]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        logs = {}
        for order_id in plan.intended:
            response = await client.get(f"/orders/{order_id}/events", headers=OPS)
            assert response.status_code == 200, response.text
            logs[order_id] = response.json()["events"]
        return logs


def what_is_missing(followers: list[Follower], logs: dict[str, list[Any]]) -> list[str]:
    """Followers that have not yet seen every stored event of their orders."""
    missing = []
    for follower in followers:
        orders = logs if follower.order_id == "*" else [follower.order_id]
        for order_id in orders:
            if len(follower.events.get(order_id, [])) < len(logs[order_id]):
                missing.append(f"{follower.name} on {order_id}")
    return missing


async def test_every_follower_sees_every_event_once_in_seq_order(
    instance: Instance, server: Server
) -> None:
    # given ops following every order, and three followers per order that
    # subscribe from seq 0 as soon as their order exists
    plan = plan_of(instance, limit=ORDERS)
    followers = followers_of(plan)
    tasks = [asyncio.create_task(follow(server, f)) for f in followers]
    try:
        # when a real delivery day is replayed (silent restaurants are
        # rejected by the server's deadline a little later)
        summary = await replay_async(plan, server)
        assert (summary.refused, summary.failed) == (0, 0)
        async with asyncio.timeout(WAIT_S):
            while True:
                logs = await stored_events(server, plan)
                settled = all(
                    logs[o][-1]["status"] == status.value
                    for o, status in plan.intended.items()
                )
                if settled and not what_is_missing(followers, logs):
                    break
                await asyncio.sleep(UNIT_S / 2)
        await asyncio.sleep(UNIT_S)  # room for a duplicate to show up
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # then each follower saw each stored event of its orders once, in seq order
    for follower in followers:
        orders = logs if follower.order_id == "*" else [follower.order_id]
        for order_id in orders:
            seen = [(e["seq"], e["eventId"]) for e in follower.events[order_id]]
            stored = [(e["seq"], e["eventId"]) for e in logs[order_id]]
            assert seen == stored, f"{follower.name} on {order_id}"
    laptops = [f for f in followers if f.name.endswith("laptop")]
    assert all(f.connections == 2 for f in laptops)
    assert sum(len(log) for log in logs.values()) > 3 * ORDERS
