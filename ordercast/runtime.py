"""Runtime wiring: the one place that picks implementations from settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ordercast.auth import TokenVerifier
from ordercast.bus.base import Bus
from ordercast.bus.memory import MemoryBus
from ordercast.engine import Engine
from ordercast.eta.tracker import EtaTracker
from ordercast.gateway.hub import Hub
from ordercast.gateway.websocket import WebSocketGateway
from ordercast.notifier import Notifier
from ordercast.settings import Settings
from ordercast.store.base import Store
from ordercast.store.outbox import SqlWebhookStore
from ordercast.store.sql import SqlStore
from ordercast.store.sqlite import SqliteStore
from ordercast.webhooks.attempts import RetryPolicy
from ordercast.webhooks.dispatcher import Dispatcher, WebhookSettings

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Every long-lived part of a server process, built from settings."""

    settings: Settings
    store: Store
    bus: Bus
    engine: Engine
    hub: Hub
    notifier: Notifier
    gateway: WebSocketGateway
    verifier: TokenVerifier
    webhooks: Dispatcher | None = None
    """Routing rules and webhook deliveries, on stores that keep an outbox."""

    async def start(self) -> None:
        await self.store.open()
        await self.bus.start()
        self.bus.subscribe(self.notifier.handle)
        if self.webhooks is not None:
            await self.webhooks.start()  # before the first command is written
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        await self.bus.close()
        await self.store.close()


def build_store(settings: Settings) -> Store:
    """The store named by `ORDERCAST_DATABASE_URL`.

    Raises:
        ValueError: a URL scheme this build does not support.
    """
    if settings.database_url.startswith("sqlite:///"):
        return SqliteStore(settings.sqlite_path, settings.sqlite_synchronous)
    raise ValueError(f"unsupported ORDERCAST_DATABASE_URL: {settings.database_url}")


def build_bus(settings: Settings) -> Bus:
    """The bus named by `ORDERCAST_BUS_URL`.

    Raises:
        ValueError: a URL scheme this build does not support.
    """
    if settings.bus_url == "memory://":
        return MemoryBus()
    raise ValueError(f"unsupported ORDERCAST_BUS_URL: {settings.bus_url}")


def build_webhooks(
    settings: Settings, store: Store, idle_poll_s: float | None = None
) -> Dispatcher | None:
    """The webhook dispatcher, for stores that keep an outbox (SQL ones).

    Args:
        idle_poll_s: set by processes that deliver for servers
            (`ordercast webhooks deliver`): they deliver whatever
            `webhook_delivery` says, and look for work this often.
    """
    if not isinstance(store, SqlStore):
        return None
    retry = RetryPolicy(
        settings.webhook_max_attempts,
        settings.webhook_retry_base_s,
        settings.webhook_retry_max_s,
    )
    webhook_settings = WebhookSettings(
        retry,
        settings.webhook_timeout_s,
        settings.webhook_concurrency,
        settings.webhook_lease_margin_s,
        settings.webhook_poll_s,
        settings.webhook_log_size,
        deliver=idle_poll_s is not None or settings.webhook_delivery == "inline",
        idle_poll_s=idle_poll_s,
    )
    return Dispatcher(SqlWebhookStore(store), webhook_settings)


def build_runtime(settings: Settings) -> Runtime:
    store = build_store(settings)
    bus = build_bus(settings)
    engine = Engine(store, bus, settings.timeouts)
    hub = Hub(store, settings.location_interval_s, EtaTracker(store))
    verifier = TokenVerifier(settings.token_secret)
    gateway = WebSocketGateway(hub, verifier, settings.max_outbox_frames)
    webhooks = build_webhooks(settings, store)
    return Runtime(
        settings, store, bus, engine, hub, Notifier(hub), gateway, verifier, webhooks
    )
