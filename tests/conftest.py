from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Server, running


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real server process on a fresh SQLite file, with short deadlines."""
    with running(
        tmp_path / "ordercast.db",
        ORDERCAST_RESTAURANT_TIMEOUT_S="30",
        ORDERCAST_DISPATCH_TIMEOUT_S="30",
    ) as srv:
        yield srv
