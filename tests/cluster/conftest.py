from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from ordercast.replay.grubhub import Instance, load_instance
from tests.replay.data import instance_dir
from tests.services import REDIS_URL, fresh_database, redis_prefix
from tests.support import Server

Cluster = Callable[..., list[Server]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def nodes(directory: Path, count: int, env: dict[str, str]) -> Iterator[list[Server]]:
    """`count` server processes sharing the store and bus named in `env`.

    They start side by side; each is stopped (or was killed) at the end.
    """
    servers = [Server(directory / f"node-{n}.db", env=env) for n in range(count)]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready(timeout_s=40)
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Starts nodes on a PostgreSQL database and a Redis prefix of the test's own.

    Call it with the number of nodes and any further settings; pass
    `ORDERCAST_BUS_URL` to use another Redis (one the test restarts).
    """
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_database("cluster"))
        prefix = stack.enter_context(redis_prefix("cluster"))

        def start(count: int, **settings: str) -> list[Server]:
            env = {
                "ORDERCAST_DATABASE_URL": database_url,
                "ORDERCAST_BUS_URL": REDIS_URL,
                "ORDERCAST_BUS_PREFIX": prefix,
                "ORDERCAST_DATABASE_POOL_SIZE": "4",
                **settings,
            }
            return stack.enter_context(nodes(tmp_path, count, env))

        yield start


@pytest.fixture(scope="session")
def instance() -> Instance:
    """Seed instance 0 of the Grubhub data (see tests/replay/conftest.py)."""
    return load_instance(instance_dir())
