"""The engine on a real SQLite store and the in-process bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ordercast.bus.memory import MemoryBus
from ordercast.engine import Engine
from ordercast.errors import OrderNotFound, StoreError
from ordercast.lifecycle import Actor, Command, Event, Request, Role, Status, Timeouts
from ordercast.store.base import Applied, Outcome, Refused, Store, Submission
from ordercast.store.sqlite import SqliteStore
from tests.support import UNIT_S

pytestmark = pytest.mark.anyio

OPS = Actor(Role.OPS, "ops-1")
LONG = 600.0
"""A deadline that never comes due during a test."""
PATIENCE_S = 25 * UNIT_S
"""How long a test waits for something that should happen at once."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ordercast.db"


# helpers


def create(order_id: str) -> Submission:
    request = Request(
        Command.CREATE, order_id, OPS, customer_id="cu-1", restaurant_id="r-1"
    )
    return Submission(order_id, request)


def command(order_id: str, name: Command, **fields: Any) -> Submission:
    return Submission(order_id, Request(name, order_id, OPS, **fields))


@dataclass
class Heard:
    """A bus handler that records every event it hears, in order."""

    events: list[Event] = field(default_factory=list)
    delay_s: float = 0.0
    """How long each delivery takes, as a slow follower would."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, events: Sequence[Event]) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.events.extend(events)
        self.changed.set()

    def names(self, order_id: str) -> list[str]:
        return [e.name for e in self.events if e.order_id == order_id]

    async def wait_for(self, order_id: str, name: str) -> Event:
        """The first event `name` of the order, once the bus has heard it."""
        async with asyncio.timeout(PATIENCE_S):
            while True:
                for event in self.events:
                    if (event.order_id, event.name) == (order_id, name):
                        return event
                self.changed.clear()
                await self.changed.wait()


@dataclass
class Running:
    engine: Engine
    store: Store
    heard: Heard


@asynccontextmanager
async def running(
    db_path: Path,
    timeouts: Timeouts,
    wrap: Callable[[Store], Store] = lambda store: store,
    **engine_options: Any,
) -> AsyncIterator[Running]:
    """An engine on the file at `db_path`, stopped and closed on exit."""
    store = SqliteStore(db_path)
    await store.open()
    bus = MemoryBus()
    await bus.start()
    heard = Heard()
    bus.subscribe(heard)
    engine = Engine(wrap(store), bus, timeouts, **engine_options)
    await engine.start()
    try:
        yield Running(engine, store, heard)
    finally:
        await engine.stop()
        await bus.close()
        await store.close()


async def applied(engine: Engine, submission: Submission) -> Applied:
    outcome = await engine.submit(submission)
    assert isinstance(outcome, Applied), outcome
    return outcome


class SpyStore:
    """A store that passes everything on and remembers each batch's size."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.batch_sizes: list[int] = []

    async def apply(self, submissions: Sequence[Submission], *args: Any) -> Any:
        self.batch_sizes.append(len(submissions))
        return await self.store.apply(submissions, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class FlakyStore(SpyStore):
    """A store whose deadline queries fail a few times, as a locked disk would."""

    def __init__(self, store: Store, failures: int) -> None:
        super().__init__(store)
        self.failures = failures

    def _maybe_fail(self) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("disk I/O error")

    async def due_deadlines(self, now: datetime, limit: int) -> Any:
        self._maybe_fail()
        return await self.store.due_deadlines(now, limit)

    async def next_due_at(self) -> Any:
        self._maybe_fail()
        return await self.store.next_due_at()


# commands


async def test_command_is_answered_after_the_bus_heard_its_events(
    db_path: Path,
) -> None:
    async with running(db_path, Timeouts(LONG, LONG)) as run:
        # given a follower that takes a while to hear each event
        run.heard.delay_s = UNIT_S / 4

        # when commands are answered
        for submission in [create("o-1"), command("o-1", Command.ACCEPT)]:
            outcome = await applied(run.engine, submission)

            # then the follower had heard their events already
            heard_ids = {e.event_id for e in run.heard.events}
            assert {e.event_id for e in outcome.events} <= heard_ids
        assert run.heard.names("o-1") == ["order.received", "order.accepted"]


async def test_events_reach_the_bus_in_seq_order_per_order(db_path: Path) -> None:
    async with running(db_path, Timeouts(LONG, LONG)) as run:
        # given three orders, then many commands on each, all at once
        orders = ["o-0", "o-1", "o-2"]
        await asyncio.gather(*(applied(run.engine, create(o)) for o in orders))
        await asyncio.gather(
            *(applied(run.engine, command(o, Command.ACCEPT)) for o in orders)
        )
        assigns = [
            command(o, Command.ASSIGN_COURIER, courier_id=f"c-{i}")
            for i in range(30)
            for o in orders
        ]

        # when they are applied concurrently
        outcomes = await asyncio.gather(*(run.engine.submit(s) for s in assigns))

        # then each order's events were heard once each, in seq order
        assert all(isinstance(o, Applied) for o in outcomes)
        for order_id in orders:
            seqs = [e.seq for e in run.heard.events if e.order_id == order_id]
            assert seqs == list(range(1, 2 + 30 + 1))


async def test_group_commit_answers_each_submitter_with_its_own_outcome(
    db_path: Path,
) -> None:
    spy: SpyStore | None = None

    def wrap(store: Store) -> Store:
        nonlocal spy
        spy = SpyStore(store)
        return spy  # type: ignore[return-value]  # a Store by duck typing

    async with running(db_path, Timeouts(LONG, LONG), wrap) as run:
        # given creates of real orders mixed with commands on unknown orders
        submissions = [
            create(f"o-{i}") if i % 3 else command(f"x-{i}", Command.ACCEPT)
            for i in range(60)
        ]

        # when they are all submitted at once
        outcomes = await asyncio.gather(*(run.engine.submit(s) for s in submissions))

    # then they were written together, and each got the answer to its own
    assert spy is not None
    assert max(spy.batch_sizes) > 1
    for submission, outcome in zip(submissions, outcomes, strict=True):
        assert_answers(submission, outcome)


def assert_answers(submission: Submission, outcome: Outcome) -> None:
    if submission.order_id.startswith("x-"):
        assert isinstance(outcome, Refused)
        assert isinstance(outcome.error, OrderNotFound)
        assert outcome.error.fields["orderId"] == submission.order_id
        return
    assert isinstance(outcome, Applied)
    assert outcome.order.state.order_id == submission.order_id
    assert [(e.order_id, e.seq) for e in outcome.events] == [(submission.order_id, 1)]


# deadlines


async def test_restaurant_deadline_rejects_the_order_in_time(db_path: Path) -> None:
    timeouts = Timeouts(restaurant_timeout_s=UNIT_S, dispatch_timeout_s=LONG)
    async with running(db_path, timeouts) as run:
        # given an order the restaurant never answers
        created = await applied(run.engine, create("o-1"))

        # when its deadline comes due
        rejected = await run.heard.wait_for("o-1", "order.rejected")

        # then the deadline loop rejected it, by timeout, not before it was due
        assert rejected.data == {"reason": "restaurant_timeout"}
        assert (rejected.seq, rejected.status) == (2, Status.REJECTED)
        assert rejected.at >= created.events[0].at + timedelta(seconds=UNIT_S)
        record = await run.store.get_order("o-1")
        assert record is not None
        assert record.state.status is Status.REJECTED
        assert await run.store.next_due_at() is None


async def test_dispatch_deadline_raises_overdue_once_and_keeps_the_order(
    db_path: Path,
) -> None:
    timeouts = Timeouts(restaurant_timeout_s=LONG, dispatch_timeout_s=UNIT_S)
    async with running(db_path, timeouts) as run:
        # given an accepted order that no courier takes
        await applied(run.engine, create("o-1"))
        await applied(run.engine, command("o-1", Command.ACCEPT))

        # when its courier deadline comes due, and some more time passes
        overdue = await run.heard.wait_for("o-1", "dispatch.overdue")
        await asyncio.sleep(2 * UNIT_S)

        # then it was raised once, and the order is still waiting for a courier
        assert overdue.status is Status.ACCEPTED
        assert run.heard.names("o-1").count("dispatch.overdue") == 1
        record = await run.store.get_order("o-1")
        assert record is not None
        assert record.state.status is Status.ACCEPTED


@pytest.mark.parametrize("down_units", [0, 3])
async def test_deadline_stored_before_stop_fires_after_restart(
    db_path: Path, down_units: int
) -> None:
    # given an order created by an engine that stops before its deadline
    timeouts = Timeouts(restaurant_timeout_s=2 * UNIT_S, dispatch_timeout_s=LONG)
    async with running(db_path, timeouts) as first:
        await applied(first.engine, create("o-1"))
    assert first.heard.names("o-1") == ["order.received"]

    # when a new engine starts on the same file (after the deadline, or before)
    await asyncio.sleep(down_units * UNIT_S)
    async with running(db_path, Timeouts(LONG, LONG)) as second:
        # then the new engine fires it
        rejected = await second.heard.wait_for("o-1", "order.rejected")

    assert rejected.seq == 2
    assert rejected.data == {"reason": "restaurant_timeout"}


async def test_stale_deadline_does_nothing(db_path: Path) -> None:
    timeouts = Timeouts(restaurant_timeout_s=UNIT_S, dispatch_timeout_s=LONG)
    async with running(db_path, timeouts) as run:
        # given an order accepted before its restaurant deadline
        await applied(run.engine, create("o-1"))
        await applied(run.engine, command("o-1", Command.ACCEPT))

        # when that deadline's time passes, and it is even fired by hand
        await asyncio.sleep(3 * UNIT_S)
        stale = Submission("o-1", deadline_kind="restaurant_answer")
        outcome = await applied(run.engine, stale)

        # then nothing was recorded or announced
        assert outcome.events == ()
        assert run.heard.names("o-1") == ["order.received", "order.accepted"]
        assert [e.seq for e in await run.store.read_events("o-1")] == [1, 2]


async def test_deadline_loop_survives_a_store_failure(db_path: Path) -> None:
    # given a store whose deadline queries fail a few times
    timeouts = Timeouts(restaurant_timeout_s=UNIT_S, dispatch_timeout_s=LONG)

    def wrap(store: Store) -> Store:
        return FlakyStore(store, failures=3)  # type: ignore[return-value]

    async with running(db_path, timeouts, wrap) as run:
        # when an order's deadline comes due
        await applied(run.engine, create("o-1"))

        # then the deadline still fires once the store answers again
        rejected = await run.heard.wait_for("o-1", "order.rejected")

    assert rejected.data == {"reason": "restaurant_timeout"}


async def test_deadline_fires_on_time_after_a_slow_announcement(
    db_path: Path,
) -> None:
    # given a clock that a slow follower moves on while it hears the create
    start = datetime.now(UTC)
    clock_offset = timedelta()

    def clock() -> datetime:
        return start + clock_offset + (datetime.now(UTC) - start)

    async def slow_follower(events: Sequence[Event]) -> None:
        nonlocal clock_offset
        clock_offset += timedelta(seconds=3 * UNIT_S)

    timeouts = Timeouts(restaurant_timeout_s=UNIT_S, dispatch_timeout_s=LONG)
    options = {"clock": clock, "max_deadline_sleep_s": 4 * PATIENCE_S}
    async with running(db_path, timeouts, **options) as run:
        run.engine.bus.subscribe(slow_follower)
        await asyncio.sleep(UNIT_S)  # the deadline loop is asleep, nothing due

        # when an order is created, whose deadline is due before the loop wakes
        await applied(run.engine, create("o-1"))

        # then the deadline loop wakes for it rather than sleeping on
        rejected = await run.heard.wait_for("o-1", "order.rejected")

    assert rejected.data == {"reason": "restaurant_timeout"}
