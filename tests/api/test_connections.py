"""The Management API (`/@connections`) against real sockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support import (
    OPS,
    Server,
    auth,
    create_order,
    frames_before_pong,
    receive_frame,
    send_frame,
    subscribe,
    unique_id,
    wait_until,
)

pytestmark = pytest.mark.anyio


def listed(client: httpx.Client, subject: str) -> list[dict[str, Any]]:
    response = client.get("/@connections", headers=OPS)
    assert response.status_code == 200, response.text
    connections = response.json()["connections"]
    return [c for c in connections if c["identity"]["subject"] == subject]


async def connection_id_of(
    ws: ClientConnection, client: httpx.Client, subject: str
) -> str:
    """The id of `ws`, found by the unique subject the test gave its token."""
    await frames_before_pong(ws)  # the server has registered the connection
    [connection] = listed(client, subject)
    return str(connection["connectionId"])


@pytest.fixture
def subject() -> str:
    return unique_id("cu")


def ws_url(server: Server, subject: str) -> str:
    return server.ws_url("customer", subject)


async def test_ops_lists_open_connections_with_their_identity(
    server: Server, client: httpx.Client, subject: str
) -> None:
    async with connect(ws_url(server, subject)) as ws:
        await frames_before_pong(ws)

        [connection] = listed(client, subject)

    assert connection["identity"]["role"] == "customer"
    assert connection["identity"]["sourceIp"] == "127.0.0.1"
    assert connection["connectionId"]


async def test_get_answers_when_a_connection_opened_was_active_and_who_holds_it(
    server: Server, client: httpx.Client, subject: str
) -> None:
    order_id = unique_id()
    create_order(client, order_id, customer=subject)
    async with connect(ws_url(server, subject)) as ws:
        connection_id = await connection_id_of(ws, client, subject)
        first = client.get(f"/@connections/{connection_id}", headers=OPS)

        await asyncio.sleep(0.01)  # times are to the millisecond
        await subscribe(ws, order_id)
        second = client.get(f"/@connections/{connection_id}", headers=OPS)

    assert first.status_code == second.status_code == 200
    info = second.json()
    assert info["connectionId"] == connection_id
    assert info["identity"] == {
        "sourceIp": "127.0.0.1",
        "role": "customer",
        "subject": subject,
    }
    assert info["subscriptions"] == [order_id]
    assert info["connectedAt"] == first.json()["connectedAt"]
    assert info["connectedAt"] <= first.json()["lastActiveAt"]
    assert first.json()["lastActiveAt"] < info["lastActiveAt"]
    assert info["connectedAt"].endswith("Z")
    assert len(info["connectedAt"]) == len("2026-01-01T00:00:00.000Z")


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/json", "application/octet-stream"]
)
async def test_post_delivers_the_body_to_that_connection_as_a_text_frame(
    server: Server, client: httpx.Client, subject: str, content_type: str | None
) -> None:
    body = {"type": "promo", "text": "Free dessert tonight \N{SHORTCAKE}"}
    raw = json.dumps(body, ensure_ascii=False).encode()
    headers = {**OPS, **({"Content-Type": content_type} if content_type else {})}
    async with (
        connect(ws_url(server, subject)) as ws,
        connect(server.ws_url("customer", "cu-bystander")) as bystander,
    ):
        connection_id = await connection_id_of(ws, client, subject)

        response = client.post(
            f"/@connections/{connection_id}", content=raw, headers=headers
        )
        received = await ws.recv()
        to_bystander = await frames_before_pong(bystander)

    assert response.status_code == 200, response.text
    assert isinstance(received, str)
    assert json.loads(received) == body
    assert to_bystander == []


async def test_delete_closes_the_socket_and_forgets_the_connection(
    server: Server, client: httpx.Client, subject: str
) -> None:
    async with connect(ws_url(server, subject)) as ws:
        connection_id = await connection_id_of(ws, client, subject)

        response = client.delete(f"/@connections/{connection_id}", headers=OPS)

        with pytest.raises(ConnectionClosed) as closed:
            await receive_frame(ws)

    assert response.status_code == 204
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000
    again = client.get(f"/@connections/{connection_id}", headers=OPS)
    assert again.status_code == 410
    assert listed(client, subject) == []


async def test_a_connection_the_client_closed_is_gone(
    server: Server, client: httpx.Client, subject: str
) -> None:
    async with connect(ws_url(server, subject)) as ws:
        connection_id = await connection_id_of(ws, client, subject)

    def gone() -> httpx.Response | None:
        response = client.get(f"/@connections/{connection_id}", headers=OPS)
        return response if response.status_code != 200 else None

    response = wait_until(gone)
    assert response.status_code == 410
    assert response.json()["code"] == "gone"


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_an_unknown_connection_is_410_gone(client: httpx.Client, method: str) -> None:
    connection_id = unique_id("conn")

    response = client.request(
        method, f"/@connections/{connection_id}", content=b"hi", headers=OPS
    )

    assert response.status_code == 410
    body = response.json()
    assert body["code"] == "gone"
    assert connection_id in body["message"]


@pytest.mark.parametrize("role", ["customer", "restaurant", "courier", "dispatch"])
async def test_only_ops_uses_the_management_api(
    server: Server, client: httpx.Client, subject: str, role: str
) -> None:
    async with connect(ws_url(server, subject)) as ws:
        connection_id = await connection_id_of(ws, client, subject)
        url = f"/@connections/{connection_id}"
        headers = auth(role, subject)

        answers = [
            client.get("/@connections", headers=headers),
            client.get(url, headers=headers),
            client.post(url, content=b"hi", headers=headers),
            client.delete(url, headers=headers),
        ]
        still_open = await frames_before_pong(ws)

    assert [a.status_code for a in answers] == [403] * 4
    assert {a.json()["code"] for a in answers} == {"forbidden"}
    assert still_open == []


def test_the_management_api_needs_a_token(client: httpx.Client) -> None:
    answers = [
        client.get("/@connections"),
        client.get("/@connections/x"),
        client.post("/@connections/x", content=b"hi"),
        client.delete("/@connections/x"),
    ]

    assert [a.status_code for a in answers] == [401] * 4
    assert {a.json()["code"] for a in answers} == {"unauthorized"}


async def test_post_to_a_connection_keeps_its_subscriptions_working(
    server: Server, client: httpx.Client, subject: str
) -> None:
    order_id = unique_id()
    create_order(client, order_id, customer=subject)
    async with connect(ws_url(server, subject)) as ws:
        await subscribe(ws, order_id)
        connection_id = await connection_id_of(ws, client, subject)

        client.post(f"/@connections/{connection_id}", content=b"note", headers=OPS)
        note = await ws.recv()
        await send_frame(ws, {"action": "ping"})
        pong = await receive_frame(ws)

    assert note == "note"
    assert pong == {"type": "pong"}
