"""The tracker on a real SQLite store: ETAs computed once per event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ordercast.eta.tracker import EtaTracker
from ordercast.eta.trips import fold
from ordercast.lifecycle import Actor, Command, Event, Request, Role, Timeouts
from ordercast.store.base import Applied, Submission
from ordercast.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

OPS = Actor(Role.OPS, "ops-1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingStore(SqliteStore):
    """The SQLite store, counting the logs it is asked for."""

    reads = 0

    async def read_events(self, *args: Any, **kwargs: Any) -> list[Event]:
        self.reads += 1
        return await super().read_events(*args, **kwargs)


@pytest.fixture
async def store(tmp_path: Path, anyio_backend: str) -> AsyncIterator[CountingStore]:
    opened = CountingStore(tmp_path / "ordercast.db")
    await opened.open()
    yield opened
    await opened.close()


async def record(store: SqliteStore, command: Command, **fields: Any) -> Event:
    request = Request(command, "o-1", OPS, **fields)
    [outcome] = await store.apply(
        [Submission("o-1", request)], datetime.now(UTC), Timeouts()
    )
    assert isinstance(outcome, Applied)
    return outcome.events[0]


async def test_an_event_seen_once_gives_its_eta_again_without_reading(
    store: CountingStore,
) -> None:
    tracker = EtaTracker(store)
    created = await record(store, Command.CREATE, customer_id="c", restaurant_id="r")
    accepted = await record(store, Command.ACCEPT)

    # the notifier notes each event, then the command's answer asks again
    tracker.observe(created)
    tracker.observe(accepted)
    again = await tracker.etas("o-1", [accepted])

    assert store.reads == 0
    assert again == fold(None, [created, accepted])[1][1:]


async def test_a_tracker_that_missed_events_reads_the_log_once(
    store: CountingStore,
) -> None:
    tracker = EtaTracker(store)
    created = await record(store, Command.CREATE, customer_id="c", restaurant_id="r")
    accepted = await record(store, Command.ACCEPT)
    assigned = await record(store, Command.ASSIGN_COURIER, courier_id="c-1")

    first = await tracker.etas("o-1", [assigned])
    second = await tracker.etas("o-1", [assigned])

    assert store.reads == 1
    assert first == second == fold(None, [created, accepted, assigned])[1][2:]
