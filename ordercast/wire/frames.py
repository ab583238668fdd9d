"""Frames of the WebSocket protocol (DESIGN.md) and how to read and write them.

Client frames are JSON text with an `action` field, the way API Gateway routes
them. Server frames are JSON text with a `type` field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
)

from ordercast.errors import (
    FrameError as _FrameError,
    FrameTooLarge,
    InvalidJson,
    UnknownAction,
)
from ordercast.lifecycle.log import Event
from ordercast.store.base import OrderRecord
from ordercast.wire.bodies import ID_PATTERN
from ordercast.wire.messages import message_for

MAX_FRAME_BYTES = 32 * 1024
"""Largest client frame we read: API Gateway's WebSocket frame limit."""

MAX_SEQ = 2**31 - 1
"""Largest seq a log can reach (the stores keep it as a 32-bit integer)."""

ALL_ORDERS = "*"
"""The order id with which ops and dispatch follow every order, live."""


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ORDER_OR_ALL_PATTERN = rf"^(?:\*|{ID_PATTERN[1:-1]})$"
"""An order id, or `*` (every order) where a subscription may name it."""


class Subscribe(_Frame):
    action: Literal["subscribe"]
    order_id: str = Field(alias="orderId", pattern=ORDER_OR_ALL_PATTERN)
    since: StrictInt | None = Field(default=None, ge=0, le=MAX_SEQ)
    """Last seq the client saw; it gets every event after it."""


class Unsubscribe(_Frame):
    action: Literal["unsubscribe"]
    order_id: str = Field(alias="orderId", pattern=ORDER_OR_ALL_PATTERN)


class Ping(_Frame):
    action: Literal["ping"]


class Location(_Frame):
    action: Literal["location"]
    order_id: str = Field(alias="orderId", pattern=ID_PATTERN)
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)


ClientFrame = Annotated[
    Subscribe | Unsubscribe | Ping | Location, Field(discriminator="action")
]
_client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
ACTIONS = ("subscribe", "unsubscribe", "ping", "location")


def parse_client_frame(raw: str | bytes) -> ClientFrame:
    """Read one client frame.

    Raises:
        FrameTooLarge: over MAX_FRAME_BYTES.
        InvalidJson: not a JSON object.
        UnknownAction: `action` missing or not one of ACTIONS.
        FrameError: a known action with missing or malformed fields.
    """
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_FRAME_BYTES:
        raise FrameTooLarge(
            f"frame of {size} bytes is over the {MAX_FRAME_BYTES} limit"
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise InvalidJson(f"frame is not valid JSON ({where})") from exc
    if not isinstance(body, dict):
        raise InvalidJson("frame must be a JSON object")
    if body.get("action") not in ACTIONS:
        expected = ", ".join(ACTIONS)
        raise UnknownAction(
            f"unknown action {body.get('action')!r}; expected one of {expected}"
        )
    try:
        return _client_frame.validate_python(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "frame"
        raise _FrameError(f"{body['action']}: {where}: {first['msg']}") from exc


# server frames


def format_at(at: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as in DESIGN.md (`…T12:00:05.120Z`)."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    # isoformat is several times faster than strftime, and this runs per frame
    return at.isoformat(timespec="milliseconds") + "Z"


def event_frame(event: Event, lang: str, eta: str | None = None) -> dict[str, Any]:
    """The `order.event` frame of DESIGN.md for one stored event.

    `eta` is the arrival the event announces (`ordercast.eta.trips`), or
    None once the order is final or when nothing predicts it.
    """
    return {
        "type": "order.event",
        "orderId": event.order_id,
        "seq": event.seq,
        "event": event.name,
        "status": event.status.value,
        "eventId": event.event_id,
        "at": format_at(event.at),
        "data": event.data,
        "message": message_for(event.name, event.data, lang),
        "eta": eta,
    }


def order_view(record: OrderRecord) -> dict[str, Any]:
    """The order as `GET /orders/{id}` and a command's answer show it."""
    state = record.state
    return {
        "orderId": state.order_id,
        "status": state.status.value,
        "seq": state.seq,
        "customerId": state.customer_id,
        "restaurantId": state.restaurant_id,
        "courierId": state.courier_id,
        "createdAt": format_at(record.created_at),
        "updatedAt": format_at(record.updated_at),
    }


def subscribed_frame(
    order_id: str,
    status: str,
    seq: int,
    eta: str | None = None,
    courier_position: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Answer to `subscribe`: a snapshot of the order before any event."""
    return {
        "type": "subscribed",
        "orderId": order_id,
        "snapshot": {
            "status": status,
            "seq": seq,
            "eta": eta,
            "courierPosition": courier_position,
        },
    }


def unsubscribed_frame(order_id: str, reason: str | None = None) -> dict[str, Any]:
    """Answer to `unsubscribe`; with a `reason` when the server ended it."""
    frame: dict[str, Any] = {"type": "unsubscribed", "orderId": order_id}
    if reason is not None:
        frame["reason"] = reason
    return frame


def pong_frame() -> dict[str, Any]:
    return {"type": "pong"}


def encode(frame: dict[str, Any]) -> str:
    """Serialise a server frame to the text sent on the socket."""
    return orjson.dumps(frame).decode()
