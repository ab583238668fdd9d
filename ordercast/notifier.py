"""The notifier: hears events on the bus and pushes them to followers."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ordercast.gateway.hub import Hub
from ordercast.lifecycle import Event
from ordercast.wire.frames import encode, event_frame

logger = logging.getLogger(__name__)


class Notifier:
    """Turns each event into frames, once per language, and offers them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

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
        for connection in everyone:
            if event.order_id not in connection.subscriptions:
                connection.push(text_in(connection.lang))
        if event.name == "courier.assigned":
            self.hub.drop_former_couriers(event.order_id, event.data["courierId"])
