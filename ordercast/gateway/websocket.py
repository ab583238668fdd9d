"""The `/ws` endpoint: the WebSocket protocol of DESIGN.md on Starlette."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.websockets import WebSocket, WebSocketDisconnect

from ordercast.auth import TokenVerifier
from ordercast.errors import FrameError, Refusal, StoreError, internal_error_frame
from ordercast.gateway.connections import Connection
from ordercast.gateway.hub import Hub
from ordercast.wire.frames import (
    ClientFrame,
    Location,
    Ping,
    Subscribe,
    Unsubscribe,
    encode,
    parse_client_frame,
    pong_frame,
)
from ordercast.wire.messages import negotiate_language

logger = logging.getLogger(__name__)

SUBPROTOCOL = "ordercast"
"""Offered with a `bearer.<token>` entry by clients that cannot use `?token=`."""

CLOSE_UNAUTHORIZED = 4401

STORE_UNAVAILABLE = {
    "type": "error",
    "code": "store_unavailable",
    "message": "the store did not answer; send the frame again",
}


def token_from(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The token and the subprotocol to answer with.

    Browsers cannot set headers on a WebSocket, so the token comes as the
    `token` query parameter or as a `bearer.<token>` subprotocol entry.
    """
    offered = websocket.scope.get("subprotocols") or []
    answer = SUBPROTOCOL if SUBPROTOCOL in offered else None
    for entry in offered:
        if entry.startswith("bearer."):
            return entry.removeprefix("bearer."), answer
    return websocket.query_params.get("token"), answer


class WebSocketGateway:
    """Serves one WebSocket connection from handshake to close."""

    def __init__(
        self, hub: Hub, verifier: TokenVerifier, max_outbox_frames: int
    ) -> None:
        self.hub = hub
        self.verifier = verifier
        self.max_outbox_frames = max_outbox_frames

    async def serve(self, websocket: WebSocket) -> None:
        token, subprotocol = token_from(websocket)
        try:
            actor = self.verifier.verify(token)
        except Refusal as refusal:
            # Before accept, a close is a 403 to the handshake (API Gateway's
            # $connect authoriser answers the same way).
            logger.info("connection refused: %s", refusal)
            await websocket.close(CLOSE_UNAUTHORIZED, refusal.message)
            return
        await websocket.accept(subprotocol=subprotocol)
        lang = negotiate_language(
            websocket.query_params.get("lang"),
            websocket.headers.get("accept-language"),
        )
        connection = Connection(
            actor=actor,
            lang=lang,
            send_text=websocket.send_text,
            close_socket=websocket.close,
            connected_at=datetime.now(UTC),
            source_ip=websocket.client.host if websocket.client else "",
            max_outbox_frames=self.max_outbox_frames,
        )
        self.hub.add(connection)
        log = logging.LoggerAdapter(logger, {"connection_id": connection.connection_id})
        log.info("connection opened")
        try:
            await self._receive_loop(websocket, connection, log)
        finally:
            self.hub.remove(connection)
            log.info("connection closed")

    async def _receive_loop(
        self,
        websocket: WebSocket,
        connection: Connection,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        while True:
            try:
                message = await websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            connection.last_active_at = datetime.now(UTC)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("< %s", "(binary)" if raw is None else raw[:200])
            try:
                if raw is None:
                    # client frames are JSON text (DESIGN.md), as API Gateway
                    # routes them on `$request.body.action`
                    raise FrameError("binary frames are not read; send JSON as text")
                await self._handle(connection, parse_client_frame(raw))
            except Refusal as refusal:
                log.debug("! %s", refusal.code)
                connection.push(encode(refusal.to_wire()))
            except StoreError as exc:
                # the store may answer in a moment; the connection stays
                log.warning("store failed on a frame: %s", exc)
                connection.push(encode(STORE_UNAVAILABLE))
            except Exception:
                # our bug: answer this frame and keep serving the connection
                log.exception("failed on a frame")
                connection.push(encode(internal_error_frame()))

    async def _handle(self, connection: Connection, frame: ClientFrame) -> None:
        if isinstance(frame, Ping):
            connection.push(encode(pong_frame()))
        elif isinstance(frame, Subscribe):
            await self.hub.subscribe(connection, frame.order_id, frame.since)
        elif isinstance(frame, Unsubscribe):
            self.hub.unsubscribe(connection, frame.order_id)
        elif isinstance(frame, Location):
            await self.hub.authorize_location(connection.actor, frame.order_id)
            await self.hub.report_location(frame.order_id, frame.lat, frame.lng)
