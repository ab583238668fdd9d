"""Getting events to connections through API Gateway's Management API.

The frames are the embedded runtime's: `event_frame` and `encode` from
`ordercast.wire.frames`, encoded once per language per event. The promise is
the embedded runtime's too: a subscription gets every event after the seq it
asked for, once and in seq order, then live events. Where the embedded hub
keeps `last_seq` in memory, here it sits on the subscription item, moved under
a lease (see `ordercast.aws.connections`), so concurrent Lambdas cannot post
one event twice or two events out of order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ordercast.aws.connections import (
    CONNECTION_LIMIT_S,
    LEASE_S,
    ConnectionInfo,
    Connections,
    Follower,
)
from ordercast.aws.etas import EventEtas
from ordercast.aws.store import DynamoStore
from ordercast.errors import ConnectionGone, FrameError, OrderNotFound
from ordercast.lifecycle import Event
from ordercast.wire.frames import ALL_ORDERS, encode, event_frame, subscribed_frame

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

logger = logging.getLogger(__name__)

Post = Callable[[str, str], None]
"""Sends one text frame to one connection; raises ConnectionGone if it is gone."""

Clock = Callable[[], datetime]

INDEX_WAIT_S = 2.0
"""Longest a subscribe waits for the byOrder index to show its subscription."""


def management_post(client: ApiGatewayManagementApiClient) -> Post:
    """A `Post` on the Management API's `PostToConnection`."""

    def post(connection_id: str, text: str) -> None:
        """Raises: ConnectionGone on API Gateway's GoneException."""
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=text.encode())
        except client.exceptions.GoneException as exc:
            raise ConnectionGone(connection_id) from exc

    return post


def utc_now() -> datetime:
    """The fan-out's default clock."""
    return datetime.now(UTC)


@dataclass
class Report:
    """What one delivery did, for the logs and the tests."""

    posted: int = 0
    gone: list[str] = field(default_factory=list)
    stale: int = 0
    failed: list[str] = field(default_factory=list)
    """Connections a post failed on for another reason; the Lambda retries."""


class _Texts:
    """An event's frame, with the ETA it announces, encoded once per language."""

    def __init__(self, etas: EventEtas) -> None:
        self._etas = etas
        self._texts: dict[tuple[str, int, str], str] = {}

    def of(self, event: Event, lang: str) -> str:
        """The text of `event`'s frame in `lang`."""
        key = (event.order_id, event.seq, lang)
        if key not in self._texts:
            [eta] = self._etas.along(event.order_id, [event])
            self._texts[key] = encode(event_frame(event, lang, eta))
        return self._texts[key]


class Fanout:
    """Posts events to the connections that follow their order."""

    def __init__(
        self,
        store: DynamoStore,
        connections: Connections,
        post: Post,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.connections = connections
        self.post = post
        self.clock = clock

    # live events

    def deliver(self, event: Event, holder: str) -> Report:
        """Post `event` (and any event before it a follower missed) to followers."""
        report, texts = Report(), _Texts(EventEtas(self.store))
        followers = self._current(self.connections.followers(event.order_id), report)
        for follower in followers:
            self._advance(follower, event, holder, texts, report)
        specific = {f.connection_id for f in followers}
        for follower in self._current(self.connections.followers(ALL_ORDERS), report):
            # a connection that follows this order too already got it, in order
            if follower.connection_id not in specific:
                self._post(
                    follower.connection_id, texts.of(event, follower.lang), report
                )
        return report

    def broadcast(self, order_id: str, text: str) -> Report:
        """Post one frame to every follower of the order, live (courier location)."""
        report = Report()
        followers = self.connections.followers(order_id)
        followers += self.connections.followers(ALL_ORDERS)
        for connection_id in {
            f.connection_id for f in self._current(followers, report)
        }:
            self._post(connection_id, text, report)
        return report

    def _current(self, followers: list[Follower], report: Report) -> list[Follower]:
        """Followers whose connection API Gateway can still hold open.

        A connection older than the 2-hour limit is closed whatever it says;
        posting to it would only earn a GoneException. Its items expire.
        """
        oldest = self.clock() - timedelta(seconds=CONNECTION_LIMIT_S)
        current = [f for f in followers if f.connected_at > oldest]
        report.stale += len(followers) - len(current)
        return current

    def _advance(
        self,
        follower: Follower,
        event: Event,
        holder: str,
        texts: _Texts,
        report: Report,
    ) -> None:
        connection_id, order_id = follower.connection_id, follower.order_id
        last_seq = self.connections.acquire(
            connection_id, order_id, holder, wait_s=LEASE_S + 1
        )
        if last_seq is None:
            return  # unsubscribed meanwhile
        if event.seq <= last_seq:
            self.connections.release(connection_id, order_id, holder, last_seq)
            return
        if event.seq == last_seq + 1:
            pending = [event]
        else:
            logger.warning(
                "gap before seq %d; filling from the store",
                event.seq,
                extra={"order_id": order_id, "connection_id": connection_id},
            )
            pending = self.store.read_events(order_id, last_seq)
        for missed in pending:
            if not self._post(connection_id, texts.of(missed, follower.lang), report):
                break
            last_seq = missed.seq
        self._give_back(connection_id, order_id, holder, last_seq)

    def _give_back(
        self, connection_id: str, order_id: str, holder: str, last_seq: int
    ) -> None:
        if not self.connections.release(connection_id, order_id, holder, last_seq):
            logger.warning(
                "lease lost before seq %d was recorded",
                last_seq,
                extra={"order_id": order_id, "connection_id": connection_id},
            )

    def _post(self, connection_id: str, text: str, report: Report) -> bool:
        """Post one frame; False if the connection is gone or the post failed."""
        try:
            self.post(connection_id, text)
        except ConnectionGone:
            # GoneException: this connection, and only this one, is over
            self.connections.close(connection_id)
            report.gone.append(connection_id)
            logger.info("connection gone", extra={"connection_id": connection_id})
            return False
        except ClientError:
            logger.warning(
                "post failed", exc_info=True, extra={"connection_id": connection_id}
            )
            report.failed.append(connection_id)
            return False
        report.posted += 1
        return True

    # subscribing

    def subscribe(
        self, info: ConnectionInfo, order_id: str, since_seq: int | None, holder: str
    ) -> None:
        """Snapshot, the events after `since_seq`, then live events (DESIGN.md).

        The caller has checked that the connection may follow the order. As in
        the embedded hub, the subscription is registered before the store is
        read, so nothing recorded from then on is missed; it is leased to this
        call until the history is out, so live events wait behind it.

        Raises:
            OrderNotFound: no such order.
            FrameError: `since_seq` is past the order's last event.
            ConnectionGone: the connection closed while it was being served.
        """
        self.connections.subscribe(info, order_id, holder)
        record = self.store.get_order(order_id)
        if record is None:
            raise OrderNotFound(order_id)
        state = record.state
        if since_seq is not None and since_seq > state.seq:
            self.connections.unsubscribe(info.connection_id, order_id)
            raise FrameError(f"since {since_seq} is past the last seq {state.seq}")
        position = self.store.position(order_id)
        snapshot = subscribed_frame(
            order_id,
            state.status.value,
            state.seq,
            eta=EventEtas(self.store).now(order_id, position, self.clock()),
            courier_position=position,
        )
        self.post(info.connection_id, encode(snapshot))
        self._wait_until_indexed(order_id, info.connection_id)
        last_seq = state.seq if since_seq is None else since_seq
        texts = _Texts(EventEtas(self.store))
        while history := self.store.read_events(order_id, last_seq):
            for event in history:
                self.post(info.connection_id, texts.of(event, info.lang))
                last_seq = event.seq
        self._give_back(info.connection_id, order_id, holder, last_seq)

    def follow_everything(self, info: ConnectionInfo) -> None:
        """The all-orders subscription of ops and dispatch: live events only."""
        self.connections.subscribe(info, ALL_ORDERS, holder=None)
        frame: dict[str, Any] = {
            "type": "subscribed",
            "orderId": ALL_ORDERS,
            "snapshot": None,
        }
        self.post(info.connection_id, encode(frame))

    def _wait_until_indexed(self, order_id: str, connection_id: str) -> None:
        """Let the index catch up, so a notifier that runs after us finds us.

        The byOrder index is updated asynchronously (typically within a
        fraction of a second). Events recorded after this returns are
        delivered live; events before it are read from the store below.
        """
        deadline = time.monotonic() + INDEX_WAIT_S
        while not self.connections.is_indexed(order_id, connection_id):
            if time.monotonic() > deadline:
                logger.warning(
                    "index still lags; live events may wait for the next one",
                    extra={"order_id": order_id, "connection_id": connection_id},
                )
                return
            time.sleep(0.05)
