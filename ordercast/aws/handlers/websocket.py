"""The WebSocket API: `$connect` and its authoriser, `$disconnect`, and the
message routes (`subscribe`, `unsubscribe`, `ping`, `location`, `$default`).

API Gateway routes on `$request.body.action`, as the embedded gateway reads
frames; `$default` catches frames with no known action, which get the same
error frames as on the embedded runtime.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ordercast.aws.connections import ConnectionInfo
from ordercast.aws.handlers.common import followable, report_location
from ordercast.aws.handlers.logs import REQUEST_ID, configure, logger
from ordercast.aws.runtime import Services, services
from ordercast.errors import (
    ConnectionGone,
    Forbidden,
    FrameError,
    Refusal,
    internal_error_frame,
)
from ordercast.lifecycle import Actor, Role
from ordercast.wire.frames import (
    ALL_ORDERS,
    ClientFrame,
    Location,
    Ping,
    Subscribe,
    Unsubscribe,
    encode,
    parse_client_frame,
    pong_frame,
    unsubscribed_frame,
)
from ordercast.wire.messages import negotiate_language

configure()

SUBPROTOCOL = "ordercast"
"""The embedded gateway's subprotocol (`ordercast.gateway.websocket`), restated
so a cold start does not import Starlette; a test holds them equal."""

Event = dict[str, Any]
OK = {"statusCode": 200}


# $connect


@logger.inject_lambda_context(correlation_id_path=REQUEST_ID)
def authorize(event: Event, context: LambdaContext) -> dict[str, Any]:
    """REQUEST authoriser of `$connect`: the token of `ordercast.auth`, or 403."""
    try:
        actor = services().verifier.verify(_token_of(event))
    except Refusal as refusal:
        logger.info("connection refused: %s", refusal)
        return _policy("anonymous", "Deny", event["methodArn"], {})
    context_fields = {"role": actor.role.value, "subject": actor.subject}
    return _policy(actor.subject, "Allow", event["methodArn"], context_fields)


def _token_of(event: Event) -> str | None:
    """The token of `?token=`, or of a `bearer.<token>` subprotocol entry."""
    for entry in _subprotocols(event):
        if entry.startswith("bearer."):
            return entry.removeprefix("bearer.")
    return (event.get("queryStringParameters") or {}).get("token")


def _subprotocols(event: Event) -> list[str]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    offered = headers.get("sec-websocket-protocol", "")
    return [entry.strip() for entry in offered.split(",") if entry.strip()]


def _policy(
    principal: str, effect: str, resource: str, fields: dict[str, str]
) -> dict[str, Any]:
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
    return {
        "principalId": principal,
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
        "context": fields,
    }


@logger.inject_lambda_context(correlation_id_path=REQUEST_ID)
def connect(event: Event, context: LambdaContext) -> dict[str, Any]:
    """Record the connection the authoriser let in, with its language."""
    request = event["requestContext"]
    granted = request["authorizer"]
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    lang = negotiate_language(
        (event.get("queryStringParameters") or {}).get("lang"),
        headers.get("accept-language"),
    )
    info = ConnectionInfo(
        request["connectionId"],
        Actor(Role(granted["role"]), granted["subject"]),
        lang,
        datetime.now(UTC),
    )
    services().connections.open(info)
    logger.info("connection opened", extra={"connection_id": info.connection_id})
    if SUBPROTOCOL in _subprotocols(event):
        return {**OK, "headers": {"Sec-WebSocket-Protocol": SUBPROTOCOL}}
    return OK


@logger.inject_lambda_context(correlation_id_path=REQUEST_ID)
def disconnect(event: Event, context: LambdaContext) -> dict[str, Any]:
    """Forget the connection and its subscriptions."""
    connection_id = event["requestContext"]["connectionId"]
    services().connections.close(connection_id)
    logger.info("connection closed", extra={"connection_id": connection_id})
    return OK


# messages


@logger.inject_lambda_context(correlation_id_path=REQUEST_ID)
def message(event: Event, context: LambdaContext) -> dict[str, Any]:
    """Every frame a client sends; answers go out through the Management API."""
    svc = services()
    connection_id = event["requestContext"]["connectionId"]
    info = svc.connections.get(connection_id)
    if info is None:
        logger.warning("frame on an unknown connection", extra=_at(connection_id))
        return OK
    try:
        try:
            if event.get("isBase64Encoded"):
                raise FrameError("binary frames are not read; send JSON as text")
            frame = parse_client_frame(event.get("body") or "")
            _handle(svc, info, frame, context.aws_request_id)
        except Refusal as refusal:
            logger.debug("! %s", refusal.code, extra=_at(connection_id))
            svc.fanout.post(connection_id, encode(refusal.to_wire()))
        except Exception:
            # ours, or AWS failing under us: the client hears of it in the
            # protocol's shape, as the embedded gateway tells it
            logger.exception("frame failed", extra=_at(connection_id))
            svc.fanout.post(connection_id, encode(internal_error_frame()))
    except ConnectionGone:
        svc.connections.close(connection_id)
        logger.info("connection gone", extra=_at(connection_id))
    return OK


def _handle(
    svc: Services, info: ConnectionInfo, frame: ClientFrame, holder: str
) -> None:
    post = svc.fanout.post
    if isinstance(frame, Ping):
        post(info.connection_id, encode(pong_frame()))
    elif isinstance(frame, Subscribe):
        _subscribe(svc, info, frame, holder)
    elif isinstance(frame, Unsubscribe):
        svc.connections.unsubscribe(info.connection_id, frame.order_id)
        post(info.connection_id, encode(unsubscribed_frame(frame.order_id)))
    elif isinstance(frame, Location):
        report_location(svc, info.actor, frame.order_id, frame.lat, frame.lng)


def _subscribe(
    svc: Services, info: ConnectionInfo, frame: Subscribe, holder: str
) -> None:
    if frame.order_id == ALL_ORDERS:
        if info.actor.role not in (Role.OPS, Role.DISPATCH):
            raise Forbidden("only ops and dispatch may follow every order")
        if frame.since is not None:
            raise FrameError("since cannot be used when following every order")
        svc.fanout.follow_everything(info)
        return
    followable(svc, info.actor, frame.order_id)
    svc.fanout.subscribe(info, frame.order_id, frame.since, holder)


def _at(connection_id: str) -> dict[str, str]:
    return {"connection_id": connection_id}
