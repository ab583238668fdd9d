from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from ordercast.bus.base import Bus
from ordercast.bus.memory import MemoryBus
from ordercast.bus.redis import RedisBus
from tests.services import REDIS_URL, redis_prefix

Nodes = Callable[[int], list[Bus]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def session_prefix() -> Iterator[str]:
    """Redis keys and channels of this test session, deleted at the end."""
    with redis_prefix("bus") as prefix:
        yield prefix


@pytest.fixture(params=["memory", "redis"])
async def buses(
    request: pytest.FixtureRequest, anyio_backend: str
) -> AsyncIterator[list[Bus]]:
    """Three started buses that are one medium, as three nodes see it.

    In-process there is only one node, so all three are the same bus; on
    Redis they are three clients under a prefix of the test's own.
    """
    if request.param == "memory":
        bus = MemoryBus()
        await bus.start()
        yield [bus, bus, bus]
        await bus.close()
        return
    prefix = f"{request.getfixturevalue('session_prefix')}{request.node.name}:"
    started: list[Bus] = []
    try:
        for _ in range(3):
            bus = RedisBus(REDIS_URL, prefix=prefix)
            await bus.start()
            started.append(bus)
        yield started
    finally:
        for bus in started:
            await bus.close()
