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
        if self.hub.eta is not None:
            self.hub.eta.forget_all()  # trips may have missed events too
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
            await self._deliver(event)

    async def _deliver(self, event: Event) -> None:
        followers = self.hub.followers(event.order_id)
        everyone = self.hub.everything
        tracker = self.hub.eta
        if not followers and not everyone:
            if tracker is not None:
                tracker.observe(event)
            return
        texts: dict[str, str] = {}
        # one ETA per event, recomputed on each status change (README: ETA)
        eta = await tracker.after_event(event) if tracker is not None else None

        def text_in(lang: str) -> str:
            if lang not in texts:
                frame = event_frame(event, lang)
                if tracker is not None:
                    frame["eta"] = eta
                texts[lang] = encode(frame)
            return texts[lang]

        for connection in list(followers):
            subscription = connection.subscriptions.get(event.order_id)
            if subscription is not None:
                self.hub.offer(
                    connection, subscription, event, text_in(connection.lang)
                )
        for connection in everyone:
            if event.order_id not in connection.subscriptions:
                connection.push(text_in(connection.lang))
