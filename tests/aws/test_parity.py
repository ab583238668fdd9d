"""One scenario, two runtimes: a client cannot tell which one serves it.

The scenario runs once against a real `ordercast serve` process (the embedded
runtime, over real sockets) and once through the AWS handlers (moto running
the generated state machine). Each follower's frames must match one for one;
only event ids and times may differ, since each runtime makes its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.aws.harness import Stack
from tests.support import (
    LONG_DEADLINES,
    Server,
    auth,
    frames_before_pong,
    running,
    send_frame,
)

pytestmark = pytest.mark.anyio

ORDER = "o-parity"

# (step, *arguments); followers are named, each is one connection
SCENARIO: list[tuple[Any, ...]] = [
    ("connect", "ops", "ops", "ops-1", None),
    ("send", "ops", {"action": "subscribe", "orderId": "*"}),
    ("create", ORDER, "cu-1", "r-1"),
    ("connect", "phone", "customer", "cu-1", None),
    ("send", "phone", {"action": "subscribe", "orderId": ORDER}),
    ("connect", "tablet", "restaurant", "r-1", "pt-BR"),
    ("send", "tablet", {"action": "subscribe", "orderId": ORDER}),
    ("command", "restaurant", "r-1", {"command": "accept"}),
    ("command", "dispatch", "d-1", {"command": "assign_courier", "courierId": "c-7"}),
    ("connect", "courier", "courier", "c-7", None),
    ("send", "courier", {"action": "subscribe", "orderId": ORDER}),
    ("command", "courier", "c-7", {"command": "pick_up"}),
    (
        "send",
        "courier",
        {"action": "location", "orderId": ORDER, "lat": 41.1, "lng": -8.6},
    ),
    ("send", "phone", {"action": "dance"}),
    ("command", "courier", "c-7", {"command": "start_delivery"}),
    ("connect", "laptop", "customer", "cu-1", None),
    ("send", "laptop", {"action": "subscribe", "orderId": ORDER, "since": 2}),
    ("send", "tablet", {"action": "unsubscribe", "orderId": ORDER}),
    ("command", "customer", "cu-1", {"command": "cancel"}),
    ("command", "courier", "c-7", {"command": "deliver"}),
]


def _comparable(frame: Any) -> Any:
    """A frame without what each runtime makes for itself: ids and times.

    An ETA counts from the times of the order's events, so only whether there
    is one is compared here; `tests/aws/test_fanout.py` checks its value.
    """
    if isinstance(frame, dict):
        return {
            k: ("a time" if k == "eta" and v else _comparable(v))
            for k, v in frame.items()
            if k not in ("eventId", "at")
        }
    if isinstance(frame, list):
        return [_comparable(v) for v in frame]
    return frame


# the embedded runtime


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Server]:
    with running(tmp_path / "parity.db", **LONG_DEADLINES) as server:
        yield server


async def _run_embedded(server: Server) -> dict[str, list[dict[str, Any]]]:
    sockets: dict[str, ClientConnection] = {}
    seen: dict[str, list[dict[str, Any]]] = {}
    http = httpx.Client(base_url=server.url, timeout=10)
    try:
        for step, *args in SCENARIO:
            if step == "connect":
                name, role, subject, lang = args
                extra = {"lang": lang} if lang else {}
                sockets[name] = await connect(server.ws_url(role, subject, **extra))
                seen[name] = []
            elif step == "send":
                name, frame = args
                await send_frame(sockets[name], frame)
                # wait until it was handled: the gateway answers in order
                seen[name] += await frames_before_pong(sockets[name])
            elif step == "create":
                order_id, customer, restaurant = args
                body = {
                    "orderId": order_id,
                    "customerId": customer,
                    "restaurantId": restaurant,
                }
                assert (
                    http.post(
                        "/orders", json=body, headers=auth("ops", "ops-1")
                    ).status_code
                    == 201
                )
            else:
                role, subject, body = args
                reply = http.post(
                    f"/orders/{ORDER}/commands", json=body, headers=auth(role, subject)
                )
                assert reply.status_code in (200, 403, 409), reply.text
        for name, ws in sockets.items():
            seen[name] += await frames_before_pong(ws)
            seen[name].append({"type": "pong"})
    finally:
        http.close()
        for ws in sockets.values():
            await ws.close()
    return seen


# the AWS runtime


def _run_aws(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    connections: dict[str, str] = {}
    for step, *args in SCENARIO:
        if step == "connect":
            name, role, subject, lang = args
            connections[name] = stack.follower(role, subject, lang)
        elif step == "send":
            name, frame = args
            stack.send(connections[name], frame)
        elif step == "create":
            order_id, customer, restaurant = args
            stack.create(order_id, customer, restaurant)
            stack.settle(order_id, 1)
        else:
            role, subject, body = args
            reply = stack.http("POST", f"/orders/{ORDER}/commands", body, role, subject)
            assert reply.status in (200, 403, 409), reply.body
            if reply.status == 200:
                stack.settle(ORDER, reply.body["order"]["seq"])
    for connection_id in connections.values():
        stack.send(connection_id, json.dumps({"action": "ping"}))
    return {name: stack.frames(cid) for name, cid in connections.items()}


async def test_every_follower_gets_the_same_frames_from_both_runtimes(
    embedded: Server, stack: Stack
) -> None:
    # when the scenario runs on each runtime
    local = await _run_embedded(embedded)
    aws = _run_aws(stack)

    # then each follower saw the same frames, in the same order
    assert set(local) == set(aws)
    for name in local:
        assert _comparable(aws[name]) == _comparable(local[name]), name

    # and the scenario meant something: every kind of frame was there
    kinds = {frame["type"] for frames in local.values() for frame in frames}
    assert kinds == {
        "subscribed",
        "order.event",
        "courier.location",
        "error",
        "unsubscribed",
        "pong",
    }
    assert [f["seq"] for f in local["laptop"] if f["type"] == "order.event"] == [
        3,
        4,
        5,
        6,
    ]
