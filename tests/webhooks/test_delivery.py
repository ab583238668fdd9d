"""Webhook deliveries end to end: a real server process, real receivers on
real sockets that fail, stall, time out, go away; a server killed mid-run.

What each receiver should get is computed from the stored events with the
reference reading of the rules (tests/webhooks/scenario.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.support import (
    LONG_DEADLINES,
    OPS,
    SECRET,
    UNIT_S,
    WAIT_S,
    Server,
    unique_id,
)
from tests.webhooks.receiver import Receiver, Request, wait_for
from tests.webhooks.scenario import (
    CANCELLED,
    HAPPY_PATH,
    Plan,
    assert_delivered_exactly,
    assert_in_order,
    documents_of,
    drive,
    drive_all,
    expected,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

LONG_WAIT_S = 4 * WAIT_S

FAST_RETRIES = {
    **LONG_DEADLINES,
    "ORDERCAST_WEBHOOK_MAX_ATTEMPTS": "5",
    "ORDERCAST_WEBHOOK_RETRY_BASE_S": "0.05",
    "ORDERCAST_WEBHOOK_RETRY_MAX_S": "0.3",
    "ORDERCAST_WEBHOOK_LEASE_MARGIN_S": "1",
    "ORDERCAST_WEBHOOK_POLL_S": "0.2",
}


async def started(db_path: Path, **env: str) -> Server:
    server = Server(db_path, env={**FAST_RETRIES, **env})
    return await asyncio.to_thread(server.start)


@pytest.fixture
async def server(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Server]:
    running = await started(tmp_path / "ordercast.db")
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


async def add_target(
    client: httpx.AsyncClient, target_id: str, receiver: Receiver, **fields: Any
) -> str:
    """Create the target; return its secret."""
    body = {"targetId": target_id, "url": receiver.url, **fields}
    response = await client.post("/webhooks/targets", json=body, headers=OPS)
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


async def add_rule(
    client: httpx.AsyncClient, rule_id: str, pattern: dict[str, Any], *targets: str
) -> None:
    body = {"ruleId": rule_id, "pattern": pattern, "targets": list(targets)}
    response = await client.post("/webhooks/rules", json=body, headers=OPS)
    assert response.status_code == 201, response.text


async def pending(client: httpx.AsyncClient) -> dict[str, tuple[int, int]]:
    response = await client.get("/webhooks/targets", headers=OPS)
    return {
        t["targetId"]: (t["pending"], t["dead"]) for t in response.json()["targets"]
    }


# receivers that misbehave


async def flaky(request: Request) -> int:
    """500 twice for every event; the first try of each seq 2 outlasts the
    target's timeout (and is answered 200, too late); then slow but fine."""
    if request.attempt == 1 and request.document["seq"] == 2:
        await asyncio.sleep(1.0)
        return 200
    if request.attempt <= 2:
        return 500
    await asyncio.sleep(0.05)
    return 200


async def refuses_doomed_orders(request: Request) -> int:
    if "doomed" in request.document["orderId"]:
        return 500
    await asyncio.sleep(0.02)
    return 200


async def go_away_for_a_while(receiver: Receiver, away_s: float) -> None:
    await wait_for(lambda: len(receiver.requests) >= 1, LONG_WAIT_S, "first request")
    await receiver.stop()
    await asyncio.sleep(away_s)
    await receiver.start()


async def test_every_matching_event_arrives_in_order_and_signed_despite_failures(
    server: Server, client: httpx.AsyncClient
) -> None:
    # given three receivers: one fails, stalls and times out, one refuses
    # some orders for good, one goes away for a while
    flaky_one = await Receiver(flaky).start()
    doomed_one = await Receiver(refuses_doomed_orders).start()
    away_one = await Receiver().start()
    receivers = {"flaky": flaky_one, "doomed": doomed_one, "away": away_one}
    secrets = {
        "flaky": await add_target(client, "flaky", flaky_one, timeoutS=0.5),
        "doomed": await add_target(client, "doomed", doomed_one),
        "away": await add_target(client, "away", away_one, maxAttempts=40),
    }
    patterns = {
        "flaky": [
            {
                "event": [{"prefix": "order."}],
                "order": {"restaurantId": [{"anything-but": "r-quiet"}]},
            },
            {"seq": [{"numeric": [">=", 6]}]},
        ],
        "doomed": [{"status": ["DELIVERED", "CANCELLED"]}],
        "away": [
            {"data": {"courierId": [{"exists": True}]}},
            {"seq": [{"numeric": [">=", 6]}]},
        ],
    }
    await add_rule(client, "orders", patterns["flaky"][0], "flaky")
    await add_rule(client, "outcomes", patterns["doomed"][0], "doomed")
    await add_rule(client, "couriers", patterns["away"][0], "away")
    await add_rule(client, "late", patterns["flaky"][1], "flaky", "away")

    # when twelve orders go through, two of them ones the receiver refuses
    tag = unique_id("x")
    plans = [
        Plan(
            f"o-{'doomed-' if i in (3, 8) else ''}{i}-{tag}",
            "r-quiet" if i % 4 == 0 else "r-1",
            CANCELLED if i % 5 == 4 else HAPPY_PATH,
        )
        for i in range(12)
    ]
    outage = asyncio.create_task(go_away_for_a_while(away_one, 1.5))
    await drive_all(client, plans)
    await outage

    # then each receiver gets what its rules match, and the refused ones give up
    documents = [d for p in plans for d in await documents_of(client, p.order_id)]
    wanted = {name: expected(documents, patterns[name]) for name in receivers}
    doomed = {e for e, d in wanted["doomed"].items() if "doomed" in d["orderId"]}
    assert len(doomed) == 2

    def all_done() -> bool:
        return (
            flaky_one.delivered_ids() >= set(wanted["flaky"])
            and away_one.delivered_ids() >= set(wanted["away"])
            and doomed_one.delivered_ids() >= set(wanted["doomed"]) - doomed
        )

    await wait_for(all_done, LONG_WAIT_S, "deliveries")
    await asyncio.sleep(UNIT_S * 5)  # time for anything unwanted to show up
    assert await pending(client) == {"flaky": (0, 0), "doomed": (0, 2), "away": (0, 0)}
    for name, receiver in receivers.items():
        gave_up = doomed if name == "doomed" else set()
        assert_delivered_exactly(receiver, wanted[name], secrets[name], gave_up)
        assert_in_order(receiver, wanted[name])

    # and the dead-letter list holds exactly what gave up, each tried 5 times
    response = await client.get("/webhooks/dead-letters", headers=OPS)
    dead = response.json()["deadLetters"]
    assert {(d["targetId"], d["eventId"]) for d in dead} == {
        ("doomed", e) for e in doomed
    }
    assert {d["attempts"] for d in dead} == {5}
    assert {d["lastError"] for d in dead} == {"answered 500"}
    for event_id in doomed:
        assert sum(r.event_id == event_id for r in doomed_one.requests) == 5

    # and the flaky target's log shows the refusals and the time-outs
    response = await client.get(
        "/webhooks/targets/flaky/attempts?limit=1000", headers=OPS
    )
    log = response.json()["attempts"]
    assert {a["outcome"] for a in log} == {"retrying", "delivered"}
    assert any(a["error"] == "no answer within 0.5 s" for a in log)
    assert any(a["statusCode"] == 500 for a in log)
    response = await client.get(
        "/webhooks/targets/away/attempts?limit=1000", headers=OPS
    )
    assert any(
        "cannot connect" in (a["error"] or "") for a in response.json()["attempts"]
    )
    for receiver in receivers.values():
        await receiver.stop()


async def test_nothing_matching_is_missing_after_the_server_is_killed_mid_run(
    tmp_path: Path, anyio_backend: str
) -> None:
    # given a slow receiver and a rule for every event but pickups
    async def slow(request: Request) -> int:
        await asyncio.sleep(0.15)
        return 200

    receiver = await Receiver(slow).start()
    pattern = {"event": [{"anything-but": "order.picked_up"}]}
    server = await started(tmp_path / "ordercast.db")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        secret = await add_target(client, "partner", receiver, timeoutS=1)
        await add_rule(client, "not-pickups", pattern, "partner")

        # when the server is killed while orders flow and deliveries are out
        tag = unique_id("k")
        plans = [Plan(f"o-{i}-{tag}", "r-1", HAPPY_PATH) for i in range(16)]
        flow = asyncio.gather(
            *(drive(client, p) for p in plans), return_exceptions=True
        )
        await wait_for(lambda: len(receiver.requests) >= 12, LONG_WAIT_S, "deliveries")
        server.kill()
        await flow
    before_restart = receiver.delivered_ids()

    # and started again on the same database, with more orders after
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            more = [Plan(f"o-after-{i}-{tag}", "r-1", HAPPY_PATH) for i in range(3)]
            await drive_all(client, more)

            # then every stored event that matches arrives, signed and in order
            documents = []
            for plan in [*plans, *more]:
                if (
                    await client.get(f"/orders/{plan.order_id}", headers=OPS)
                ).status_code == 200:
                    documents += await documents_of(client, plan.order_id)
            wanted = expected(documents, [pattern])
            await wait_for(
                lambda: receiver.delivered_ids() >= set(wanted), LONG_WAIT_S, "all"
            )
            await asyncio.sleep(UNIT_S * 5)
            assert_delivered_exactly(receiver, wanted, secret)
            assert_in_order(receiver, wanted)
            stored_before = {
                d["eventId"] for d in documents if "after" not in d["orderId"]
            }
            assert set(wanted) & stored_before - before_restart, (
                "all out before the kill"
            )
            assert await pending(client) == {"partner": (0, 0)}
    finally:
        await asyncio.to_thread(server.stop)
        await receiver.stop()


async def test_a_slow_target_delays_neither_the_others_nor_the_websocket_push(
    server: Server, client: httpx.AsyncClient
) -> None:
    # given a target that takes 20 units to answer anything, and a fast one
    async def stalls(request: Request) -> int:
        await asyncio.sleep(20 * UNIT_S)
        return 200

    slow, fast = await Receiver(stalls).start(), await Receiver().start()
    await add_target(client, "slow", slow, timeoutS=60)
    await add_target(client, "fast", fast)
    await add_rule(client, "orders", {"event": [{"prefix": "order."}]}, "slow", "fast")

    async with websockets.connect(server.ws_url()) as ws:
        await ws.send(json.dumps({"action": "subscribe", "orderId": "*"}))
        assert json.loads(await ws.recv())["type"] == "subscribed"

        # when ten orders are created and accepted
        tag = unique_id("s")
        plans = [Plan(f"o-{i}-{tag}", "r-1", ["accept"]) for i in range(10)]
        await drive_all(client, plans)

        # then followers and the fast target have every event before the
        # slow target has answered anything
        frames = []
        while len(frames) < 20:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT_S)))
        await wait_for(lambda: len(fast.delivered_ids()) == 20, WAIT_S, "fast target")
    assert {f["type"] for f in frames} == {"order.event"}
    assert all(r.answered_at is None for r in slow.requests)
    assert 1 <= len(slow.requests) <= 8  # its worker's slots, no more
    await slow.stop()
    await fast.stop()


async def test_a_server_can_leave_sending_to_processes_of_their_own(
    tmp_path: Path, anyio_backend: str
) -> None:
    # given a server that only records deliveries, and a receiver
    receiver = await Receiver().start()
    db_path = tmp_path / "ordercast.db"
    server = await started(db_path, ORDERCAST_WEBHOOK_DELIVERY="external")
    deliverer = None
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            secret = await add_target(client, "partner", receiver)
            await add_rule(client, "all", {}, "partner")
            tag = unique_id("e")
            await drive(client, Plan(f"o-1-{tag}", "r-1", ["accept"]))

            # then nothing is sent while no process delivers
            await asyncio.sleep(5 * UNIT_S)
            assert receiver.requests == []
            assert await pending(client) == {"partner": (2, 0)}

            # when `ordercast webhooks deliver` runs on the same database
            env = {
                **os.environ,
                "ORDERCAST_DATABASE_URL": f"sqlite:///{db_path}",
                "ORDERCAST_TOKEN_SECRET": SECRET,
            }
            command = [sys.executable, "-m", "ordercast", "webhooks", "deliver"]
            deliverer = subprocess.Popen([*command, "--poll", "0.05"], env=env)
            await drive(client, Plan(f"o-2-{tag}", "r-1", ["accept"]))

            # then it sends what was recorded before and after, in order, signed
            documents = [
                d
                for order_id in (f"o-1-{tag}", f"o-2-{tag}")
                for d in await documents_of(client, order_id)
            ]
            wanted = expected(documents, [{}])
            await wait_for(
                lambda: receiver.delivered_ids() == set(wanted), WAIT_S, "delivered"
            )
            assert_delivered_exactly(receiver, wanted, secret)
            assert_in_order(receiver, wanted)
    finally:
        if deliverer is not None:
            deliverer.send_signal(signal.SIGTERM)
            deliverer.wait(15)
        await asyncio.to_thread(server.stop)
        await receiver.stop()
    assert deliverer.returncode == 0
