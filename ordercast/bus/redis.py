"""The cluster runtime's bus: Redis pub/sub between the nodes.

Every node publishes the events it recorded on one channel and listens to
it, so each node hears every event (its connections may follow any order,
and ops follow them all). Redis delivers a channel's messages in the order
they were published, so the events one node recorded reach every node in seq
order; events of one order recorded by two nodes may cross, and the gateway
puts them back in order from the store.

A node hands its own events to its own handlers at once, then publishes them
for the others (and skips them when they come back from Redis), so its own
followers hear them before the command is answered and keep hearing them if
Redis is away.

Pub/sub keeps nothing: a node that is disconnected (Redis restarted, the
network broke) misses what was published meanwhile. The listener reconnects
by itself, and once it is subscribed again it calls the resume handlers,
which read what was missed from the store. Streams would have kept a backlog
for a short break, but not across a restart of a Redis without persistence,
so the store would be needed all the same; pub/sub costs less per event.

The latest courier position of each order is kept under a key of its own
(with a TTL) for the snapshots of any node, and announced on a second channel.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ordercast.bus.base import (
    CourierPosition,
    Handler,
    PositionHandler,
    ResumeHandler,
)
from ordercast.errors import BusError
from ordercast.lifecycle import Event, Status

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0
"""Longest wait for a TCP connection to Redis."""

COMMAND_TIMEOUT_S = 2.0
"""Longest wait for Redis to answer a command."""

START_TIMEOUT_S = 10.0
"""`start` fails if the first subscription takes longer than this."""

HEARTBEAT_S = 5.0
"""The listener pings Redis when it has heard nothing for this long."""

RECONNECT_PAUSES_S = (0.05, 0.1, 0.2, 0.5, 1.0)
"""Pauses between reconnection attempts; the last one repeats."""


class RedisBus:
    """`Bus` over Redis pub/sub, shared by every node of a cluster.

    Args:
        url: `redis://host:port/db` (or `rediss://` for TLS).
        prefix: put before every channel and key, so that several clusters
            (or test runs) can share one Redis.
        pool_size: connections for publishing and reading positions; the
            listener has one more of its own.
        position_ttl_s: how long an order's latest courier position is kept.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "ordercast:",
        pool_size: int = 8,
        position_ttl_s: float = 3600.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.position_ttl_s = position_ttl_s
        self.node_id = secrets.token_hex(8)
        """Marks what this node published, so it skips its own messages."""
        self._events_channel = f"{prefix}events"
        self._positions_channel = f"{prefix}positions"
        name = f"ordercast-{self.node_id}"
        self._commands = _client(url, pool_size, f"{name}-publish")
        self._listening = _client(url, 1, f"{name}-listen")
        self._handlers: list[Handler] = []
        self._position_handlers: list[PositionHandler] = []
        self._resume_handlers: list[ResumeHandler] = []
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        """Set while the listener is subscribed: Redis is there."""

    async def start(self) -> None:
        """Subscribe, and keep subscribed until `close`.

        Raises:
            BusError: Redis cannot be reached.
        """
        self._listener = asyncio.create_task(self._listen(), name="bus-listener")
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await self._subscribed.wait()
        except TimeoutError as exc:
            await self.close()
            raise BusError(f"cannot reach Redis at {self.url}") from exc

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
            self._listener = None
        await self._commands.aclose()
        await self._listening.aclose()

    async def ping(self) -> None:
        if not self._subscribed.is_set():
            raise BusError("not subscribed to Redis; reconnecting")
        try:
            await self._commands.ping()
        except (RedisError, OSError) as exc:
            raise BusError(f"Redis does not answer: {exc}") from exc

    # events

    async def publish(self, events: Sequence[Event]) -> None:
        await _call_each(self._handlers, events)
        body = {"node": self.node_id, "events": [_event_json(e) for e in events]}
        await self._send("events not announced", self._events_channel, body)

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def on_resume(self, handler: ResumeHandler) -> None:
        self._resume_handlers.append(handler)

    # courier positions

    async def publish_position(self, position: CourierPosition) -> None:
        await _call_each(self._position_handlers, position)
        body = {"node": self.node_id, "position": _position_json(position)}
        await self._send(
            "position not announced",
            self._positions_channel,
            body,
            keep=(self._position_key(position.order_id), position),
        )

    def subscribe_positions(self, handler: PositionHandler) -> None:
        self._position_handlers.append(handler)

    async def latest_position(self, order_id: str) -> CourierPosition | None:
        try:
            raw = await self._commands.get(self._position_key(order_id))
        except (RedisError, OSError) as exc:
            raise BusError(f"could not read a position: {exc}") from exc
        return None if raw is None else _position_of(orjson.loads(raw))

    def _position_key(self, order_id: str) -> str:
        return f"{self.prefix}position:{order_id}"

    # publishing

    async def _send(
        self,
        what: str,
        channel: str,
        body: dict[str, Any],
        keep: tuple[str, CourierPosition] | None = None,
    ) -> None:
        """PUBLISH (and SET, for a position) in one round trip.

        Raises:
            BusError: Redis did not take it.
        """
        if not self._subscribed.is_set():
            # the listener finds out when Redis is back; until then every
            # publish would wait for a connection attempt, and the engine
            # answers commands only once it has published
            raise BusError(f"{what}: Redis is away; reconnecting")
        try:
            async with self._commands.pipeline(transaction=False) as pipe:
                if keep is not None:
                    key, position = keep
                    pipe.set(
                        key,
                        orjson.dumps(_position_json(position)),
                        px=int(self.position_ttl_s * 1000),
                    )
                pipe.publish(channel, orjson.dumps(body))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BusError(f"{what}: {exc}") from exc

    # listening

    async def _listen(self) -> None:
        """Stay subscribed: reconnect after any failure, resume after any gap."""
        attempt = 0
        interrupted = False
        while True:
            pubsub = self._listening.pubsub()
            try:
                await pubsub.subscribe(self._events_channel, self._positions_channel)
                await self._confirmed(pubsub)
                attempt = 0
                self._subscribed.set()
                if interrupted:
                    logger.warning("bus listening again; catching up from the store")
                    interrupted = False
                    await _call_each(self._resume_handlers)
                await self._receive(pubsub)
            except (RedisError, OSError) as exc:
                if not interrupted:
                    logger.warning("bus connection lost (%s); reconnecting", exc)
                interrupted = True
                self._subscribed.clear()
            finally:
                await _quietly_close(pubsub)
            pause_s = RECONNECT_PAUSES_S[min(attempt, len(RECONNECT_PAUSES_S) - 1)]
            attempt += 1
            await asyncio.sleep(pause_s)

    async def _confirmed(self, pubsub: aioredis.client.PubSub) -> None:
        """Wait for Redis to confirm both subscriptions."""
        confirmations = 0
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            while confirmations < 2:
                message = await pubsub.get_message(timeout=COMMAND_TIMEOUT_S)
                if message is not None and message["type"] == "subscribe":
                    confirmations += 1

    async def _receive(self, pubsub: aioredis.client.PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=HEARTBEAT_S)
            if message is None or message["type"] != "message":
                continue
            try:
                body = orjson.loads(message["data"])
                if body.get("node") == self.node_id:
                    continue  # handed to this node's handlers when published
                events = [_event_of(e) for e in body.get("events", ())]
                position = body.get("position")
                position = None if position is None else _position_of(position)
            except (ValueError, KeyError, TypeError, AttributeError):
                # something else publishes on our channel: skip it, keep going
                logger.warning("bus message not understood; skipped", exc_info=True)
                continue
            if events:
                await _call_each(self._handlers, events)
            if position is not None:
                await _call_each(self._position_handlers, position)


def _client(url: str, connections: int, name: str) -> aioredis.Redis:
    # no retries inside redis-py: the listener must see every disconnection
    # (it resumes from the store after one), and a publisher must fail fast
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=connections,
        timeout=COMMAND_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        health_check_interval=HEARTBEAT_S,
        retry=Retry(NoBackoff(), 0),
        client_name=name,  # CLIENT LIST shows which node holds a connection
    )
    return aioredis.Redis.from_pool(pool)


async def _quietly_close(pubsub: aioredis.client.PubSub) -> None:
    try:
        await pubsub.aclose()
    except (RedisError, OSError):
        pass


async def _call_each(handlers: Sequence[Any], *args: Any) -> None:
    for handler in handlers:
        try:
            await handler(*args)
        except Exception:
            # one broken handler must not stop the others from hearing
            logger.exception("bus handler %r failed", handler)


# messages


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "orderId": event.order_id,
        "seq": event.seq,
        "eventId": event.event_id,
        "event": event.name,
        "status": event.status.value,
        "at": event.at.isoformat(),
        "data": event.data,
    }


def _event_of(body: dict[str, Any]) -> Event:
    return Event(
        body["orderId"],
        body["seq"],
        body["eventId"],
        body["event"],
        Status(body["status"]),
        datetime.fromisoformat(body["at"]),
        body["data"],
    )


def _position_json(position: CourierPosition) -> dict[str, Any]:
    return {"orderId": position.order_id, **position.fields()}


def _position_of(body: dict[str, Any]) -> CourierPosition:
    return CourierPosition(body["orderId"], body["lat"], body["lng"], body["at"])
