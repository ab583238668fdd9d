"""The HTTP API of DESIGN.md on API Gateway's HTTP API: orders and commands.

The bodies, answers, error codes and idempotency rules are the embedded
runtime's (`ordercast.api`); the body models are restated here so that a
cold start does not import FastAPI, and a test holds the two to the same
schema. A recorded command resumes the order's execution; the execution
announces the event and the notifier posts it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ValidationError
from ulid import ULID

from ordercast.auth import bearer_token
from ordercast.aws.etas import EventEtas
from ordercast.aws.handlers.common import followable, report_location
from ordercast.aws.handlers.logs import REQUEST_ID, configure, logger
from ordercast.aws.runtime import Services, services
from ordercast.errors import (
    InvalidRequest,
    Refusal,
    StoreError,
    internal_error_frame,
    store_unavailable_frame,
)
from ordercast.lifecycle import Actor, Command, Event, Request
from ordercast.store.base import Applied, Submission
from ordercast.wire.bodies import (
    CommandBody,
    CreateOrder,
    LocationBody,
    describe_error,
)
from ordercast.wire.frames import event_frame, order_view
from ordercast.wire.messages import negotiate_language

configure()


app = APIGatewayHttpResolver()
_Model = TypeVar("_Model", bound=BaseModel)


# routes


@app.post("/orders")
def create_order() -> Response[str]:
    """Create an order in status RECEIVED (ops only) and start its execution."""
    body = _parse(CreateOrder)
    order_id = body.order_id or f"o-{ULID()}"
    request = Request(
        Command.CREATE,
        order_id,
        _caller(),
        customer_id=body.customer_id,
        restaurant_id=body.restaurant_id,
        details=body.details,
    )
    fingerprint_of = body.model_dump(by_alias=True) | {"orderId": body.order_id}
    return _submit(request, fingerprint_of, created=True)


@app.post("/orders/<order_id>/commands")
def apply_command(order_id: str) -> Response[str]:
    """Apply a command; 409 if it does not fit the order's status."""
    body = _parse(CommandBody)
    request = Request(
        Command(body.command),
        order_id,
        _caller(),
        courier_id=body.courier_id,
        reason=body.reason,
    )
    fingerprint_of = body.model_dump(by_alias=True) | {"orderId": order_id}
    return _submit(request, fingerprint_of, created=False)


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> Response[str]:
    """The order's current status and seq."""
    record = followable(services(), _caller(), order_id)
    return _json(200, order_view(record))


@app.get("/orders/<order_id>/events")
def list_events(order_id: str) -> Response[str]:
    """Events with seq > since, in seq order, as followers receive them."""
    followable(services(), _caller(), order_id)
    since = _int_query("since", 0, minimum=0)
    limit = _int_query("limit", 1000, minimum=1, maximum=1000)
    history = services().store.read_events(order_id, since, limit)
    return _json(200, {"orderId": order_id, "events": _frames(history)})


@app.post("/orders/<order_id>/location")
def post_location(order_id: str) -> Response[str]:
    """The assigned courier's latest position."""
    body = _parse(LocationBody)
    report_location(services(), _caller(), order_id, body.lat, body.lng)
    return _json(202, {"orderId": order_id, "accepted": True})


# the unit of work


def _submit(
    request: Request, fingerprint_of: dict[str, Any], created: bool
) -> Response[str]:
    svc = services()
    canonical = orjson.dumps(
        [request.command.value, fingerprint_of], option=orjson.OPT_SORT_KEYS
    )
    submission = Submission(
        request.order_id,
        request=request,
        idempotency_key=_idempotency_key(),
        fingerprint=hashlib.sha256(canonical).hexdigest(),
    )
    outcome = svc.store.apply(submission, datetime.now(UTC), svc.settings.timeouts)
    replayed = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    if not isinstance(outcome, Applied):
        return _json(
            outcome.error.http_status, outcome.error.to_wire(), headers=replayed
        )
    _drive(svc, outcome, created)
    body = {
        "order": order_view(outcome.order),
        "events": _frames(outcome.events),
    }
    return _json(201 if created else 200, body, headers=replayed)


def _frames(events: Sequence[Event]) -> list[dict[str, Any]]:
    """`order.event` frames of consecutive events, as followers receive them."""
    if not events:
        return []
    lang = _language()
    etas = EventEtas(services().store).along(events[0].order_id, events)
    return [event_frame(e, lang, eta) for e, eta in zip(events, etas, strict=True)]


def _drive(svc: Services, applied: Applied, created: bool) -> None:
    """Start or resume the order's execution.

    Also on a replay: if a first attempt stopped between recording and
    resuming, the retry (same idempotency key) finishes the job.
    """
    try:
        if created:
            svc.workflow.start(applied)
        elif applied.events:
            svc.workflow.resume(svc.store, applied)
    except ClientError as exc:
        raise NotDriven("the order's execution could not be started") from exc


class NotDriven(StoreError):
    """The command is recorded, but its execution was not started or resumed."""


# request pieces


def _caller() -> Actor:
    """The actor of the Bearer token. Raises: Unauthorized."""
    authorization = app.current_event.headers.get("authorization")
    return services().verifier.verify(bearer_token(authorization))


def _idempotency_key() -> str | None:
    key = app.current_event.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest("header.Idempotency-Key: must be 1 to 255 characters")
    return key


def _language() -> str:
    """Language of `message` fields: `lang` in the query, else Accept-Language."""
    event = app.current_event
    return negotiate_language(
        event.get_query_string_value("lang"), event.headers.get("accept-language")
    )


def _int_query(
    name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    raw = app.current_event.get_query_string_value(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"query.{name}: must be an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise InvalidRequest(f"query.{name}: out of range")
    return value


def _parse(model: type[_Model]) -> _Model:
    raw = app.current_event.decoded_body or ""
    try:
        return model.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError:
        raise InvalidRequest("JSON decode error") from None
    except ValidationError as exc:
        raise InvalidRequest(
            "; ".join(describe_error(dict(e)) for e in exc.errors())
        ) from exc


# errors and answers


@app.exception_handler(Refusal)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def _refused(refusal: Refusal) -> Response[str]:
    return _json(refusal.http_status, refusal.to_wire())


@app.exception_handler(StoreError)  # type: ignore[untyped-decorator]  # as above
def _store_failed(error: StoreError) -> Response[str]:
    logger.exception("store failed")
    return _json(503, store_unavailable_frame(recorded=isinstance(error, NotDriven)))


@app.exception_handler(ServiceError)  # type: ignore[untyped-decorator]  # as above
def _not_served(error: ServiceError) -> Response[str]:
    # Powertools' own refusals: no such route (404), or a method it lacks
    code = "not_found" if error.status_code == 404 else "invalid_request"
    body = {"type": "error", "code": code, "message": str(error.msg)}
    return _json(error.status_code, body)


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]  # as above
def _failed(error: Exception) -> Response[str]:
    logger.exception("request failed")
    return _json(500, internal_error_frame())


def _json(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=orjson.dumps(body).decode(),
        headers=headers or {},
    )


@logger.inject_lambda_context(correlation_id_path=REQUEST_ID)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point of the HTTP API function."""
    return app.resolve(event, context)
