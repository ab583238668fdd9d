from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import pytest
from moto import mock_aws

from ordercast.aws.runtime import services
from tests.aws.harness import REGION, Stack, atomic_dynamodb_requests

FAST_DEADLINES = {
    "ORDERCAST_RESTAURANT_TIMEOUT_S": "600",
    "ORDERCAST_DISPATCH_TIMEOUT_S": "600",
    "ORDERCAST_WORKFLOW_RECHECK_S": "600",
    "ORDERCAST_LOCATION_INTERVAL_S": "0",
}
"""Settings under which no deadline fires during a test (they are injected
per test where a deadline is the point)."""


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A region and dummy credentials: moto answers, nothing leaves the machine."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def moto() -> Iterator[None]:
    """One moto for the session: a worker thread of a state machine that ends
    after its test still talks to moto, never to the network."""
    with (
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
        atomic_dynamodb_requests(),
    ):
        yield


def make_stack(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Iterator[Stack]:
    stack = Stack({**FAST_DEADLINES, **env})
    for name, value in stack.settings_env.items():
        monkeypatch.setenv(name, value)
    services.cache_clear()
    try:
        yield stack
    finally:
        stack.stop()
        services.cache_clear()


@pytest.fixture
def stack(
    moto: None, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """The template's resources in moto; deadlines that do not fire."""
    yield from make_stack(monkeypatch, {})


@pytest.fixture
def stack_with(
    moto: None, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Stack]]:
    """Build the stack with some settings of the test's own (`NAME="value"`)."""
    with ExitStack() as stacks:

        def make(**env: str) -> Stack:
            named = {f"ORDERCAST_{k.upper()}": v for k, v in env.items()}
            return stacks.enter_context(contextmanager(make_stack)(monkeypatch, named))

        yield make
