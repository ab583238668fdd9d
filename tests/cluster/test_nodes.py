"""Three nodes on one PostgreSQL and one Redis, and a real Grubhub replay.

Commands reach every node, followers are spread over the nodes, and one node
is killed with SIGKILL in the middle of the replay: its followers reconnect
to another node with `since`, and every follower must still see every event
of its orders exactly once and in seq order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ordercast.lifecycle import Status
from ordercast.replay.grubhub import Instance
from ordercast.replay.plan import Plan
from tests.cluster.conftest import Cluster
from tests.replay.replaying import SERVER_ENV, plan_of, replay_async
from tests.replay.test_followers import (
    Follower,
    followers_of,
    stored_events,
    subscribe_when_created,
    what_is_missing,
)
from tests.services import database_url, unique_name
from tests.support import (
    OPS,
    UNIT_S,
    WAIT_S,
    Server,
    command,
    create_order,
    events_of,
    receive_frame,
    subscribe,
    unique_id,
)

pytestmark = pytest.mark.anyio

ORDERS = 30
KILLED = 2
"""The node that is killed; ops follow every order from the others."""

CLUSTER_ENV = {
    **SERVER_ENV,
    # three nodes on two cores: restaurants answer late more often than on one
    "ORDERCAST_RESTAURANT_TIMEOUT_S": str(10 * UNIT_S),
    "ORDERCAST_CATCH_UP_INTERVAL_S": str(2 * UNIT_S),
    "ORDERCAST_DEADLINE_LEASE_S": str(5 * UNIT_S),
}


@dataclass
class Placed:
    """A follower and the node it is connected to now."""

    follower: Follower
    node: int


async def follow_on(nodes: list[Server], placed: Placed) -> None:
    """Follow until cancelled; on a lost connection, go on at the next node.

    The laptop drops its connection once on purpose (`drop_after_seq`) and
    resumes on the next node too, so resuming across nodes is exercised even
    by followers of nodes that stay up.
    """
    follower = placed.follower
    since: int | None = None if follower.order_id == "*" else 0
    while True:
        server = nodes[placed.node % len(nodes)]
        try:
            url = server.ws_url(follower.role, follower.subject)
            async with connect(url, max_queue=None, open_timeout=WAIT_S) as ws:
                follower.connections += 1
                await subscribe_when_created(ws, follower.order_id, since)
                while True:
                    event = _event(await ws.recv())
                    if event is None:
                        continue
                    follower.events[event["orderId"]].append(event)
                    if follower.drop_after_seq == event["seq"]:
                        follower.drop_after_seq = None
                        break
        except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
            pass
        # away for a moment, then resume where it left off, on another node
        placed.node += 1
        await asyncio.sleep(UNIT_S)
        since = follower.last_seq() if follower.order_id != "*" else None


def _event(text: str | bytes) -> dict[str, Any] | None:
    frame = json.loads(text)
    return frame if frame["type"] == "order.event" else None


def place(followers: list[Follower], nodes: int) -> list[Placed]:
    """Ops on the nodes that stay up; everyone else dealt out to every node."""
    placed = []
    for index, follower in enumerate(followers):
        if follower.order_id == "*":
            placed.append(Placed(follower, index % KILLED))
        else:
            placed.append(Placed(follower, index % nodes))
    return placed


async def settled_logs(
    node: Server, plan: Plan, followers: list[Follower]
) -> dict[str, list[Any]]:
    """Every order's log once all are final and every follower has them all.

    Raises:
        AssertionError: not within the test's patience; says what is missing.
    """
    missing: list[str] = []
    try:
        async with asyncio.timeout(2 * WAIT_S):
            while True:
                logs = await stored_events(node, plan)
                missing = [
                    f"{order_id} is {log[-1]['status']}"
                    for order_id, log in logs.items()
                    if not Status(log[-1]["status"]).is_terminal
                ]
                missing += what_is_missing(followers, logs)
                if not missing:
                    return logs
                await asyncio.sleep(UNIT_S / 2)
    except TimeoutError:
        raise AssertionError(f"still missing: {missing[:10]}") from None


async def kill_when_busy(node: Server, followers: list[Follower], events: int) -> None:
    """SIGKILL `node` once followers have seen `events` events in all."""
    while sum(len(log) for f in followers for log in f.events.values()) < events:
        await asyncio.sleep(UNIT_S / 20)
    await asyncio.to_thread(node.kill)


async def test_followers_miss_nothing_when_a_node_is_killed_mid_replay(
    instance: Instance, cluster: Cluster
) -> None:
    # given three nodes, followers spread over them and ops on two of them
    nodes = cluster(3, **CLUSTER_ENV)
    plan = plan_of(instance, limit=ORDERS)
    followers = followers_of(plan)
    placed = place(followers, len(nodes))
    tasks = [asyncio.create_task(follow_on(nodes, p)) for p in placed]
    on_killed = [p.follower for p in placed if p.node == KILLED]
    try:
        # when a real delivery day is replayed with commands dealt out to
        # every node, and one node is killed in the middle of it
        killer = asyncio.create_task(kill_when_busy(nodes[KILLED], followers, 300))
        summary = await replay_async(
            plan, nodes[0], more_urls=tuple(n.url for n in nodes[1:])
        )
        await killer
        # on a loaded machine a restaurant may answer after its deadline
        # rejected the order (a refusal, and a final status all the same);
        # every command gets an answer
        assert summary.failed == 0
        logs = await settled_logs(nodes[0], plan, followers)
        await asyncio.sleep(UNIT_S)  # room for a duplicate to show up
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # then each follower saw each stored event of its orders once, in seq order
    assert nodes[KILLED].process is not None
    assert nodes[KILLED].process.returncode == -signal.SIGKILL
    for follower in followers:
        orders = logs if follower.order_id == "*" else [follower.order_id]
        for order_id in orders:
            seen = [(e["seq"], e["eventId"]) for e in follower.events[order_id]]
            stored = [(e["seq"], e["eventId"]) for e in logs[order_id]]
            assert seen == stored, f"{follower.name} on {order_id}"

    # and the killed node's followers did resume elsewhere
    assert on_killed
    assert all(f.connections >= 2 for f in on_killed)
    assert summary.retried > 0  # commands for the killed node went elsewhere


async def test_a_deadline_fires_once_when_the_node_that_set_it_is_gone(
    cluster: Cluster,
) -> None:
    # given two nodes with a short restaurant deadline, and a customer
    # following an order on the second node
    timeout_s = 10 * UNIT_S
    setting, other = cluster(
        2,
        ORDERCAST_RESTAURANT_TIMEOUT_S=str(timeout_s),
        ORDERCAST_DEADLINE_LEASE_S=str(2 * UNIT_S),
    )
    # when the node that recorded the order (and its deadline) dies
    order_id, frame = await next_frame_once_killed(setting, other, timeout_s)

    # then the other node fires the deadline, and its follower hears it
    assert (frame["event"], frame["data"]) == (
        "order.rejected",
        {"reason": "restaurant_timeout"},
    )
    with other.client() as http:
        names = [e["event"] for e in events_of(http, order_id)]
    assert names == ["order.received", "order.rejected"]


async def test_a_shorter_deadline_from_another_node_fires_when_due(
    cluster: Cluster,
) -> None:
    # given a node whose own deadlines are far off, its deadline loop asleep,
    # and a node with a short restaurant deadline (a settings change rolling
    # out)
    timeout_s = 10 * UNIT_S
    [patient] = cluster(1, ORDERCAST_RESTAURANT_TIMEOUT_S="600")
    [hasty] = cluster(1, ORDERCAST_RESTAURANT_TIMEOUT_S=str(timeout_s))
    # when the node that set the deadline dies before it is due
    _, frame = await next_frame_once_killed(hasty, patient, timeout_s)

    # then the other node fires it when due, not when its loop would have
    # looked again on its own (30 s)
    assert frame["data"] == {"reason": "restaurant_timeout"}


async def next_frame_once_killed(
    setting: Server, other: Server, timeout_s: float
) -> tuple[str, dict[str, Any]]:
    """Create an order on `setting`, follow it on `other`, SIGKILL `setting`.

    Returns the order's id and the next frame its follower on `other` gets
    (within `timeout_s` and a little more).
    """
    order_id = unique_id()
    with setting.client() as http:
        create_order(http, order_id)
    async with connect(other.ws_url("customer", "cu-1")) as ws:
        await subscribe(ws, order_id, since=1)
        await asyncio.to_thread(setting.kill)
        return order_id, await receive_frame(ws, timeout_s=timeout_s + WAIT_S)


async def test_commands_on_one_order_through_every_node_keep_seq_gapless(
    cluster: Cluster,
) -> None:
    # given three nodes and an accepted order
    nodes = cluster(3, ORDERCAST_RESTAURANT_TIMEOUT_S="600")
    order_id = unique_id()
    with nodes[0].client() as http:
        create_order(http, order_id)
        assert command(http, order_id, "accept").status_code == 200

    # when 90 reassignments reach the three nodes at once
    clients = [httpx.AsyncClient(base_url=n.url, timeout=30) for n in nodes]

    async def reassign(n: int) -> int:
        body = {"command": "assign_courier", "courierId": f"c-{n}"}
        path = f"/orders/{order_id}/commands"
        answer = await clients[n % 3].post(path, json=body, headers=OPS)
        return int(answer.json()["events"][0]["seq"])

    try:
        seqs = await asyncio.gather(*(reassign(n) for n in range(90)))
    finally:
        for client in clients:
            await client.aclose()

    # then each got its own seq and the log runs 1..92 without a gap
    assert sorted(seqs) == list(range(3, 93))
    with nodes[1].client() as http:
        assert [e["seq"] for e in events_of(http, order_id)] == list(range(1, 93))


async def test_a_courier_on_one_node_is_seen_by_followers_on_another(
    cluster: Cluster,
) -> None:
    # given an order with a courier, followed on the second node
    courier_node, follower_node = cluster(2, ORDERCAST_LOCATION_INTERVAL_S="0")
    order_id = unique_id()
    with courier_node.client() as http:
        create_order(http, order_id)
        command(http, order_id, "accept")
        command(http, order_id, "assign_courier", courierId="c-7")
    async with connect(follower_node.ws_url("customer", "cu-1")) as follower:
        await subscribe(follower, order_id)

        # when the courier reports a position on the first node
        async with connect(courier_node.ws_url("courier", "c-7")) as courier:
            fix = {"action": "location", "orderId": order_id, "lat": -10.9, "lng": -37}
            await courier.send(json.dumps(fix))

            # then the follower on the other node gets it
            frame = await receive_frame(follower)
    assert frame["type"] == "courier.location"
    assert (frame["lat"], frame["lng"]) == (-10.9, -37)

    # and a snapshot taken on a third connection, on the other node, has it
    async with connect(follower_node.ws_url("ops", "ops-1")) as late:
        snapshot = (await subscribe(late, order_id))["snapshot"]
    assert snapshot["courierPosition"]["lat"] == -10.9


async def test_sigterm_drains_a_node_clients_are_told_to_reconnect(
    cluster: Cluster,
) -> None:
    # given a node with a follower, and commands it has begun to receive:
    # their headers are in, the rest of each body comes after the signal
    [node] = cluster(1, ORDERCAST_RESTAURANT_TIMEOUT_S="600")
    assert node.process is not None
    order_id = unique_id()
    with node.client() as http:
        create_order(http, order_id)
        command(http, order_id, "accept")
    signalled = asyncio.Event()

    async def body_in_two_parts(courier_id: str) -> AsyncIterator[bytes]:
        yield b'{"command": "assign_courier", '
        await signalled.wait()
        await asyncio.sleep(UNIT_S)
        yield f'"courierId": "{courier_id}"}}'.encode()

    async with connect(node.ws_url("customer", "cu-1")) as ws:
        await subscribe(ws, order_id)
        headers = {**OPS, "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=node.url, timeout=30) as http:
            path = f"/orders/{order_id}/commands"
            sending = [
                asyncio.create_task(
                    http.post(
                        path, content=body_in_two_parts(f"c-{n}"), headers=headers
                    )
                )
                for n in range(5)
            ]
            await asyncio.sleep(2 * UNIT_S)

            # when the node is asked to stop
            node.process.send_signal(signal.SIGTERM)
            signalled.set()
            answers = await asyncio.gather(*sending)

        # then the follower is told the service restarts (RFC 6455 1012)
        async with asyncio.timeout(WAIT_S):
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass
    assert ws.close_code == 1012

    # and the commands in flight were finished and answered
    assert [a.status_code for a in answers] == [200] * 5

    # and then the node stopped: no new connection is taken
    # (uvicorn ends by raising the signal again once it has drained)
    assert await asyncio.to_thread(node.process.wait, WAIT_S) == -signal.SIGTERM
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{node.url}/healthz")
    # (its log is JSON, one object per line, as on every cluster node)
    lines = [json.loads(line) for line in node.log().splitlines()]
    stopped = [line for line in lines if line["logger"] == "ordercast.app"]
    assert stopped[-1]["message"] == "stopped"

    # and what it answered is recorded
    [survivor] = cluster(1, ORDERCAST_RESTAURANT_TIMEOUT_S="600")
    with survivor.client() as http:
        stored = {e["seq"] for e in events_of(http, order_id)}
    assert {a.json()["events"][0]["seq"] for a in answers} <= stored


async def test_readiness_checks_the_store_and_the_bus(cluster: Cluster) -> None:
    [node] = cluster(1)

    with node.client() as http:
        ready = http.get("/readyz")
        alive = http.get("/healthz")

    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "store": "ok", "bus": "ok"}
    assert alive.status_code == 200


def test_a_store_without_a_bus_is_refused_at_start(cluster: Cluster) -> None:
    with pytest.raises(RuntimeError, match="go together"):
        cluster(1, ORDERCAST_BUS_URL="memory://")


def test_a_database_that_is_not_there_is_one_line_at_start(cluster: Cluster) -> None:
    # given a node pointed at a database nobody created
    missing = database_url(unique_name("missing"))

    # when it starts
    with pytest.raises(RuntimeError) as failed:
        cluster(1, ORDERCAST_DATABASE_URL=missing)

    # then it says why, in a line, with no traceback
    log = str(failed.value)
    assert "error: cannot start: cannot open the PostgreSQL store: database" in log
    assert "does not exist" in log
    assert "Traceback" not in log
