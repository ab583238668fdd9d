"""The `Bus` contract, run against every implementation in `conftest.buses`.

`buses` are three nodes on one medium (in-process: one node, three times).
Only the `Bus` protocol is used here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from ordercast.bus.base import Bus, CourierPosition
from ordercast.lifecycle import Event, Status
from tests.support import UNIT_S

pytestmark = pytest.mark.anyio

AT = datetime(2026, 12, 3, 12, 0, 5, 120_000, tzinfo=UTC)
PATIENCE_S = 25 * UNIT_S


def event(order_id: str, seq: int) -> Event:
    return Event(
        order_id,
        seq,
        f"e-{order_id}-{seq}",
        "courier.assigned",
        Status.COURIER_ASSIGNED,
        AT + timedelta(milliseconds=seq),
        {"courierId": f"c-{seq}", "nested": {"list": [1, 2.5, None]}},
    )


@dataclass
class Heard:
    """A handler that records every batch of events it hears."""

    batches: list[list[Event]] = field(default_factory=list)

    async def __call__(self, events: Sequence[Event]) -> None:
        self.batches.append(list(events))

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]

    async def until(self, count: int) -> list[Event]:
        async with asyncio.timeout(PATIENCE_S):
            while len(self.events) < count:
                await asyncio.sleep(UNIT_S / 20)
        return self.events


async def settle() -> None:
    """Room for a duplicate or a stray message to show up."""
    await asyncio.sleep(UNIT_S)


async def test_every_node_hears_every_event_once_in_publish_order(
    buses: list[Bus],
) -> None:
    # given a handler on each node
    heard = [Heard() for _ in buses]
    for bus, handler in zip(buses, heard, strict=True):
        bus.subscribe(handler)

    # when one node publishes batches of events of two orders
    published = [event("o-1", 1), event("o-2", 1), event("o-1", 2)]
    await buses[0].publish(published[:2])
    await buses[0].publish(published[2:])

    # then each handler hears them once, in the order published, intact
    for handler in heard:
        assert await handler.until(3) == published
    await settle()
    assert [h.events for h in heard] == [published] * 3


async def test_a_batch_arrives_as_one_batch(buses: list[Bus]) -> None:
    heard = Heard()
    buses[1].subscribe(heard)

    await buses[0].publish([event("o-1", seq) for seq in range(1, 6)])

    await heard.until(5)
    assert [len(batch) for batch in heard.batches] == [5]


async def test_events_of_one_publisher_keep_their_order_under_load(
    buses: list[Bus],
) -> None:
    heard = Heard()
    buses[2].subscribe(heard)
    published = [event(f"o-{n % 7}", n) for n in range(1, 301)]

    for start in range(0, 300, 3):
        await buses[0].publish(published[start : start + 3])

    assert await heard.until(300) == published


async def test_every_node_hears_every_node(buses: list[Bus]) -> None:
    heard = Heard()
    buses[0].subscribe(heard)

    for number, bus in enumerate(buses, start=1):
        await bus.publish([event(f"o-{number}", 1)])

    found = await heard.until(3)
    assert sorted(e.order_id for e in found) == ["o-1", "o-2", "o-3"]


async def test_a_failing_handler_does_not_stop_the_others(buses: list[Bus]) -> None:
    async def broken(events: Sequence[Event]) -> None:
        raise RuntimeError("a handler with a bug")

    heard = Heard()
    buses[1].subscribe(broken)
    buses[1].subscribe(heard)

    await buses[0].publish([event("o-1", 1)])

    assert await heard.until(1) == [event("o-1", 1)]


async def test_courier_positions_reach_every_node_and_the_latest_is_kept(
    buses: list[Bus],
) -> None:
    # given a position handler on another node
    heard: list[CourierPosition] = []

    async def hear(position: CourierPosition) -> None:
        heard.append(position)

    buses[1].subscribe_positions(hear)
    fixes = [
        CourierPosition("o-1", -10.9 - i / 1000, -37.05, f"2026-12-03T12:00:0{i}.000Z")
        for i in range(3)
    ]

    # when a courier reports three positions
    for fix in fixes:
        await buses[0].publish_position(fix)

    # then all three are heard, and any node has the latest for a snapshot
    async with asyncio.timeout(PATIENCE_S):
        while len(heard) < 3:
            await asyncio.sleep(UNIT_S / 20)
    assert heard == fixes
    for bus in buses:
        assert await bus.latest_position("o-1") == fixes[-1]
    assert await buses[2].latest_position("o-unknown") is None


async def test_a_started_bus_answers_a_ping(buses: list[Bus]) -> None:
    for bus in buses:
        await bus.ping()
