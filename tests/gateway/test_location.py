"""Courier positions and the ETA, through a real server process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support import (
    LONG_DEADLINES,
    OPS,
    UNIT_S,
    Server,
    auth,
    command,
    frames_before_pong,
    receive_frame,
    running,
    send_frame,
    subscribe,
    unique_id,
)

pytestmark = pytest.mark.anyio

INTERVAL_S = 0.5
RESTAURANT = {"lat": -10.93, "lng": -37.06}
CUSTOMER = {"lat": -10.95, "lng": -37.04}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db_path = tmp_path_factory.mktemp("location") / "ordercast.db"
    env = {**LONG_DEADLINES, "ORDERCAST_LOCATION_INTERVAL_S": str(INTERVAL_S)}
    with running(db_path, **env) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def order_on_the_road(client: httpx.Client, courier: str = "c-1") -> str:
    """An order with places, picked up by `courier`, now in delivery."""
    order_id = unique_id()
    body = {
        "orderId": order_id,
        "customerId": "cu-1",
        "restaurantId": "r-1",
        "details": {"pickup": RESTAURANT, "dropoff": CUSTOMER},
    }
    assert client.post("/orders", json=body, headers=OPS).status_code == 201
    for name, fields in (
        ("accept", {}),
        ("assign_courier", {"courierId": courier}),
        ("pick_up", {}),
        ("start_delivery", {}),
    ):
        assert command(client, order_id, name, **fields).status_code == 200
    return order_id


def eta_of(frame: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(frame["eta"].replace("Z", "+00:00"))


async def locations_within(ws: Any, seconds: float) -> list[tuple[float, Any]]:
    """`courier.location` frames that arrive within `seconds`, with their time."""
    got: list[tuple[float, Any]] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            frame = await receive_frame(ws, timeout_s=left)
        except TimeoutError:
            break
        if frame["type"] == "courier.location":
            got.append((time.monotonic(), frame))
    return got


async def test_followers_get_at_most_one_position_per_interval(
    server: Server, client: httpx.Client
) -> None:
    # given a customer following an order on the road
    order_id = order_on_the_road(client)
    async with (
        connect(server.ws_url("customer", "cu-1")) as follower,
        connect(server.ws_url("courier", "c-1")) as courier,
    ):
        await subscribe(follower, order_id)

        # when the courier sends 20 fixes within about one interval and a half
        reading = asyncio.create_task(
            locations_within(follower, 2.5 * INTERVAL_S + 10 * UNIT_S)
        )
        burst_s = 1.5 * INTERVAL_S
        for step in range(20):
            fix = {"lat": -10.93 - step * 0.001, "lng": -37.06 + step * 0.001}
            frame = {"action": "location", "orderId": order_id, **fix}
            await send_frame(courier, frame)
            await asyncio.sleep(burst_s / 20)
        frames = await reading

    # then a handful of frames, spaced by the interval, ending on the last fix
    assert 2 <= len(frames) <= 4
    gaps = [b[0] - a[0] for a, b in zip(frames, frames[1:], strict=False)]
    assert all(gap >= 0.8 * INTERVAL_S for gap in gaps), gaps
    last = frames[-1][1]
    assert (last["lat"], last["lng"]) == (
        pytest.approx(-10.93 - 19 * 0.001),
        pytest.approx(-37.06 + 19 * 0.001),
    )


async def test_the_interval_is_configurable(tmp_path: Path) -> None:
    with (
        running(
            tmp_path / "ordercast.db",
            ORDERCAST_LOCATION_INTERVAL_S="0",
            **LONG_DEADLINES,
        ) as srv,
        srv.client() as http,
    ):
        order_id = order_on_the_road(http)
        async with (
            connect(srv.ws_url("customer", "cu-1")) as follower,
            connect(srv.ws_url("courier", "c-1")) as courier,
        ):
            await subscribe(follower, order_id)
            for step in range(5):
                fix = {"lat": -10.93, "lng": -37.06 + step * 0.001}
                frame = {"action": "location", "orderId": order_id, **fix}
                await send_frame(courier, frame)
            frames = await locations_within(follower, 10 * UNIT_S)

    assert [f["lng"] for _, f in frames] == pytest.approx(
        [-37.06 + step * 0.001 for step in range(5)]
    )


async def test_the_eta_comes_closer_as_the_courier_nears_the_customer(
    server: Server, client: httpx.Client
) -> None:
    order_id = order_on_the_road(client)
    async with connect(server.ws_url("customer", "cu-1")) as follower:
        await subscribe(follower, order_id)
        etas = []
        for position in (RESTAURANT, {"lat": -10.94, "lng": -37.05}, CUSTOMER):
            response = client.post(
                f"/orders/{order_id}/location",
                json=position,
                headers=auth("courier", "c-1"),
            )
            assert response.status_code == 202, response.text
            [(_, frame)] = await locations_within(follower, INTERVAL_S + 5 * UNIT_S)
            etas.append(eta_of(frame))

    assert etas[0] > etas[1] > etas[2]


async def test_the_snapshot_carries_the_eta_and_the_last_position(
    server: Server, client: httpx.Client
) -> None:
    order_id = order_on_the_road(client)
    fix = {"lat": -10.94, "lng": -37.05}
    assert (
        client.post(
            f"/orders/{order_id}/location", json=fix, headers=auth("courier", "c-1")
        ).status_code
        == 202
    )

    async with connect(server.ws_url("customer", "cu-1")) as follower:
        snapshot = (await subscribe(follower, order_id))["snapshot"]

    assert snapshot["status"] == "IN_DELIVERY"
    assert snapshot["courierPosition"]["lat"] == fix["lat"]
    assert eta_of(snapshot) > datetime.fromisoformat(
        snapshot["courierPosition"]["at"].replace("Z", "+00:00")
    )


async def test_event_frames_carry_the_eta_until_the_order_is_final(
    server: Server, client: httpx.Client
) -> None:
    order_id = order_on_the_road(client)
    async with connect(server.ws_url("customer", "cu-1")) as follower:
        await subscribe(follower, order_id)
        assert command(client, order_id, "deliver").status_code == 200
        [delivered] = await frames_before_pong(follower)

    assert delivered["event"] == "order.delivered"
    assert delivered["eta"] is None


async def test_each_status_change_recomputes_the_eta(
    server: Server, client: httpx.Client
) -> None:
    order_id = unique_id()
    body = {
        "orderId": order_id,
        "customerId": "cu-1",
        "restaurantId": "r-1",
        "details": {"pickup": RESTAURANT, "dropoff": CUSTOMER},
    }
    async with connect(server.ws_url("ops", "ops-1")) as ops:
        await send_frame(ops, {"action": "subscribe", "orderId": "*"})
        assert (await receive_frame(ops))["type"] == "subscribed"
        assert client.post("/orders", json=body, headers=OPS).status_code == 201
        assert command(client, order_id, "accept").status_code == 200
        frames = await frames_before_pong(ops)

    mine = [f for f in frames if f.get("orderId") == order_id]
    assert [f["event"] for f in mine] == ["order.received", "order.accepted"]
    assert all(isinstance(f["eta"], str) for f in mine)


async def test_only_the_assigned_courier_reports_positions(
    server: Server, client: httpx.Client
) -> None:
    order_id = order_on_the_road(client, courier="c-9")
    path = f"/orders/{order_id}/location"

    other = client.post(path, json=CUSTOMER, headers=auth("courier", "c-1"))
    customer = client.post(path, json=CUSTOMER, headers=auth("customer", "cu-1"))
    assigned = client.post(path, json=CUSTOMER, headers=auth("courier", "c-9"))

    assert (other.status_code, customer.status_code) == (403, 403)
    assert assigned.status_code == 202
