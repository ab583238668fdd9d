"""The HTTP API of DESIGN.md: orders, commands, events, and the Management API."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from ulid import ULID

from ordercast.auth import bearer_token
from ordercast.errors import Forbidden, Refusal
from ordercast.lifecycle import Actor, Command, Request as CommandRequest, Role
from ordercast.runtime import Runtime
from ordercast.store.base import Applied, OrderRecord, Submission
from ordercast.wire.frames import encode, event_frame, format_at
from ordercast.wire.messages import negotiate_language

ID_PATTERN = r"^[A-Za-z0-9._:~-]{1,128}$"

router = APIRouter()


# models


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CreateOrder(_Body):
    """Body of `POST /orders`."""

    order_id: str | None = Field(None, alias="orderId", pattern=ID_PATTERN)
    """Chosen by the caller, or generated when absent."""
    customer_id: str = Field(alias="customerId", pattern=ID_PATTERN)
    restaurant_id: str = Field(alias="restaurantId", pattern=ID_PATTERN)
    details: dict[str, Any] = Field(default_factory=dict, max_length=32)
    """Free-form data recorded with the `order.received` event."""


CommandName = Literal[
    "accept",
    "reject",
    "assign_courier",
    "pick_up",
    "start_delivery",
    "deliver",
    "cancel",
    "fail",
]


class CommandBody(_Body):
    """Body of `POST /orders/{orderId}/commands`."""

    command: CommandName
    courier_id: str | None = Field(None, alias="courierId", pattern=ID_PATTERN)
    reason: str | None = Field(None, max_length=200)


class OrderView(BaseModel):
    orderId: str
    status: str
    seq: int
    customerId: str
    restaurantId: str
    courierId: str | None
    createdAt: str
    updatedAt: str


class CommandResult(BaseModel):
    order: OrderView
    events: list[dict[str, Any]]
    """`order.event` frames, exactly as followers receive them."""


class EventsPage(BaseModel):
    orderId: str
    events: list[dict[str, Any]]


class ErrorBody(BaseModel):
    type: Literal["error"]
    code: str
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)
}


# dependencies


async def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


async def caller(
    rt: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Actor:
    """The actor named by the Bearer token. Raises: Unauthorized."""
    return rt.verifier.verify(bearer_token(authorization))


CallerDep = Annotated[Actor, Depends(caller)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]


async def language(accept_language: Annotated[str | None, Header()] = None) -> str:
    """Language of `message` fields: the best of Accept-Language we support."""
    return negotiate_language(None, accept_language)


LanguageDep = Annotated[str, Depends(language)]


# orders


@router.post("/orders", status_code=201, response_model=CommandResult, responses=ERRORS)
async def create_order(
    body: CreateOrder,
    rt: RuntimeDep,
    actor: CallerDep,
    response: Response,
    lang: LanguageDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any] | Response:
    """Create an order in status RECEIVED (ops only: the platform's backend)."""
    order_id = body.order_id or f"o-{ULID()}"
    request = CommandRequest(
        Command.CREATE,
        order_id,
        actor,
        customer_id=body.customer_id,
        restaurant_id=body.restaurant_id,
        details=body.details,
    )
    fingerprint_of = body.model_dump(by_alias=True) | {"orderId": body.order_id}
    return await _submit(rt, request, idempotency_key, fingerprint_of, response, lang)


@router.post(
    "/orders/{order_id}/commands", response_model=CommandResult, responses=ERRORS
)
async def apply_command(
    order_id: str,
    body: CommandBody,
    rt: RuntimeDep,
    actor: CallerDep,
    response: Response,
    lang: LanguageDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any] | Response:
    """Apply a command; 409 if it does not fit the order's status."""
    request = CommandRequest(
        Command(body.command),
        order_id,
        actor,
        courier_id=body.courier_id,
        reason=body.reason,
    )
    fingerprint_of = body.model_dump(by_alias=True) | {"orderId": order_id}
    return await _submit(rt, request, idempotency_key, fingerprint_of, response, lang)


@router.get("/orders/{order_id}", response_model=OrderView, responses=ERRORS)
async def get_order(order_id: str, rt: RuntimeDep, actor: CallerDep) -> dict[str, Any]:
    """The order's current status and seq."""
    await rt.hub.followable(actor, order_id)
    record = await rt.store.get_order(order_id)
    assert record is not None, "followable found it and orders are never deleted"
    return order_view(record)


@router.get("/orders/{order_id}/events", response_model=EventsPage, responses=ERRORS)
async def list_events(
    order_id: str,
    rt: RuntimeDep,
    actor: CallerDep,
    lang: LanguageDep,
    since: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> dict[str, Any]:
    """Events with seq > since, in seq order, as followers receive them."""
    await rt.hub.followable(actor, order_id)
    history = await rt.store.read_events(order_id, since, limit)
    return {"orderId": order_id, "events": [event_frame(e, lang) for e in history]}


async def _submit(
    rt: Runtime,
    request: CommandRequest,
    idempotency_key: str | None,
    fingerprint_of: dict[str, Any],
    response: Response,
    lang: str,
) -> dict[str, Any] | Response:
    canonical = orjson.dumps(
        [request.command.value, fingerprint_of], option=orjson.OPT_SORT_KEYS
    )
    submission = Submission(
        request.order_id,
        request=request,
        idempotency_key=idempotency_key,
        fingerprint=hashlib.sha256(canonical).hexdigest(),
    )
    outcome = await rt.engine.submit(submission)
    if not isinstance(outcome, Applied) and outcome.replayed:
        return Response(
            refusal_body(outcome.error),
            status_code=outcome.error.http_status,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    if not isinstance(outcome, Applied):
        raise outcome.error
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return {
        "order": order_view(outcome.order),
        "events": [event_frame(e, lang) for e in outcome.events],
    }


def order_view(record: OrderRecord) -> dict[str, Any]:
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


# courier location


class LocationBody(_Body):
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)


@router.post("/orders/{order_id}/location", status_code=202, responses=ERRORS)
async def report_location(
    order_id: str, body: LocationBody, rt: RuntimeDep, actor: CallerDep
) -> dict[str, Any]:
    """The assigned courier's latest position; followers get it at a bounded rate."""
    await rt.hub.authorize_location(actor, order_id)
    rt.hub.update_location(order_id, body.lat, body.lng)
    return {"orderId": order_id, "accepted": True}


# Management API, in API Gateway's shape


def _ops_only(actor: Actor) -> None:
    if actor.role is not Role.OPS:
        raise Forbidden("only ops may use the Management API")


@router.get("/@connections", responses=ERRORS)
async def list_connections(rt: RuntimeDep, actor: CallerDep) -> dict[str, Any]:
    """Open connections of this process, as `GET /@connections/{id}` shows each.

    Not part of API Gateway's API: it lets ops find a connection's id, which
    no client is told.
    """
    _ops_only(actor)
    open_now = [c for c in rt.hub.connections.values() if not c.closed]
    return {"connections": [connection.info() for connection in open_now]}


_ANY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "/@connections/{connection_id}",
    status_code=200,
    responses=ERRORS,
    openapi_extra=_ANY_BODY,
)
async def post_to_connection(
    connection_id: str, request: Request, rt: RuntimeDep, actor: CallerDep
) -> Response:
    """Send the body to one connection as a text frame; 410 if it is gone.

    The body is passed on as it is, whatever its Content-Type, like API
    Gateway's PostToConnection `Data`.
    """
    _ops_only(actor)
    data = await request.body()
    rt.hub.get(connection_id).push(data.decode("utf-8", errors="replace"))
    return Response(status_code=200)


@router.get("/@connections/{connection_id}", responses=ERRORS)
async def get_connection(
    connection_id: str, rt: RuntimeDep, actor: CallerDep
) -> dict[str, Any]:
    """When the connection opened, was last active, and who holds it."""
    _ops_only(actor)
    return rt.hub.get(connection_id).info()


@router.delete("/@connections/{connection_id}", status_code=204, responses=ERRORS)
async def delete_connection(
    connection_id: str, rt: RuntimeDep, actor: CallerDep
) -> Response:
    """Close the connection."""
    _ops_only(actor)
    await rt.hub.get(connection_id).close(1000, "closed by the Management API")
    return Response(status_code=204)


def refusal_body(refusal: Refusal) -> bytes:
    return encode(refusal.to_wire()).encode()
