"""The notifier: hears events on the bus and pushes them to followers.

On a bus between nodes it also makes sure nothing the bus lost stays lost:
after the bus was interrupted, and every `catch_up_interval_s` in case an
event was never announced (its node died between recording and announcing),
it has the hub compare each subscription with the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ordercast.errors import StoreError
from ordercast.gateway.hub import Hub
from ordercast.lifecycle import Event
from ordercast.wire.frames import encode, event_frame

logger = logging.getLogger(__name__)


class Notifier:
    """Turns each event into frames, once per language, and offers them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def resume(self) -> None:
        """Bus resume handler: fill every subscription from the store, now.

        Raises nothing: a store that fails here is asked again by the loop.
        """
        await self.hub.resume_everything()
        try:
            behind = await self.hub.catch_up(patient=False)
        except StoreError:
            logger.warning("could not catch up after the bus resumed", exc_info=True)
            return
        logger.info("caught up %d subscriptions after the bus resumed", behind)

    async def catch_up_loop(self, interval_s: float) -> None:
        """Every `interval_s`, fill subscriptions that stayed behind the store."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.hub.catch_up(patient=True)
            except StoreError:
                logger.warning("could not compare subscriptions with the store")

    async def handle(self, events: Sequence[Event]) -> None:
        """Bus handler: deliver events to this process's connections."""
        for event in events:
            try:
                await self._deliver(event)
            except Exception:
                # one event we cannot deliver must not hold back the rest of
                # the batch; its followers get it from the store with the next
                logger.exception(
                    "could not deliver an event",
                    extra={"order_id": event.order_id, "seq": event.seq},
                )

    async def _deliver(self, event: Event) -> None:
        if event.status.is_terminal:
            # nobody will be shown that courier again, on this order
            self.hub.forget_position(event.order_id)
        followers = self.hub.followers(event.order_id)
        everyone = self.hub.everything
        if not followers and not everyone:
            self.hub.eta.observe(event)
            return
        [eta] = await self.hub.eta.etas(event.order_id, [event])
        texts: dict[str, str] = {}

        def text_in(lang: str) -> str:
            if lang not in texts:
                texts[lang] = encode(event_frame(event, lang, eta))
            return texts[lang]

        for connection in list(followers):
            subscription = connection.subscriptions.get(event.order_id)
            if subscription is not None:
                self.hub.offer(
                    connection, subscription, event, text_in(connection.lang)
                )
        await self.hub.every_order.offer(event)
        if event.name == "courier.assigned":
            self.hub.drop_former_couriers(event.order_id, event.data["courierId"])
