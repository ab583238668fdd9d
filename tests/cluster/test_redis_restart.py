"""Redis restarts while two nodes serve: fan-out comes back by itself.

The nodes use a Redis of the test's own, so killing it disturbs no one else.
Their periodic catch-up is set far beyond the test, so whatever reaches a
follower after the restart came through the bus resuming, not through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.cluster.conftest import Cluster
from tests.services import PrivateRedis, private_redis
from tests.support import (
    UNIT_S,
    WAIT_S,
    command,
    create_order,
    events_of,
    subscribe,
    unique_id,
    wait_until,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with private_redis(tmp_path) as server:
        yield server


async def collect(ws: ClientConnection, into: list[dict[str, Any]]) -> None:
    """Every `order.event` frame until the connection closes."""
    with contextlib.suppress(ConnectionClosed):
        async for text in ws:
            frame = json.loads(text)
            if frame["type"] == "order.event":
                into.append(frame)


def ready(http: httpx.Client) -> bool:
    return http.get("/readyz").status_code == 200


async def test_after_a_redis_restart_followers_get_everything_once(
    cluster: Cluster, own_redis: PrivateRedis
) -> None:
    # given two nodes on a Redis of the test's own: commands go to the first,
    # a customer and ops follow on the second
    writer, reader = cluster(
        2,
        ORDERCAST_BUS_URL=own_redis.url,
        ORDERCAST_CATCH_UP_INTERVAL_S="600",
        ORDERCAST_RESTAURANT_TIMEOUT_S="600",
    )
    order_id = unique_id()
    http = writer.client()
    watch = reader.client()
    create_order(http, order_id)
    seen: list[dict[str, Any]] = []
    async with (
        connect(reader.ws_url("customer", "cu-1")) as customer,
        connect(reader.ws_url("ops", "ops-1")) as ops,
    ):
        await subscribe(customer, order_id, since=0)
        await subscribe(ops, "*")
        listening = asyncio.create_task(collect(customer, seen))
        assert command(http, order_id, "accept").status_code == 200
        await asyncio.to_thread(wait_until, lambda: len(seen) == 2)

        # when Redis dies while commands keep coming
        own_redis.stop()
        for n in range(3):
            answer = command(http, order_id, "assign_courier", courierId=f"c-{n}")
            assert answer.status_code == 200, answer.text
        await asyncio.to_thread(wait_until, lambda: not ready(watch))
        assert watch.get("/readyz").json()["bus"] != "ok"

        # and comes back
        own_redis.start()

        # then the reader resumes by itself and fills the gap from the store
        await asyncio.to_thread(wait_until, lambda: ready(watch))
        await asyncio.to_thread(wait_until, lambda: len(seen) == 5)

        # and live events flow again
        assert command(http, order_id, "pick_up").status_code == 200
        await asyncio.to_thread(wait_until, lambda: len(seen) == 6)

        # and ops, who follow every order and cannot resume by seq, are told
        # to reconnect (4009) instead of silently missing what was lost
        async with asyncio.timeout(WAIT_S):
            with contextlib.suppress(ConnectionClosed):
                async for _ in ops:
                    pass
        assert ops.close_code == 4009

        await asyncio.sleep(UNIT_S)  # room for a duplicate to show up
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening

    # and the customer saw every stored event once, in seq order
    stored = events_of(http, order_id)
    assert [(e["seq"], e["eventId"]) for e in seen] == [
        (e["seq"], e["eventId"]) for e in stored
    ]
    assert len(stored) == 6
    http.close()
    watch.close()
