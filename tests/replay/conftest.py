from __future__ import annotations

import pytest

from ordercast.replay.grubhub import Instance, load_instance
from tests.replay.data import instance_dir


@pytest.fixture(scope="session")
def instance() -> Instance:
    """Seed instance 0: 505 orders, 113 courier shifts, 116 restaurants."""
    return load_instance(instance_dir())
