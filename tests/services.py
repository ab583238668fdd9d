"""PostgreSQL and Redis for the tests: a fresh database and key prefix each.

Both run on loopback (`.ci/services` makes sure they answer). Every test
session creates its own uniquely named databases and drops them at the end,
and names its Redis keys and channels with its own prefix, so sessions on a
shared machine never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import asyncpg
import redis

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
