"""What only a bus between processes has to survive: losing its connection.

The listener must come back by itself and say so (the resume handlers), and
publishing must fail fast, not hang, while Redis is away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from ordercast.bus.redis import RedisBus
from ordercast.errors import BusError
from tests.bus.test_contract import PATIENCE_S, Heard, event
from tests.services import REDIS_URL, PrivateRedis, private_redis
from tests.support import UNIT_S, free_port

pytestmark = pytest.mark.anyio


class Resumes:
    """A resume handler that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1

    async def until(self, count: int) -> None:
        async with asyncio.timeout(PATIENCE_S):
            while self.count < count:
                await asyncio.sleep(UNIT_S / 20)


@pytest.fixture
async def own_redis(tmp_path: Path, anyio_backend: str) -> AsyncIterator[PrivateRedis]:
    with private_redis(tmp_path) as server:
        yield server


def cut_connection(name: str) -> None:
    """Have Redis close the one connection with this client name."""
    admin = redis.Redis.from_url(REDIS_URL)
    try:
        [found] = [c for c in admin.client_list() if c["name"] == name]
        assert admin.client_kill_filter(_id=found["id"]) == 1
    finally:
        admin.close()


async def started(url: str, prefix: str = "t:") -> RedisBus:
    bus = RedisBus(url, prefix=prefix)
    await bus.start()
    return bus


async def test_a_listener_whose_connection_is_cut_resumes_and_hears_again(
    session_prefix: str,
) -> None:
    # given two nodes, the second listening with a resume handler
    prefix = f"{session_prefix}cut:"
    publisher, listener = (
        await started(REDIS_URL, prefix),
        await started(REDIS_URL, prefix),
    )
    heard, resumes = Heard(), Resumes()
    listener.subscribe(heard)
    listener.on_resume(resumes)
    try:
        # when Redis drops the listener's connection (and only that one)
        cut_connection(f"ordercast-{listener.node_id}-listen")

        # then it resumes by itself, once, and hears live events again
        await resumes.until(1)
        await publisher.publish([event("o-1", 1)])
        assert await heard.until(1) == [event("o-1", 1)]
        assert resumes.count == 1
    finally:
        await publisher.close()
        await listener.close()


async def test_after_a_redis_restart_fan_out_resumes_by_itself(
    own_redis: PrivateRedis,
) -> None:
    # given two nodes on a Redis of the test's own
    publisher, listener = await started(own_redis.url), await started(own_redis.url)
    heard, resumes = Heard(), Resumes()
    listener.subscribe(heard)
    listener.on_resume(resumes)
    try:
        # when Redis dies, publishing fails fast and the bus is not ready
        own_redis.stop()
        with pytest.raises(BusError):
            await publisher.publish([event("o-1", 1)])
        started_at = time.monotonic()
        with pytest.raises(BusError):
            await publisher.publish([event("o-1", 2)])
        assert time.monotonic() - started_at < 0.1
        with pytest.raises(BusError):
            await listener.ping()

        # and comes back on the same port
        own_redis.start()

        # then the listener resumes (so its node catches up from the store)
        # and events flow again without any restart of the nodes
        await resumes.until(1)
        async with asyncio.timeout(PATIENCE_S):
            while True:
                try:
                    await publisher.publish([event("o-1", 3)])
                    break
                except BusError:
                    await asyncio.sleep(UNIT_S / 4)
        assert await heard.until(1) == [event("o-1", 3)]
        await listener.ping()
    finally:
        await publisher.close()
        await listener.close()


async def test_a_node_that_publishes_hears_its_own_events_even_without_redis(
    own_redis: PrivateRedis,
) -> None:
    bus = await started(own_redis.url)
    heard = Heard()
    bus.subscribe(heard)
    try:
        own_redis.stop()

        with pytest.raises(BusError):
            await bus.publish([event("o-1", 1)])

        assert heard.events == [event("o-1", 1)]
    finally:
        await bus.close()


async def test_start_fails_clearly_when_redis_is_not_there(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ordercast.bus.redis.START_TIMEOUT_S", 4 * UNIT_S)
    bus = RedisBus(f"redis://127.0.0.1:{free_port()}/0")

    with pytest.raises(BusError, match="cannot reach Redis"):
        await bus.start()


async def test_a_message_it_cannot_read_is_skipped_and_listening_goes_on(
    session_prefix: str,
) -> None:
    # given a node listening under a prefix
    prefix = f"{session_prefix}garbage:"
    publisher, listener = (
        await started(REDIS_URL, prefix),
        await started(REDIS_URL, prefix),
    )
    heard = Heard()
    listener.subscribe(heard)
    try:
        # when something else publishes what is not an event on its channel
        admin = redis.Redis.from_url(REDIS_URL)
        for junk in (b"not json", b'{"events": [{"seq": 1}]}', b"[1, 2]"):
            admin.publish(f"{prefix}events", junk)
        admin.close()

        # then it skips those and still hears the next event
        await publisher.publish([event("o-1", 1)])
        assert await heard.until(1) == [event("o-1", 1)]
    finally:
        await publisher.close()
        await listener.close()
