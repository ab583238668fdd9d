"""PostgreSQL and Redis for the tests: a fresh database and key prefix each.

Both run on loopback (`.ci/services` makes sure they answer). Every test
session creates its own uniquely named databases and drops them at the end,
and names its Redis keys and channels with its own prefix, so sessions on a
shared machine never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis

from tests.support import free_port

POSTGRES_URL = os.environ.get(
    "ORDERCAST_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
"""A database to connect to while creating and dropping the tests' own."""

REDIS_URL = os.environ.get("ORDERCAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique_name(kind: str) -> str:
    return f"ordercast_{kind}_{uuid.uuid4().hex[:12]}"


def database_url(name: str) -> str:
    """The URL of database `name` on the server of POSTGRES_URL."""
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{name}"


def _admin(statement: str) -> None:
    """Run one statement outside any transaction (CREATE and DROP DATABASE)."""

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    # on a thread of its own: callers may be inside a running event loop
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, run()).result()


def create_database(name: str) -> str:
    """Create an empty database; its URL.

    Raises:
        RuntimeError: PostgreSQL does not answer (run `.ci/services`).
    """
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL at {POSTGRES_URL} is needed ({exc}); run .ci/services"
        ) from exc
    return database_url(name)


def drop_database(name: str) -> None:
    # FORCE ends connections a killed server process left behind
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(kind: str = "db") -> Iterator[str]:
    """A new database for the duration of the block; its URL."""
    name = unique_name(kind)
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)


@contextmanager
def redis_prefix(kind: str = "bus") -> Iterator[str]:
    """A key prefix of our own; every key under it is deleted afterwards.

    Raises:
        RuntimeError: Redis does not answer (run `.ci/services`).
    """
    prefix = f"{unique_name(kind)}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(
            f"Redis at {REDIS_URL} is needed ({exc}); run .ci/services"
        ) from exc
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@dataclass
class PrivateRedis:
    """A redis-server of a test's own on a free port, to stop and start again.

    Tests that restart Redis use one of these, never the shared server.
    """

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> PrivateRedis:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        with (self.directory / f"redis-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGKILL: Redis goes away at once, and with it everything it held."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextmanager
def private_redis(directory: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(directory).start()
    try:
        yield server
    finally:
        server.stop()
