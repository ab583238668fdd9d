"""The shapes of orders and events in DynamoDB and on the topic.

The store writes these items, the state machine writes event items of the
same shape (see `ordercast.aws.asl`), and the notifier reads the events the
state machine announces. Times are stored as RFC 3339 text; event data as
JSON text, which the state machine can write with `States.JsonToString`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from ordercast.lifecycle import Event, OrderState, Status
from ordercast.store.base import OrderRecord
from ordercast.wire.frames import format_at

Item = dict[str, Any]
"""A DynamoDB item in the low-level client's typed form."""


def parse_at(text: str) -> datetime:
    """A stored time: ours (`…T12:00:05.120Z`) or Step Functions' EnteredTime."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def event_item(event: Event) -> Item:
    """The events table item of `event` (data as JSON text, as the ASL writes it)."""
    return {
        "orderId": {"S": event.order_id},
        "seq": {"N": str(event.seq)},
        "eventId": {"S": event.event_id},
        "name": {"S": event.name},
        "status": {"S": event.status.value},
        "at": {"S": format_at(event.at)},
        "data": {"S": orjson.dumps(event.data).decode()},
    }


def event_from_item(item: Item) -> Event:
    """An event from its events table item (written by us or the ASL)."""
    return Event(
        item["orderId"]["S"],
        int(item["seq"]["N"]),
        item["eventId"]["S"],
        item["name"]["S"],
        Status(item["status"]["S"]),
        parse_at(item["at"]["S"]),
        orjson.loads(item["data"]["S"]),
    )


def event_to_json(event: Event) -> dict[str, Any]:
    """An event as the workflow carries it and the topic announces it."""
    return {
        "orderId": event.order_id,
        "seq": event.seq,
        "eventId": event.event_id,
        "name": event.name,
        "status": event.status.value,
        "at": format_at(event.at),
        "data": event.data,
    }


def event_from_json(body: dict[str, Any]) -> Event:
    """An event as the workflow carries it (see `event_to_json`)."""
    return Event(
        str(body["orderId"]),
        int(body["seq"]),
        str(body["eventId"]),
        str(body["name"]),
        Status(body["status"]),
        parse_at(str(body["at"])),
        dict(body.get("data") or {}),
    )


def order_item(record: OrderRecord) -> Item:
    state = record.state
    item: Item = {
        "orderId": {"S": state.order_id},
        "status": {"S": state.status.value},
        "seq": {"N": str(state.seq)},
        "customerId": {"S": state.customer_id},
        "restaurantId": {"S": state.restaurant_id},
        "createdAt": {"S": format_at(record.created_at)},
        "updatedAt": {"S": format_at(record.updated_at)},
    }
    if state.courier_id:
        item["courierId"] = {"S": state.courier_id}
    return item


def record_from_item(item: Item) -> OrderRecord:
    courier = item.get("courierId")
    state = OrderState(
        item["orderId"]["S"],
        Status(item["status"]["S"]),
        int(item["seq"]["N"]),
        item["customerId"]["S"],
        item["restaurantId"]["S"],
        courier["S"] if courier else None,
    )
    return OrderRecord(
        state, parse_at(item["createdAt"]["S"]), parse_at(item["updatedAt"]["S"])
    )


def record_from_json(body: dict[str, Any]) -> OrderRecord:
    state = OrderState(
        body["orderId"],
        Status(body["status"]),
        body["seq"],
        body["customerId"],
        body["restaurantId"],
        body["courierId"],
    )
    return OrderRecord(state, parse_at(body["createdAt"]), parse_at(body["updatedAt"]))
