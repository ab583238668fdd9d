from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ordercast.store.base import Store
from tests.store.stores import SqliteSpec, StoreSpec


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """One database per test; more implementations join `params` later."""
    assert request.param == "sqlite"
    return SqliteSpec(tmp_path / "ordercast.db")


@pytest.fixture
async def store(spec: StoreSpec, anyio_backend: str) -> AsyncIterator[Store]:
    """An opened store on the test's database, closed after the test."""
    opened = spec.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
