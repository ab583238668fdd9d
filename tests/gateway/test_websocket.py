"""The WebSocket protocol against a real server process over real sockets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from ordercast.auth import issue_token
from ordercast.lifecycle import Role
from tests.support import (
    OPS,
    SECRET,
    Server,
    auth,
    command,
    create_order,
    events_of,
    frames_before_pong,
    receive_frame,
    send_frame,
    subscribe,
    token,
    unique_id,
)

pytestmark = pytest.mark.anyio

ENGLISH_ACCEPTED = "The restaurant accepted your order and is preparing it"


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames if f["type"] == "order.event"]


def new_order(
    client: httpx.Client, customer: str = "cu-1", restaurant: str = "r-1"
) -> str:
    order_id = unique_id()
    create_order(client, order_id, customer=customer, restaurant=restaurant)
    return order_id


def ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, response.text
    return response


async def expect_error(ws: ClientConnection, code: str) -> dict[str, Any]:
    frame = await receive_frame(ws)
    assert frame["type"] == "error", frame
    assert frame["code"] == code, frame
    assert isinstance(frame["message"], str)
    assert frame["message"]
    return dict(frame)


async def assert_usable(ws: ClientConnection) -> None:
    assert await frames_before_pong(ws) == []


# basics


async def test_ping_is_answered_with_pong(server: Server) -> None:
    async with connect(server.ws_url()) as ws:
        await send_frame(ws, {"action": "ping"})

        assert await receive_frame(ws) == {"type": "pong"}


async def test_subscribe_answers_a_snapshot_and_then_only_live_events(
    server: Server, client: httpx.Client
) -> None:
    # given: an order at seq 2
    order_id = new_order(client)
    ok(command(client, order_id, "accept"))

    async with connect(server.ws_url("customer", "cu-1")) as ws:
        # when
        answer = await subscribe(ws, order_id)
        history = await frames_before_pong(ws)
        ok(command(client, order_id, "assign_courier", courierId="c-1"))
        live = await frames_before_pong(ws)

    # then
    eta = answer["snapshot"]["eta"]
    assert answer == {
        "type": "subscribed",
        "orderId": order_id,
        "snapshot": {
            "status": "ACCEPTED",
            "seq": 2,
            "eta": eta,
            "courierPosition": None,
        },
    }
    assert eta.endswith("Z")
    assert history == []
    [event] = live
    assert event["type"] == "order.event"
    assert event["orderId"] == order_id
    assert (event["seq"], event["event"], event["status"]) == (
        3,
        "courier.assigned",
        "COURIER_ASSIGNED",
    )
    assert event["data"] == {"courierId": "c-1"}
    assert event["message"] == "Your courier is on the way to the restaurant"
    assert event["eventId"]
    assert event["at"].endswith("Z")
    assert event["eta"] > event["at"]


async def test_subscribe_with_since_sends_the_events_after_it_then_live_events(
    server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)
    ok(command(client, order_id, "accept"))
    ok(command(client, order_id, "assign_courier", courierId="c-1"))

    async with connect(server.ws_url("customer", "cu-1")) as ws:
        answer = await subscribe(ws, order_id, since=1)
        history = await frames_before_pong(ws)
        ok(command(client, order_id, "pick_up"))
        live = await frames_before_pong(ws)

    assert answer["snapshot"]["seq"] == 3
    assert seqs(history) == [2, 3]
    assert history == events_of(client, order_id, since=1)[:2]
    assert seqs(live) == [4]


async def test_subscribe_with_since_zero_sends_the_whole_log(
    server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)
    ok(command(client, order_id, "accept"))

    async with connect(server.ws_url("restaurant", "r-1")) as ws:
        await subscribe(ws, order_id, since=0)
        history = await frames_before_pong(ws)

    assert history == events_of(client, order_id)


async def test_subscribe_with_since_past_the_last_seq_is_refused(
    server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)

    async with connect(server.ws_url()) as ws:
        await send_frame(ws, {"action": "subscribe", "orderId": order_id, "since": 2})

        await expect_error(ws, "invalid_frame")
        await assert_usable(ws)


async def test_subscribe_to_an_unknown_order_is_refused(server: Server) -> None:
    async with connect(server.ws_url()) as ws:
        await send_frame(ws, {"action": "subscribe", "orderId": unique_id("missing")})

        await expect_error(ws, "order_not_found")
        await assert_usable(ws)


async def test_unsubscribe_answers_unsubscribed_and_stops_events(
    server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)

    async with connect(server.ws_url("customer", "cu-1")) as ws:
        await subscribe(ws, order_id)
        await send_frame(ws, {"action": "unsubscribe", "orderId": order_id})
        answer = await receive_frame(ws)
        ok(command(client, order_id, "accept"))
        after = await frames_before_pong(ws)

    assert answer == {"type": "unsubscribed", "orderId": order_id}
    assert after == []


# fan-out


async def test_every_follower_gets_each_event_exactly_once_in_seq_order(
    server: Server, client: httpx.Client
) -> None:
    # given: the customer's phone and laptop, the restaurant and ops follow
    order_id = new_order(client, customer="cu-fan", restaurant="r-fan")
    urls = {
        "phone": server.ws_url("customer", "cu-fan"),
        "laptop": server.ws_url("customer", "cu-fan"),
        "restaurant": server.ws_url("restaurant", "r-fan"),
        "ops": server.ws_url("ops", "ops-fan"),
    }
    followers = {name: await connect(url) for name, url in urls.items()}
    courier = await connect(server.ws_url("courier", "c-fan"))
    try:
        for ws in followers.values():
            await subscribe(ws, order_id, since=0)

        # when: the order goes all the way, the courier following once assigned
        ok(command(client, order_id, "accept", headers=auth("restaurant", "r-fan")))
        ok(command(client, order_id, "assign_courier", courierId="c-fan"))
        await subscribe(courier, order_id, since=0)
        followers["courier"] = courier
        for name in ("pick_up", "start_delivery", "deliver"):
            ok(command(client, order_id, name, headers=auth("courier", "c-fan")))
        received = {
            name: await frames_before_pong(ws) for name, ws in followers.items()
        }
    finally:
        for ws in [*followers.values(), courier]:
            await ws.close()

    # then
    log = events_of(client, order_id)
    assert [e["seq"] for e in log] == [1, 2, 3, 4, 5, 6]
    for name, frames in received.items():
        assert frames == log, name


async def _assign_concurrently(server: Server, order_id: str, count: int) -> None:
    # plain HTTP: verify=False only skips loading CA certificates
    async with httpx.AsyncClient(
        base_url=server.url,
        timeout=30,
        verify=False,
        limits=httpx.Limits(max_connections=count),
    ) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    f"/orders/{order_id}/commands",
                    json={"command": "assign_courier", "courierId": f"c-{n}"},
                    headers=OPS,
                )
                for n in range(count)
            )
        )
    assert [r.status_code for r in responses] == [200] * count


async def test_followers_get_concurrent_events_once_and_in_order(
    server: Server, client: httpx.Client
) -> None:
    # given: one follower from the start, one that subscribes mid-burst
    order_id = new_order(client)
    ok(command(client, order_id, "accept"))
    async with (
        connect(server.ws_url()) as early,
        connect(server.ws_url("restaurant", "r-1")) as late,
    ):
        await subscribe(early, order_id, since=0)

        # when
        burst = asyncio.create_task(_assign_concurrently(server, order_id, 50))
        await asyncio.sleep(0)
        late_answer = await subscribe(late, order_id, since=0)
        await burst
        from_early = await frames_before_pong(early)
        from_late = await frames_before_pong(late)

    # then
    assert seqs(from_early) == list(range(1, 53))
    assert seqs(from_late) == list(range(1, 53))
    assert late_answer["snapshot"]["seq"] >= 2


async def test_a_client_that_resumes_with_since_misses_nothing_and_sees_nothing_twice(
    server: Server, client: httpx.Client
) -> None:
    # given: a customer following an order while commands keep coming
    order_id = new_order(client)
    ok(command(client, order_id, "accept"))
    seen: list[dict[str, Any]] = []
    async with connect(server.ws_url("customer", "cu-1")) as ws:
        await subscribe(ws, order_id, since=0)
        burst = asyncio.create_task(_assign_concurrently(server, order_id, 30))

        # when: it drops the connection mid-stream
        while len(seen) < 5:
            seen.append(await receive_frame(ws))
    await burst
    ok(command(client, order_id, "pick_up"))

    # and reconnects with the last seq it saw
    async with connect(server.ws_url("customer", "cu-1")) as ws:
        answer = await subscribe(ws, order_id, since=seen[-1]["seq"])
        seen.extend(await frames_before_pong(ws))
        ok(command(client, order_id, "start_delivery"))
        seen.extend(await frames_before_pong(ws))

    # then
    assert answer["snapshot"]["seq"] == 33
    assert seqs(seen) == list(range(1, 35))
    assert seen == events_of(client, order_id)


# who may follow what


async def test_a_customer_cannot_follow_someone_elses_order(
    server: Server, client: httpx.Client
) -> None:
    theirs = new_order(client, customer="cu-other")
    mine = new_order(client, customer="cu-me")

    async with connect(server.ws_url("customer", "cu-me")) as ws:
        await send_frame(ws, {"action": "subscribe", "orderId": theirs})
        error = await expect_error(ws, "forbidden")
        await assert_usable(ws)
        answer = await subscribe(ws, mine)
        ok(command(client, theirs, "accept"))
        ok(command(client, mine, "accept"))
        events = await frames_before_pong(ws)

    assert error["orderId"] == theirs
    assert answer["orderId"] == mine
    assert [(e["orderId"], e["seq"]) for e in events] == [(mine, 2)]


async def test_a_courier_follows_only_orders_assigned_to_them(
    server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)
    ok(command(client, order_id, "accept"))
    subscribe_frame = {"action": "subscribe", "orderId": order_id}

    async with (
        connect(server.ws_url("courier", "c-mine")) as mine,
        connect(server.ws_url("courier", "c-other")) as other,
    ):
        await send_frame(mine, subscribe_frame)
        before_assignment = await expect_error(mine, "forbidden")
        ok(command(client, order_id, "assign_courier", courierId="c-mine"))
        after_assignment = await subscribe(mine, order_id)
        await send_frame(other, subscribe_frame)
        await expect_error(other, "forbidden")
        await assert_usable(other)

    assert before_assignment["orderId"] == order_id
    assert after_assignment["snapshot"]["status"] == "COURIER_ASSIGNED"


async def test_a_courier_taken_off_an_order_stops_following_it(
    server: Server, client: httpx.Client
) -> None:
    # given the first courier follows an order assigned to them
    order_id = new_order(client)
    ok(command(client, order_id, "accept"))
    ok(command(client, order_id, "assign_courier", courierId="c-first"))
    async with connect(server.ws_url("courier", "c-first")) as first:
        await subscribe(first, order_id)

        # when dispatch gives the order to another courier, who picks it up
        ok(command(client, order_id, "assign_courier", courierId="c-second"))
        reassigned = await frames_before_pong(first)
        second = auth("courier", "c-second")
        ok(command(client, order_id, "pick_up", headers=second))
        later = await frames_before_pong(first)

    # then the first hears of the reassignment, then nothing more
    assert [f["type"] for f in reassigned] == ["order.event", "unsubscribed"]
    assert reassigned[0]["data"] == {"courierId": "c-second"}
    assert reassigned[1] == {
        "type": "unsubscribed",
        "orderId": order_id,
        "reason": "reassigned",
    }
    assert later == []


async def test_a_position_after_the_order_is_final_is_refused(
    server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)
    ok(command(client, order_id, "reject"))

    response = client.post(
        f"/orders/{order_id}/location", json={"lat": 1, "lng": 2}, headers=OPS
    )

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"


async def test_ops_follows_every_order(server: Server, client: httpx.Client) -> None:
    async with connect(server.ws_url("ops", "ops-star")) as ws:
        # given
        await send_frame(ws, {"action": "subscribe", "orderId": "*"})
        answer = await receive_frame(ws)

        # when: orders that did not exist when it subscribed change
        first = new_order(client)
        second = new_order(client, customer="cu-2", restaurant="r-2")
        ok(command(client, first, "accept"))
        events = await frames_before_pong(ws)
        await send_frame(ws, {"action": "unsubscribe", "orderId": "*"})
        unsubscribed = await receive_frame(ws)
        ok(command(client, second, "accept"))
        after = await frames_before_pong(ws)

    # then
    assert answer["type"] == "subscribed"
    assert answer["orderId"] == "*"
    assert [(e["orderId"], e["seq"]) for e in events] == [
        (first, 1),
        (second, 1),
        (first, 2),
    ]
    assert unsubscribed == {"type": "unsubscribed", "orderId": "*"}
    assert after == []


@pytest.mark.parametrize(
    ("role", "subject"),
    [("customer", "cu-1"), ("restaurant", "r-1"), ("courier", "c-1")],
)
async def test_only_ops_and_dispatch_follow_every_order(
    server: Server, client: httpx.Client, role: str, subject: str
) -> None:
    async with connect(server.ws_url(role, subject)) as ws:
        await send_frame(ws, {"action": "subscribe", "orderId": "*"})
        await expect_error(ws, "forbidden")
        new_order(client)
        assert await frames_before_pong(ws) == []


# tokens


async def test_a_token_in_the_subprotocol_identifies_the_connection(
    server: Server, client: httpx.Client
) -> None:
    mine = new_order(client, customer="cu-sub")
    theirs = new_order(client, customer="cu-else")
    url = f"ws://127.0.0.1:{server.port}/ws"
    offered = [Subprotocol("ordercast"), bearer(token("customer", "cu-sub"))]

    async with connect(url, subprotocols=offered) as ws:
        answer = await subscribe(ws, mine)
        await send_frame(ws, {"action": "subscribe", "orderId": theirs})
        await expect_error(ws, "forbidden")
        chosen = ws.subprotocol

    assert chosen == "ordercast"
    assert answer["orderId"] == mine


def bearer(token: str) -> Subprotocol:
    return Subprotocol(f"bearer.{token}")


def _expired() -> str:
    claims = {"sub": "ops-1", "role": "ops", "exp": int(time.time()) - 60}
    return jwt.encode(claims, SECRET, algorithm="HS256")


BAD_TOKENS = {
    "bad-signature": issue_token("another-secret-of-at-least-32-bytes!", Role.OPS, "x"),
    "expired": _expired(),
    "unknown-role": jwt.encode({"sub": "x", "role": "admin"}, SECRET, "HS256"),
    "not-a-jwt": "not-a-jwt",
}


@pytest.mark.parametrize("name", [*BAD_TOKENS, "missing"])
@pytest.mark.parametrize("how", ["query", "subprotocol"])
async def test_a_bad_token_fails_the_handshake(
    server: Server, name: str, how: str
) -> None:
    url = f"ws://127.0.0.1:{server.port}/ws"
    offered = [Subprotocol("ordercast")]
    if name != "missing" and how == "query":
        url += f"?token={BAD_TOKENS[name]}"
    elif name != "missing":
        offered.append(bearer(BAD_TOKENS[name]))

    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=offered):
            pass

    assert refused.value.response.status_code == 403


# languages


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ({}, {}),
        ({"lang": "en-GB"}, {}),
        ({"lang": "xx"}, {}),
        ({}, {"Accept-Language": "zz-ZZ,zz;q=0.9"}),
        ({"lang": "xx"}, {"Accept-Language": "en"}),
    ],
)
async def test_messages_fall_back_to_english(
    server: Server,
    client: httpx.Client,
    query: dict[str, str],
    headers: dict[str, str],
) -> None:
    order_id = new_order(client)
    url = server.ws_url("customer", "cu-1", **query)

    async with connect(url, additional_headers=headers) as ws:
        await subscribe(ws, order_id)
        ok(command(client, order_id, "accept"))
        [event] = await frames_before_pong(ws)

    assert event["message"] == ENGLISH_ACCEPTED


async def test_a_connection_closed_by_the_client_stops_getting_events(
    server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)
    gone = await connect(server.ws_url("customer", "cu-1"))
    await subscribe(gone, order_id)
    await gone.close()

    async with connect(server.ws_url("restaurant", "r-1")) as ws:
        await subscribe(ws, order_id)
        ok(command(client, order_id, "accept"))
        events = await frames_before_pong(ws)

    assert seqs(events) == [2]
    with pytest.raises(ConnectionClosed):
        await gone.recv()
