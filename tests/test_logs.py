"""Log lines: context fields appended, tokens never written."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from ordercast.logs import ContextFormatter, RedactTokens, redact
from tests.support import Server, token

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("ordercast.test", logging.INFO, "x", 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def test_context_fields_follow_the_message() -> None:
    line = ContextFormatter("%(message)s").format(
        record("deadline fired late", order_id="o-1", seq=3)
    )

    assert line == "deadline fired late order_id=o-1 seq=3"


def test_a_record_without_context_is_the_plain_format() -> None:
    assert ContextFormatter("%(message)s").format(record("listening")) == "listening"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ws?token=eyJ.a.b", "/ws?token=[redacted]"),
        ("/ws?lang=pt&token=eyJ.a.b&x=1", "/ws?lang=pt&token=[redacted]&x=1"),
        (
            '"WebSocket /ws?token=abc" [accepted]',
            '"WebSocket /ws?token=[redacted]" [accepted]',
        ),
        ("/ws?notatoken=1", "/ws?notatoken=1"),
        (
            "< sec-websocket-protocol: ordercast, bearer.eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
            "< sec-websocket-protocol: ordercast, bearer.[redacted]",
        ),
        (
            "authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2-l_n",
            "authorization: Bearer [redacted]",
        ),
        ("send a Bearer token", "send a Bearer token"),
    ],
)
def test_tokens_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_filter_redacts_arguments_as_well_as_the_message() -> None:
    made = record('%s - "WebSocket %s" [accepted]', "127.0.0.1", "/ws?token=secret")

    RedactTokens().filter(made)

    assert "secret" not in made.getMessage()


async def test_the_server_log_never_holds_a_token(tmp_path: Path) -> None:
    # given a server logging everything, headers included
    secret_token = token("customer", "cu-1")
    other_token = token("customer", "cu-2")
    debug = ("-m", "ordercast", "serve", "--log-level", "debug")
    server = Server(tmp_path / "logs.db", program=debug)
    try:
        server.start()
        # when clients connect with a token in the URL and in the subprotocol
        async with connect(f"ws://127.0.0.1:{server.port}/ws?token={secret_token}"):
            pass
        offered = [Subprotocol("ordercast"), Subprotocol(f"bearer.{other_token}")]
        async with connect(
            f"{server.url.replace('http', 'ws')}/ws", subprotocols=offered
        ):
            pass
    finally:
        server.stop()
    log = server.log()

    # then neither token is in the log
    assert "sec-websocket-protocol" in log
    assert other_token not in log
    assert "connection opened" in log
    assert "connection_id=" in log
    assert "/ws?token=[redacted]" in log  # uvicorn's handshake line
    assert secret_token not in log
