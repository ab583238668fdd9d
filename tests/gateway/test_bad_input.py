"""Frames the gateway cannot act on: answered with an error, never fatal."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support import (
    Server,
    command,
    create_order,
    frames_before_pong,
    receive_frame,
    subscribe,
    unique_id,
)

pytestmark = pytest.mark.anyio


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames if f["type"] == "order.event"]


BAD_FRAMES = [
    pytest.param("{not json", "invalid_json", id="invalid-json"),
    pytest.param("", "invalid_json", id="empty"),
    pytest.param('["subscribe", "o-1"]', "invalid_json", id="json-array"),
    pytest.param('"ping"', "invalid_json", id="json-string"),
    pytest.param('{"action": "dance"}', "unknown_action", id="unknown-action"),
    pytest.param('{"orderId": "o-1"}', "unknown_action", id="no-action"),
    pytest.param('{"action": "subscribe"}', "invalid_frame", id="missing-order-id"),
    pytest.param(
        '{"action": "subscribe", "orderId": "{order_id}", "since": -1}',
        "invalid_frame",
        id="negative-since",
    ),
    pytest.param(
        '{"action": "subscribe", "orderId": "{order_id}", "since": 1.5}',
        "invalid_frame",
        id="fractional-since",
    ),
    pytest.param(
        '{"action": "subscribe", "orderId": "a b"}',
        "invalid_frame",
        id="order-id-with-a-space",
    ),
    pytest.param(
        '{"action": "location", "orderId": "*", "lat": 1, "lng": 1}',
        "invalid_frame",
        id="location-for-every-order",
    ),
    pytest.param('{"action": "ping", "extra": 1}', "invalid_frame", id="extra-field"),
    pytest.param(
        '{"action": "location", "orderId": "{order_id}", "lat": 91, "lng": 0}',
        "invalid_frame",
        id="latitude-out-of-range",
    ),
    pytest.param(
        '{"action": "location", "orderId": "{order_id}", "lat": 52.5, "lng": 13.4}',
        "forbidden",
        id="location-from-a-customer",
    ),
    pytest.param(
        '{"action": "ping", "pad": "' + "x" * 40 * 1024 + '"}',
        "frame_too_large",
        id="oversized-40kb",
    ),
    pytest.param(b'{"action": "ping"}', "invalid_frame", id="binary-json"),
    pytest.param(b"\xff\x00\x81binary", "invalid_frame", id="binary-garbage"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_a_bad_frame_gets_an_error_and_the_connection_keeps_serving(
    server: Server, client: httpx.Client, frame: str | bytes, code: str
) -> None:
    # given: a bad client and another client following an order
    order_id = unique_id()
    create_order(client, order_id)
    if isinstance(frame, str):
        frame = frame.replace("{order_id}", order_id)
    async with (
        connect(server.ws_url("customer", "cu-1")) as bad,
        connect(server.ws_url("restaurant", "r-1")) as other,
    ):
        await subscribe(other, order_id)

        # when
        await bad.send(frame)
        error = await receive_frame(bad)
        accepted = command(client, order_id, "accept")

        # then: the same connection keeps serving
        after_error = await frames_before_pong(bad)
        answer = await subscribe(bad, order_id, since=0)
        history = await frames_before_pong(bad)
        to_other = await frames_before_pong(other)

    assert set(error) >= {"type", "code", "message"}
    assert error["type"] == "error"
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert accepted.status_code == 200
    assert after_error == []
    assert answer["snapshot"]["seq"] == 2
    assert seqs(history) == [1, 2]
    assert seqs(to_other) == [2]


async def test_many_bad_frames_in_a_row_are_each_answered_in_order(
    server: Server,
) -> None:
    frames: list[str | bytes] = ["{", "[]", '{"action": "x"}', b"\x00", "x" * 40_000]

    async with connect(server.ws_url("customer", "cu-1")) as ws:
        for frame in frames:
            await ws.send(frame)
        answers = await frames_before_pong(ws)

    assert [a["code"] for a in answers] == [
        "invalid_json",
        "invalid_json",
        "unknown_action",
        "invalid_frame",
        "frame_too_large",
    ]


async def test_a_frame_over_1_mib_closes_only_that_connection(
    server: Server, client: httpx.Client
) -> None:
    # given
    order_id = unique_id()
    create_order(client, order_id)
    huge = os.urandom(600 * 1024).hex()  # 1.2 MB of text that does not compress
    async with (
        connect(server.ws_url("customer", "cu-1"), max_size=None) as big,
        connect(server.ws_url("restaurant", "r-1")) as other,
    ):
        await subscribe(other, order_id)

        # when
        await big.send(huge)
        with pytest.raises(ConnectionClosed) as closed:
            await receive_frame(big)

        # then: everyone else is still served
        accepted = command(client, order_id, "accept")
        to_other = await frames_before_pong(other)
    async with connect(server.ws_url("customer", "cu-1")) as fresh:
        answer = await subscribe(fresh, order_id, since=0)
        history = await frames_before_pong(fresh)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert accepted.status_code == 200
    assert seqs(to_other) == [2]
    assert answer["snapshot"]["seq"] == 2
    assert seqs(history) == [1, 2]
