from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import LONG_DEADLINES, Server, running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test module; its tests use distinct order ids."""
    db_path = tmp_path_factory.mktemp("gateway") / "ordercast.db"
    with running(db_path, **LONG_DEADLINES) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
