"""The hub: which connection follows which order, and getting events to them.

Subscribing registers the subscription first and reads the store second, so an
event announced while history is being read is held back, not lost, and sent
after the history in seq order.

A subscription can also fall behind without noticing: an event announced on
a bus that dropped it, by a node that died before announcing, or while this
node was cut off from the bus. `catch_up` compares each subscription with
the order's seq in the store and sends what is missing, from the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ordercast.bus.base import Bus, CourierPosition
from ordercast.errors import (
    BusError,
    ConnectionGone,
    Forbidden,
    FrameError,
    OrderNotFound,
    StoreError,
)
from ordercast.eta.tracker import EtaTracker
from ordercast.gateway.connections import CLOSE_RESUME, Connection, Subscription
from ordercast.gateway.every_order import EveryOrder
from ordercast.lifecycle import Actor, Event, OrderState, Role, may_follow
from ordercast.lifecycle.transitions import check_location
from ordercast.store.base import Store
from ordercast.wire.frames import (
    ALL_ORDERS,
    encode,
    event_frame,
    format_at,
    subscribed_frame,
    unsubscribed_frame,
)

logger = logging.getLogger(__name__)


class Hub:
    """Open connections of this process and their subscriptions."""

    def __init__(
        self,
        store: Store,
        location_interval_s: float = 1.0,
        eta: EtaTracker | None = None,
        bus: Bus | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        """Where courier positions are announced to every node, if set."""
        self.location_interval_s = location_interval_s
        self.eta = eta or EtaTracker(store)
        """ETAs of events, snapshots and `courier.location` frames."""
        self.connections: dict[str, Connection] = {}
        self._followers: dict[str, set[Connection]] = defaultdict(set)
        self.every_order = EveryOrder(store, self.eta)
        """Connections of ops or dispatch that follow every order, live."""
        self._positions: dict[str, dict[str, Any]] = {}
        self._location_sent_at: dict[str, float] = {}
        self._location_pending: set[str] = set()

    @property
    def everything(self) -> set[Connection]:
        """Connections that follow every order."""
        return self.every_order.connections

    # connections

    def add(self, connection: Connection) -> None:
        self.connections[connection.connection_id] = connection

    def remove(self, connection: Connection) -> None:
        connection.closed = True
        self.connections.pop(connection.connection_id, None)
        self.every_order.discard(connection)
        for order_id, subscription in connection.subscriptions.items():
            subscription.active = False
            self._unfollow(order_id, connection)

    def get(self, connection_id: str) -> Connection:
        """Raises: ConnectionGone if no such connection is open here."""
        connection = self.connections.get(connection_id)
        if connection is None or connection.closed:
            raise ConnectionGone(connection_id)
        return connection

    def followers(self, order_id: str) -> set[Connection]:
        return self._followers.get(order_id) or set()

    # subscriptions

    async def subscribe(
        self, connection: Connection, order_id: str, since_seq: int | None
    ) -> None:
        """Send a snapshot, the events after `since_seq`, then live events.

        Raises:
            OrderNotFound: no such order.
            Forbidden: the connection's actor may not follow it.
            FrameError: `since_seq` is past the order's last event, or given
                with the all-orders subscription.
        """
        if order_id == ALL_ORDERS:
            self._follow_everything(connection, since_seq)
            return
        state = await self.followable(connection.actor, order_id)
        if since_seq is not None and since_seq > state.seq:
            raise FrameError(f"since {since_seq} is past the last seq {state.seq}")

        # register before reading, so nothing announced from now on is missed
        previous = connection.subscriptions.get(order_id)
        if previous is not None:
            previous.active = False
        subscription = Subscription(order_id)
        connection.subscriptions[order_id] = subscription
        self._followers[order_id].add(connection)

        # the snapshot, then the history the client asked for
        try:
            snapshot = await self._snapshot(order_id)
        except StoreError:
            # nothing was sent: forget the subscription, the client may retry
            subscription.active = False
            connection.subscriptions.pop(order_id, None)
            self._unfollow(order_id, connection)
            raise
        connection.push(encode(snapshot))
        subscription.last_seq = snapshot["snapshot"]["seq"]
        if since_seq is not None:
            subscription.last_seq = since_seq
            await self._fill_gap(connection, subscription)
        else:
            await self._release(connection, subscription)

    async def _snapshot(self, order_id: str) -> dict[str, Any]:
        """The `subscribed` frame. Raises: StoreError."""
        record = await self.store.get_order(order_id)
        assert record is not None, "orders are never deleted"
        eta = await self.eta.current(order_id, record.state.seq)
        return subscribed_frame(
            order_id,
            record.state.status.value,
            record.state.seq,
            eta=eta,
            courier_position=await self._latest_position(order_id),
        )

    def unsubscribe(
        self, connection: Connection, order_id: str, reason: str | None = None
    ) -> None:
        """End a subscription and say so; `reason` when the server ends it."""
        subscription = connection.subscriptions.pop(order_id, None)
        if subscription is not None:
            subscription.active = False
            self._unfollow(order_id, connection)
        if order_id == ALL_ORDERS:
            connection.follows_all = False
            self.every_order.discard(connection)
        connection.push(encode(unsubscribed_frame(order_id, reason)))

    def drop_former_couriers(self, order_id: str, courier_id: str) -> None:
        """Unsubscribe couriers other than `courier_id` from the order.

        A courier may follow only the orders assigned to them (DESIGN.md);
        once an order is reassigned, the one taken off it hears the
        `courier.assigned` event, then `unsubscribed` with reason `reassigned`.
        """
        for connection in list(self.followers(order_id)):
            actor = connection.actor
            if actor.role is Role.COURIER and actor.subject != courier_id:
                self.unsubscribe(connection, order_id, reason="reassigned")

    async def followable(self, actor: Actor, order_id: str) -> OrderState:
        """The order, if `actor` may follow it.

        Raises:
            OrderNotFound: no such order.
            Forbidden: the actor may not follow it.
        """
        record = await self.store.get_order(order_id)
        if record is None:
            raise OrderNotFound(order_id)
        if not may_follow(actor, record.state):
            raise Forbidden(
                f"a {actor.role} may not follow order {order_id!r}", orderId=order_id
            )
        return record.state

    def _follow_everything(self, connection: Connection, since_seq: int | None) -> None:
        if connection.actor.role not in (Role.OPS, Role.DISPATCH):
            raise Forbidden("only ops and dispatch may follow every order")
        if since_seq is not None:
            raise FrameError("since cannot be used when following every order")
        connection.follows_all = True
        self.every_order.add(connection)
        connection.push(
            encode({"type": "subscribed", "orderId": ALL_ORDERS, "snapshot": None})
        )

    def _unfollow(self, order_id: str, connection: Connection) -> None:
        followers = self._followers.get(order_id)
        if followers is not None:
            followers.discard(connection)
            if not followers:
                del self._followers[order_id]

    # delivery

    def offer(
        self,
        connection: Connection,
        subscription: Subscription,
        event: Event,
        text: str,
    ) -> None:
        """Pass a live event to one subscription, at most once and in seq order."""
        if not subscription.active:
            return
        if subscription.catching_up:
            subscription.held.append(event)
            return
        if event.seq <= subscription.last_seq:
            return
        if event.seq == subscription.last_seq + 1:
            connection.push(text)
            subscription.last_seq = event.seq
            return
        logger.warning(
            "gap before seq %d; filling from the store",
            event.seq,
            extra={
                "order_id": event.order_id,
                "connection_id": connection.connection_id,
            },
        )
        subscription.catching_up = True
        subscription.held.append(event)
        asyncio.get_running_loop().create_task(self._fill_gap(connection, subscription))

    async def event_texts(self, events: Sequence[Event], lang: str) -> list[str]:
        """`order.event` frames of consecutive events of one order, encoded."""
        if not events:
            return []
        etas = await self.eta.etas(events[0].order_id, events)
        return [
            encode(event_frame(event, lang, eta))
            for event, eta in zip(events, etas, strict=True)
        ]

    async def _fill_gap(
        self, connection: Connection, subscription: Subscription
    ) -> None:
        try:
            await self._send_history(connection, subscription)
            await self._release(connection, subscription)
        except StoreError:
            # nothing else would ever release what is held: let the client
            # resume, from this node or another (docs/errors.md)
            logger.warning(
                "could not fill a gap from the store; client told to resume",
                extra={"connection_id": connection.connection_id},
            )
            await connection.close(CLOSE_RESUME, "events missed; resume with since")

    # catching up

    async def catch_up(self, patient: bool = True) -> int:
        """Send every subscription what it missed; return how many were behind.

        Reads the current seq of every followed order in one query. With
        `patient`, a subscription is filled only if it was already behind at
        the previous call by at least that much, so events still on their way
        over the bus are not read twice; without it, at once (after the bus
        was interrupted).

        Raises:
            StoreError: the store could not say; call again later.
        """
        followed = set(self._followers) | set(self.every_order.followed_orders())
        seqs = await self.store.order_seqs(list(followed))
        lagging = self.every_order.behind(seqs, patient)
        for order_id in lagging:
            self.every_order.fill(order_id)
        behind = len(lagging)
        for order_id, seq in seqs.items():
            for connection in list(self.followers(order_id)):
                subscription = connection.subscriptions.get(order_id)
                if subscription is None or not subscription.active:
                    continue
                if self._should_fill(subscription, seq, patient):
                    behind += 1
                    self._start_fill(connection, subscription)
        return behind

    def _should_fill(self, subscription: Subscription, seq: int, patient: bool) -> bool:
        if subscription.catching_up or subscription.last_seq >= seq:
            subscription.behind_at = None
            return False
        seen_behind_at = subscription.behind_at
        subscription.behind_at = seq
        if not patient:
            return True
        return seen_behind_at is not None and subscription.last_seq < seen_behind_at

    def _start_fill(self, connection: Connection, subscription: Subscription) -> None:
        logger.warning(
            "subscription behind the store; filling from it",
            extra={
                "order_id": subscription.order_id,
                "connection_id": connection.connection_id,
            },
        )
        subscription.behind_at = None
        subscription.catching_up = True
        asyncio.get_running_loop().create_task(self._fill_gap(connection, subscription))

    async def resume_everything(self) -> None:
        """Tell followers of every order that live events may have been lost.

        They have no seq to resume from on the server's side: the client
        reconnects, follows every order again and reloads what it shows.
        """
        for connection in list(self.everything):
            await connection.close(
                CLOSE_RESUME, "live events may have been missed; reload"
            )

    async def _send_history(
        self, connection: Connection, subscription: Subscription
    ) -> None:
        history = await self.store.read_events(
            subscription.order_id, subscription.last_seq
        )
        texts = await self.event_texts(history, connection.lang)
        for event, text in zip(history, texts, strict=True):
            if not subscription.active:
                return
            connection.push(text)
            subscription.last_seq = event.seq

    async def _release(
        self, connection: Connection, subscription: Subscription
    ) -> None:
        """End a catch-up: pass on what was held, in seq order."""
        while subscription.held and subscription.active:
            held = sorted(subscription.held, key=lambda e: e.seq)
            subscription.held = []
            for event in held:
                if event.seq > subscription.last_seq + 1:
                    # a gap: the store has this event and everything before it
                    await self._send_history(connection, subscription)
                if event.seq == subscription.last_seq + 1:
                    [text] = await self.event_texts([event], connection.lang)
                    connection.push(text)
                    subscription.last_seq = event.seq
        subscription.catching_up = False

    # courier location

    async def authorize_location(self, actor: Actor, order_id: str) -> None:
        """Raises: OrderNotFound, Forbidden or InvalidTransition (`check_location`)."""
        check_location(actor, await self.followable(actor, order_id))

    async def report_location(self, order_id: str, lat: float, lng: float) -> None:
        """Take a courier's position and announce it to the followers of every node.

        Positions are a lossy stream (DESIGN.md: the latest is kept, not every
        fix): if the bus cannot take this one, this node's followers still
        get it and the others get the courier's next one.
        """
        position = CourierPosition(order_id, lat, lng, format_at(datetime.now(UTC)))
        if self.bus is None:
            await self.position_heard(position)
            return
        try:
            await self.bus.publish_position(position)
        except BusError as exc:
            logger.debug("! position not announced: %s", exc)

    async def position_heard(self, position: CourierPosition) -> None:
        """Bus handler: a courier position reported to this node or another."""
        self.update_location(position.order_id, position.fields())

    def update_location(self, order_id: str, position: dict[str, Any]) -> None:
        """Keep the latest position of an order's courier and tell followers.

        Followers get at most one `courier.location` frame per order every
        `location_interval_s`; a fix inside that window is sent when it ends,
        and only the latest one is.
        """
        self._positions[order_id] = position
        if order_id in self._location_pending:
            return
        wait_s = self._location_sent_at.get(order_id, 0.0) + self.location_interval_s
        wait_s -= time.monotonic()
        if wait_s <= 0:
            self._send_location(order_id)
            return
        self._location_pending.add(order_id)
        asyncio.get_running_loop().call_later(wait_s, self._send_location, order_id)

    def position(self, order_id: str) -> dict[str, Any] | None:
        return self._positions.get(order_id)

    def forget_position(self, order_id: str) -> None:
        """Drop what this node keeps of an order's courier position (it ended)."""
        self._positions.pop(order_id, None)
        self._location_sent_at.pop(order_id, None)

    async def _latest_position(self, order_id: str) -> dict[str, Any] | None:
        """The position this node heard last, or the one the bus kept."""
        known = self._positions.get(order_id)
        if known is not None or self.bus is None:
            return known
        try:
            kept = await self.bus.latest_position(order_id)
        except BusError:
            logger.warning("no courier position for a snapshot: the bus is away")
            return None
        return None if kept is None else kept.fields()

    def _send_location(self, order_id: str) -> None:
        self._location_pending.discard(order_id)
        self._location_sent_at[order_id] = time.monotonic()
        position = self._positions.get(order_id)
        if position is None:
            return
        frame = {"type": "courier.location", "orderId": order_id, **position}
        # the ETA follows the courier at the same bounded rate
        frame["eta"] = self.eta.at_position(order_id, position["lat"], position["lng"])
        text = encode(frame)
        for connection in self.followers(order_id) | self.everything:
            connection.push(text)
