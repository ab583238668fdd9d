"""The all-orders stream: what ops and dispatch see when they follow `*`.

Every connection following `*` on this node gets the same events, so one
cursor per order serves them all: the last seq passed on. As for a single
subscription, an event at or below it is a duplicate and is dropped, and an
event past the next one reveals a gap, which is filled from the store before
anything later of that order goes out. That covers an event another node
recorded and never announced (it died in between): the order's next event
shows the gap, and `behind` lets the catch-up find orders with no next event.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence

from ordercast.errors import StoreError
from ordercast.eta.tracker import EtaTracker
from ordercast.gateway.connections import Connection
from ordercast.lifecycle import Event
from ordercast.store.base import Store
from ordercast.wire.frames import encode, event_frame

logger = logging.getLogger(__name__)

MAX_ORDERS = 50_000
"""Orders whose cursor is kept; past this the least recently moved is dropped
(its next event then passes as the first one seen)."""


class EveryOrder:
    """Connections following every order, and one cursor per order for them."""

    def __init__(self, store: Store, eta: EtaTracker) -> None:
        self.store = store
        self.eta = eta
        self.connections: set[Connection] = set()
        self._last_seq: OrderedDict[str, int] = OrderedDict()
        self._filling: dict[str, list[Event]] = {}
        """Orders being filled from the store, with live events held meanwhile."""
        self._behind_at: dict[str, int] = {}

    def add(self, connection: Connection) -> None:
        self.connections.add(connection)

    def discard(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            # nobody to keep in order for: the next follower starts live
            self._last_seq.clear()
            self._behind_at.clear()

    async def offer(self, event: Event) -> None:
        """Pass a live event on, at most once and in seq order per order."""
        if not self.connections:
            return
        held = self._filling.get(event.order_id)
        if held is not None:
            held.append(event)
            return
        last = self._last_seq.get(event.order_id)
        if last is not None and event.seq <= last:
            return
        if last is None or event.seq == last + 1:
            await self._pass_on([event])
            return
        logger.warning(
            "gap before seq %d of every order; filling from the store",
            event.seq,
            extra={"order_id": event.order_id},
        )
        self._start_fill(event.order_id, [event])

    def behind(self, store_seqs: dict[str, int], patient: bool = True) -> list[str]:
        """Orders the store is ahead on; with `patient`, at the previous call too.

        A gap seen only once may be events still on their way over the bus.
        """
        lagging = []
        for order_id, seq in store_seqs.items():
            last = self._last_seq.get(order_id)
            if last is None or last >= seq or order_id in self._filling:
                self._behind_at.pop(order_id, None)
                continue
            seen = self._behind_at.get(order_id)
            self._behind_at[order_id] = seq
            if not patient or (seen is not None and last < seen):
                lagging.append(order_id)
        return lagging

    def followed_orders(self) -> list[str]:
        """Orders with a cursor, for the catch-up to compare with the store."""
        return list(self._last_seq)

    def fill(self, order_id: str) -> None:
        """Send what the store has past the cursor of `order_id`."""
        if order_id not in self._filling:
            self._behind_at.pop(order_id, None)
            self._start_fill(order_id, [])

    # passing on

    def _start_fill(self, order_id: str, held: list[Event]) -> None:
        self._filling[order_id] = held
        asyncio.get_running_loop().create_task(self._fill(order_id))

    async def _fill(self, order_id: str) -> None:
        try:
            while True:
                last = self._last_seq.get(order_id, 0)
                await self._pass_on(await self.store.read_events(order_id, last))
                held = sorted(self._filling[order_id], key=lambda e: e.seq)
                self._filling[order_id] = []
                last = self._last_seq.get(order_id, 0)
                if not held:
                    return
                if held[0].seq > last + 1:
                    continue  # another gap: the store has it by now
                await self._pass_on([e for e in held if e.seq > last])
        except StoreError:
            logger.warning(
                "could not fill every order's stream; the catch-up retries",
                extra={"order_id": order_id},
            )
        finally:
            self._filling.pop(order_id, None)

    async def _pass_on(self, events: Sequence[Event]) -> None:
        """Push consecutive events of one order to every connection, in order."""
        if not events:
            return
        order_id = events[0].order_id
        etas = await self.eta.etas(order_id, events)
        for event, eta in zip(events, etas, strict=True):
            if event.seq <= self._last_seq.get(order_id, 0):
                continue
            texts: dict[str, str] = {}
            for connection in self.connections:
                if order_id in connection.subscriptions:
                    continue  # its own subscription passes it on, in order
                if connection.lang not in texts:
                    frame = event_frame(event, connection.lang, eta)
                    texts[connection.lang] = encode(frame)
                connection.push(texts[connection.lang])
            self._move(order_id, event.seq)

    def _move(self, order_id: str, seq: int) -> None:
        self._last_seq[order_id] = seq
        self._last_seq.move_to_end(order_id)
        while len(self._last_seq) > MAX_ORDERS:
            self._last_seq.popitem(last=False)
