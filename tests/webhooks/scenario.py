"""Orders driven through a real server, and what each target should get.

What a target should get is worked out here from the events the server
stored (read back over HTTP) and the rules, with the reference reading of
patterns in tests/routing/reference.py: not with the code under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.routing import reference
from tests.support import OPS
from tests.webhooks.receiver import Receiver

HAPPY_PATH = ["accept", "assign_courier", "pick_up", "start_delivery", "deliver"]
CANCELLED = ["accept", "cancel"]


@dataclass(frozen=True)
class Plan:
    """One order: who it is for, and the commands it goes through."""

    order_id: str
    restaurant_id: str
    commands: list[str]


async def drive(client: httpx.AsyncClient, plan: Plan) -> None:
    """Create the order and send its commands, one after the other."""
    body = {
        "orderId": plan.order_id,
        "customerId": "cu-1",
        "restaurantId": plan.restaurant_id,
    }
    response = await client.post("/orders", json=body, headers=OPS)
    assert response.status_code == 201, response.text
    for name in plan.commands:
        fields: dict[str, Any] = {"command": name}
        if name == "assign_courier":
            fields["courierId"] = f"c-{plan.order_id}"
        response = await client.post(
            f"/orders/{plan.order_id}/commands", json=fields, headers=OPS
        )
        assert response.status_code == 200, response.text


async def drive_all(client: httpx.AsyncClient, plans: Iterable[Plan]) -> None:
    """Orders side by side, each one's commands in turn."""
    await asyncio.gather(*(drive(client, plan) for plan in plans))


async def documents_of(
    client: httpx.AsyncClient, order_id: str
) -> list[dict[str, Any]]:
    """The documents of an order's stored events, as a rule should see them."""
    response = await client.get(f"/orders/{order_id}/events", headers=OPS)
    assert response.status_code == 200, response.text
    frames = response.json()["events"]
    parties = frames[0]["data"]
    courier_id = None
    documents = []
    for frame in frames:
        if frame["event"] == "courier.assigned":
            courier_id = frame["data"]["courierId"]
        documents.append(
            {
                "type": "order.event",
                "eventId": frame["eventId"],
                "orderId": frame["orderId"],
                "seq": frame["seq"],
                "event": frame["event"],
                "status": frame["status"],
                "at": frame["at"],
                "data": frame["data"],
                "order": {
                    "customerId": parties["customerId"],
                    "restaurantId": parties["restaurantId"],
                    "courierId": courier_id,
                },
            }
        )
    return documents


def expected(
    documents: Iterable[dict[str, Any]], patterns: Iterable[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Documents that any of the patterns matches, by event id."""
    patterns = list(patterns)
    return {
        d["eventId"]: d
        for d in documents
        if any(reference.matches(p, d) for p in patterns)
    }


def assert_in_order(receiver: Receiver, wanted: dict[str, dict[str, Any]]) -> None:
    """No request for an order's event came before every earlier wanted event
    of that order had been answered 2xx."""
    first_ok: dict[str, float] = {}
    for request in receiver.delivered():
        first_ok.setdefault(request.event_id, request.answered_at or 0.0)
    for request in receiver.requests:
        document = request.document
        earlier = [
            d["eventId"]
            for d in wanted.values()
            if d["orderId"] == document["orderId"] and d["seq"] < document["seq"]
        ]
        for event_id in earlier:
            assert event_id in first_ok, (document["orderId"], document["seq"])
            assert first_ok[event_id] <= request.received_at, (
                f"{document['orderId']} seq {document['seq']} arrived before "
                "an earlier event was delivered"
            )


def assert_delivered_exactly(
    receiver: Receiver,
    wanted: dict[str, dict[str, Any]],
    secret: str,
    gave_up: set[str] | None = None,
) -> None:
    """Every wanted event arrived (at least once), signed, with the right
    body, and was taken, except those that gave up; nothing else arrived."""
    gave_up = gave_up or set()
    assert receiver.event_ids() == set(wanted), "a missing or an unwanted event"
    assert receiver.delivered_ids() == set(wanted) - gave_up
    for request in receiver.requests:
        assert request.signed_with(secret), request.headers
        assert request.document == wanted[request.event_id]
