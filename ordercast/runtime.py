"""Runtime wiring: the one place that picks implementations from settings.

With neither `ORDERCAST_DATABASE_URL` nor `ORDERCAST_BUS_URL` set, a node is
the embedded runtime (a SQLite file, the in-process bus). PostgreSQL and
Redis make it a node of a cluster: any number of them share the store and
the bus, and any node serves any command and any follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import IO

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
from ordercast.store.sqlite import SqliteStore, claim_for_one_server
from ordercast.webhooks.attempts import RetryPolicy
from ordercast.webhooks.dispatcher import Dispatcher, WebhookSettings

logger = logging.getLogger(__name__)

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


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
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _sole_server: IO[bytes] | None = None

    async def start(self) -> None:
        if isinstance(self.store, SqliteStore):
            self._sole_server = claim_for_one_server(self.store.path)
        await self.store.open()
        self.bus.subscribe(self.notifier.handle)
        self.bus.subscribe_positions(self.hub.position_heard)
        if self.settings.is_cluster:
            # events recorded by other nodes may set deadlines sooner than
            # this engine planned to look
            self.bus.subscribe(self.engine.hear)
            self.bus.on_resume(self.notifier.resume)
        await self.bus.start()
        if self.webhooks is not None:
            await self.webhooks.start()  # before the first command is written
        await self.engine.start()
        if self.settings.is_cluster:
            interval_s = self.settings.catch_up_interval_s
            self._tasks.append(
                asyncio.create_task(
                    self.notifier.catch_up_loop(interval_s), name="catch-up"
                )
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.engine.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        await self.bus.close()
        await self.store.close()
        if self._sole_server is not None:
            self._sole_server.close()


def build_store(settings: Settings) -> Store:
    """The store named by `ORDERCAST_DATABASE_URL`.

    Raises:
        ValueError: a URL scheme this build does not support.
    """
    url = settings.database_url
    if url.startswith("sqlite:///"):
        return SqliteStore(settings.sqlite_path, settings.sqlite_synchronous)
    if url.startswith(POSTGRES_SCHEMES):
        from ordercast.store.postgres import PostgresStore

        return PostgresStore(
            url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout_s=settings.database_pool_timeout_s,
        )
    raise ValueError(f"unsupported ORDERCAST_DATABASE_URL: {url}")


def build_bus(settings: Settings) -> Bus:
    """The bus named by `ORDERCAST_BUS_URL`.

    Raises:
        ValueError: a URL scheme this build does not support.
    """
    url = settings.bus_url
    if url == "memory://":
        return MemoryBus()
    if url.startswith(REDIS_SCHEMES):
        from ordercast.bus.redis import RedisBus

        return RedisBus(
            url, prefix=settings.bus_prefix, pool_size=settings.bus_pool_size
        )
    raise ValueError(f"unsupported ORDERCAST_BUS_URL: {url}")


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
    """Every part of a node, from settings.

    Raises:
        ValueError: an unsupported URL, or a shared store with the in-process
            bus (or the reverse), which would leave the nodes deaf to each
            other.
    """
    store = build_store(settings)
    bus = build_bus(settings)
    _check_pairing(settings)
    engine = Engine(
        store, bus, settings.timeouts, deadline_lease_s=settings.deadline_lease_s
    )
    hub = Hub(store, settings.location_interval_s, EtaTracker(store), bus)
    verifier = TokenVerifier(settings.token_secret)
    gateway = WebSocketGateway(hub, verifier, settings.max_outbox_frames)
    webhooks = build_webhooks(settings, store)
    return Runtime(
        settings, store, bus, engine, hub, Notifier(hub), gateway, verifier, webhooks
    )


def _check_pairing(settings: Settings) -> None:
    shared_store = not settings.database_url.startswith("sqlite:///")
    if shared_store != settings.is_cluster:
        raise ValueError(
            "ORDERCAST_DATABASE_URL and ORDERCAST_BUS_URL go together: set both "
            "(PostgreSQL and Redis, a cluster) or neither (SQLite, one node); "
            f"got {settings.database_url.split(':')[0]} and "
            f"{settings.bus_url.split(':')[0]}"
        )
