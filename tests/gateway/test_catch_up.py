"""Subscriptions that fell behind the store without noticing, and how they catch up.

A hub on a real SQLite store; the connections are the gateway's own
`Connection`, with a socket that keeps what it is sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ordercast.gateway.connections import CLOSE_RESUME, Connection
from ordercast.gateway.hub import Hub
from ordercast.lifecycle import Actor, Command, Request, Role, Timeouts
from ordercast.notifier import Notifier
from ordercast.store.base import Store, Submission
from ordercast.store.sqlite import SqliteStore
from tests.support import UNIT_S

pytestmark = pytest.mark.anyio

OPS = Actor(Role.OPS, "ops-1")
TIMEOUTS = Timeouts(300.0, 600.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Store]:
    opened = SqliteStore(tmp_path / "ordercast.db")
    await opened.open()
    yield opened
    await opened.close()


class Socket:
    """What a connection sent, and how it was closed."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed_with: int | None = None

    async def send_text(self, text: str) -> None:
        self.frames.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = code

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if f["type"] == "order.event"]


def connection_on(socket: Socket) -> Connection:
    return Connection(
        actor=OPS,
        lang="en",
        send_text=socket.send_text,
        close_socket=socket.close,
        connected_at=datetime.now(UTC),
    )


async def record(store: Store, order_id: str, *names: Command) -> None:
    """Apply commands straight to the store: recorded, never announced."""
    for name in names:
        fields: dict[str, Any] = {}
        if name is Command.CREATE:
            fields = {"customer_id": "cu-1", "restaurant_id": "r-1"}
        elif name is Command.ASSIGN_COURIER:
            fields = {"courier_id": "c-1"}
        request = Request(name, order_id, OPS, **fields)
        await store.apply([Submission(order_id, request)], datetime.now(UTC), TIMEOUTS)


async def settle() -> None:
    await asyncio.sleep(UNIT_S / 2)


async def test_a_subscription_behind_twice_in_a_row_is_filled_from_the_store(
    store: Store,
) -> None:
    # given a follower of an order at seq 1
    hub, socket = Hub(store), Socket()
    connection = connection_on(socket)
    hub.add(connection)
    await record(store, "o-1", Command.CREATE)
    await hub.subscribe(connection, "o-1", since_seq=0)
    await settle()
    assert socket.seqs() == [1]

    # when two events are recorded that the bus never announces
    await record(store, "o-1", Command.ACCEPT, Command.ASSIGN_COURIER)

    # then a first look only notes it (they may still be on their way),
    # and a second one fills the gap, once
    assert await hub.catch_up(patient=True) == 0
    assert await hub.catch_up(patient=True) == 1
    await settle()
    assert await hub.catch_up(patient=True) == 0
    await settle()
    assert socket.seqs() == [1, 2, 3]


async def test_after_a_bus_interruption_every_subscription_is_filled_at_once(
    store: Store,
) -> None:
    hub, socket = Hub(store), Socket()
    connection = connection_on(socket)
    hub.add(connection)
    for order_id in ("o-1", "o-2"):
        await record(store, order_id, Command.CREATE)
        await hub.subscribe(connection, order_id, since_seq=1)
    await record(store, "o-2", Command.ACCEPT)

    assert await hub.catch_up(patient=False) == 1
    await settle()

    assert socket.seqs() == [2]
    assert socket.frames[-1]["orderId"] == "o-2"


async def test_followers_of_every_order_are_told_to_resume(store: Store) -> None:
    # given ops following every order, and a follower of one order
    hub, everything, one = Hub(store), Socket(), Socket()
    await record(store, "o-1", Command.CREATE)
    for socket, order_id in ((everything, "*"), (one, "o-1")):
        connection = connection_on(socket)
        hub.add(connection)
        await hub.subscribe(connection, order_id, since_seq=None)

    # when the bus comes back after an interruption

    await hub.resume_everything()

    # then only ops are closed (4009); the other is caught up by seq
    assert everything.closed_with == CLOSE_RESUME
    assert one.closed_with is None


# following every order


async def read(store: Store, order_id: str, since: int = 0) -> list[Any]:
    return await store.read_events(order_id, since)


async def test_every_order_fills_a_gap_its_next_event_reveals(store: Store) -> None:
    # given ops following every order, which saw seq 1 of an order
    hub, socket = Hub(store), Socket()
    connection = connection_on(socket)
    hub.add(connection)
    await hub.subscribe(connection, "*", since_seq=None)
    await record(store, "o-1", Command.CREATE)
    [created] = await read(store, "o-1")
    await hub.every_order.offer(created)

    # when seq 2 is recorded and never announced, then seq 3 is announced
    await record(store, "o-1", Command.ACCEPT, Command.ASSIGN_COURIER)
    accepted, assigned = await read(store, "o-1", 1)
    await hub.every_order.offer(assigned)
    await settle()
    # a late copy of one already sent changes nothing
    await hub.every_order.offer(accepted)
    await settle()

    # then ops got 1, 2, 3 once each, in order
    assert socket.seqs() == [1, 2, 3]


async def test_every_order_catches_up_an_order_whose_last_event_was_lost(
    store: Store,
) -> None:
    hub, socket = Hub(store), Socket()
    connection = connection_on(socket)
    hub.add(connection)
    await hub.subscribe(connection, "*", since_seq=None)
    await record(store, "o-1", Command.CREATE)
    [created] = await read(store, "o-1")
    await hub.every_order.offer(created)

    # when the order's last event is recorded and never announced
    await record(store, "o-1", Command.ACCEPT)

    # then the catch-up notes it once, and fills it at the next look
    assert await hub.catch_up(patient=True) == 0
    assert await hub.catch_up(patient=True) == 1
    await settle()
    assert socket.seqs() == [1, 2]


async def test_a_node_forgets_the_courier_of_an_order_that_ended(store: Store) -> None:
    # given a delivered order whose courier reported a position on the way
    hub = Hub(store)
    notifier = Notifier(hub)
    steps = (Command.ACCEPT, Command.ASSIGN_COURIER, Command.PICK_UP)
    await record(store, "o-1", Command.CREATE, *steps, Command.START_DELIVERY)
    hub.update_location("o-1", {"lat": -10.9, "lng": -37.0, "at": "now"})
    assert hub.position("o-1") is not None
    await record(store, "o-1", Command.DELIVER)
    *_, delivered = await store.read_events("o-1")

    # when the node hears the last event
    await notifier.handle([delivered])

    # then it keeps nothing of that courier (a node lives through many orders)
    assert hub.position("o-1") is None
