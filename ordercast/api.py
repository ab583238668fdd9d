"""The HTTP API of DESIGN.md: orders, commands, events, and the Management API."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from ulid import ULID

from ordercast.auth import bearer_token
from ordercast.errors import Forbidden, InvalidRequest, Refusal
from ordercast.lifecycle import (
    Actor,
    Command,
    Event,
    Request as CommandRequest,
    Role,
)
from ordercast.runtime import Runtime
from ordercast.store.base import Applied, Submission
from ordercast.wire.bodies import CommandBody, CreateOrder, LocationBody
from ordercast.wire.frames import MAX_SEQ, encode, event_frame, order_view
from ordercast.wire.messages import negotiate_language

router = APIRouter()


# models


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


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of a route's refusals: 401, 403 and 422, which any
    route may answer, and `statuses`."""
    return {code: {"model": ErrorBody} for code in sorted({401, 403, 422, *statuses})}


WRITE_ERRORS = (413, 503)
"""What any route with a body may also answer: too large, or not recorded."""


# who is calling


@dataclass(frozen=True)
class Call:
    """The runtime serving a request, who sent it, and in which language.

    Endpoints read these headers themselves instead of through FastAPI
    dependencies: resolving one dependency per header cost more CPU per
    command than recording it (`bench/fanout.py`, a command's HTTP round trip).
    """

    runtime: Runtime
    actor: Actor
    lang: str


def call_of(request: Request) -> Call:
    """Raises: Unauthorized without a valid Bearer token."""
    rt: Runtime = request.app.state.runtime
    headers = request.headers
    actor = rt.verifier.verify(bearer_token(headers.get("authorization")))
    lang = negotiate_language(
        request.query_params.get("lang"), headers.get("accept-language")
    )
    return Call(rt, actor, lang)


def idempotency_key_of(request: Request) -> str | None:
    """Raises: InvalidRequest for an empty key or one over 255 characters."""
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )
    return key


MAX_IDEMPOTENCY_KEY = 255

_COMMAND_HEADERS = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Apply the command once; a repeat replays the answer.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        },
        {
            "name": "Accept-Language",
            "in": "header",
            "required": False,
            "description": "Language of the `message` of each event.",
            "schema": {"type": "string"},
        },
        {
            "name": "lang",
            "in": "query",
            "required": False,
            "description": "Language of the `message` of each event, over "
            "Accept-Language (en, zh-Hans, es, pt).",
            "schema": {"type": "string"},
        },
    ]
}


# orders


@router.post(
    "/orders",
    status_code=201,
    response_model=CommandResult,
    responses=errors(409, *WRITE_ERRORS),
    openapi_extra=_COMMAND_HEADERS,
)
async def create_order(body: CreateOrder, request: Request) -> Response:
    """Create an order in status RECEIVED (ops only: the platform's backend)."""
    call = call_of(request)
    order_id = body.order_id or f"o-{ULID()}"
    command = CommandRequest(
        Command.CREATE,
        order_id,
        call.actor,
        customer_id=body.customer_id,
        restaurant_id=body.restaurant_id,
        details=body.details,
    )
    fingerprint_of = body.model_dump(by_alias=True) | {"orderId": body.order_id}
    key = idempotency_key_of(request)
    return await _submit(call, command, key, fingerprint_of, status_code=201)


@router.post(
    "/orders/{order_id}/commands",
    response_model=CommandResult,
    responses=errors(404, 409, *WRITE_ERRORS),
    openapi_extra=_COMMAND_HEADERS,
)
async def apply_command(order_id: str, body: CommandBody, request: Request) -> Response:
    """Apply a command; 409 if it does not fit the order's status."""
    call = call_of(request)
    command = CommandRequest(
        Command(body.command),
        order_id,
        call.actor,
        courier_id=body.courier_id,
        reason=body.reason,
    )
    fingerprint_of = body.model_dump(by_alias=True) | {"orderId": order_id}
    key = idempotency_key_of(request)
    return await _submit(call, command, key, fingerprint_of, status_code=200)


@router.get("/orders/{order_id}", response_model=OrderView, responses=errors(404))
async def get_order(order_id: str, request: Request) -> dict[str, Any]:
    """The order's current status and seq."""
    call = call_of(request)
    await call.runtime.hub.followable(call.actor, order_id)
    record = await call.runtime.store.get_order(order_id)
    assert record is not None, "followable found it and orders are never deleted"
    return order_view(record)


@router.get(
    "/orders/{order_id}/events", response_model=EventsPage, responses=errors(404)
)
async def list_events(
    order_id: str,
    request: Request,
    since: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> dict[str, Any]:
    """Events with seq > since, in seq order, as followers receive them."""
    call = call_of(request)
    await call.runtime.hub.followable(call.actor, order_id)
    history = await call.runtime.store.read_events(order_id, since, limit)
    return {"orderId": order_id, "events": await _frames(call, history)}


async def _submit(
    call: Call,
    command: CommandRequest,
    idempotency_key: str | None,
    fingerprint_of: dict[str, Any],
    status_code: int,
) -> Response:
    """Apply the command through the engine and answer as `CommandResult`.

    The body is encoded here, once, rather than validated again against the
    response model on its way out.
    """
    canonical = orjson.dumps(
        [command.command.value, fingerprint_of], option=orjson.OPT_SORT_KEYS
    )
    submission = Submission(
        command.order_id,
        request=command,
        idempotency_key=idempotency_key,
        fingerprint=hashlib.sha256(canonical).hexdigest(),
    )
    outcome = await call.runtime.engine.submit(submission)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    if isinstance(outcome, Applied):
        answer = {
            "order": order_view(outcome.order),
            "events": await _frames(call, outcome.events),
        }
        body, status_code = orjson.dumps(answer), status_code
    else:
        body, status_code = refusal_body(outcome.error), outcome.error.http_status
    return Response(body, status_code, headers, media_type="application/json")


async def _frames(call: Call, events: Sequence[Event]) -> list[dict[str, Any]]:
    """`order.event` frames of consecutive events, as followers receive them."""
    if not events:
        return []
    etas = await call.runtime.hub.eta.etas(events[0].order_id, events)
    return [
        event_frame(event, call.lang, eta)
        for event, eta in zip(events, etas, strict=True)
    ]


# courier location


@router.post(
    "/orders/{order_id}/location", status_code=202, responses=errors(404, 409, 413)
)
async def report_location(
    order_id: str, body: LocationBody, request: Request
) -> dict[str, Any]:
    """The assigned courier's latest position; followers get it at a bounded rate."""
    call = call_of(request)
    await call.runtime.hub.authorize_location(call.actor, order_id)
    await call.runtime.hub.report_location(order_id, body.lat, body.lng)
    return {"orderId": order_id, "accepted": True}


# Management API, in API Gateway's shape


def _ops_only(request: Request) -> Runtime:
    """The runtime, if the caller is ops. Raises: Unauthorized, Forbidden."""
    call = call_of(request)
    if call.actor.role is not Role.OPS:
        raise Forbidden("only ops may use the Management API")
    return call.runtime


@router.get("/@connections", responses=errors())
async def list_connections(request: Request) -> dict[str, Any]:
    """Open connections of this process, as `GET /@connections/{id}` shows each.

    Not part of API Gateway's API: it lets ops find a connection's id, which
    no client is told.
    """
    rt = _ops_only(request)
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
    responses=errors(410, 413),
    openapi_extra=_ANY_BODY,
)
async def post_to_connection(connection_id: str, request: Request) -> Response:
    """Send the body to one connection as a text frame; 410 if it is gone.

    The body is passed on as it is, whatever its Content-Type, like API
    Gateway's PostToConnection `Data`.
    """
    rt = _ops_only(request)
    data = await request.body()
    rt.hub.get(connection_id).push(data.decode("utf-8", errors="replace"))
    return Response(status_code=200)


@router.get("/@connections/{connection_id}", responses=errors(410))
async def get_connection(connection_id: str, request: Request) -> dict[str, Any]:
    """When the connection opened, was last active, and who holds it."""
    return _ops_only(request).hub.get(connection_id).info()


@router.delete("/@connections/{connection_id}", status_code=204, responses=errors(410))
async def delete_connection(connection_id: str, request: Request) -> Response:
    """Close the connection."""
    await (
        _ops_only(request)
        .hub.get(connection_id)
        .close(1000, "closed by the Management API")
    )
    return Response(status_code=204)


def refusal_body(refusal: Refusal) -> bytes:
    return encode(refusal.to_wire()).encode()
