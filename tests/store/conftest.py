from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ordercast.store.base import Store
from tests.services import fresh_database
from tests.store.stores import PostgresSpec, SqliteSpec, StoreSpec


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test session's own, dropped at the end."""
    with fresh_database("store") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def spec(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str
) -> StoreSpec:
    """Each implementation on a database of the test's own, empty at the start."""
    if request.param == "sqlite":
        return SqliteSpec(tmp_path / "ordercast.db")
    postgres = PostgresSpec(request.getfixturevalue("postgres_url"))
    migrated = postgres.make()
    await migrated.open()
    await migrated.close()
    await postgres.clear()
    return postgres


@pytest.fixture
async def store(spec: StoreSpec, anyio_backend: str) -> AsyncIterator[Store]:
    """An opened store on the test's database, closed after the test."""
    opened = spec.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
