"""The dispatcher: sends the outbox's deliveries, each target on its own worker.

The store's writer records deliveries with their events and tells the
dispatcher which targets got some (`recorded`, from the writer's thread); it
never waits for a target. Each target has a worker that claims the target's
due deliveries (at most `concurrency` in flight, at most one per order, the
lowest seq first), posts them, and settles each one: delivered, retry later,
or dead. Claims and settlements of every worker go to the store together, one
transaction at a time (`ordercast.webhooks.ledger`), taking turns with
command batches.

A slow or failing target fills only its own worker's slots: other targets,
the writer and the WebSocket push go on. A process that dies leaves its
deliveries leased; they are due again when the lease ends.

Workers run in the server's process by default. They share its CPU with the
WebSocket push, so a server near its limit can hand them to processes of
their own (`ordercast webhooks deliver`, with `deliver=False` here): the
server then only records deliveries, and the delivering processes find them
by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from ulid import ULID

from ordercast.errors import StoreError
from ordercast.routing.rules import Routing, RuleSet, Target, compile_rules
from ordercast.webhooks.attempts import RetryPolicy, is_success
from ordercast.webhooks.base import (
    Attempt,
    Claimed,
    ClaimRequest,
    Delivery,
    Outcome,
    Settlement,
    WebhookStore,
)
from ordercast.webhooks.ledger import LINGER_S, Ledger
from ordercast.webhooks.sender import new_session, post
from ordercast.wire.frames import format_at

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

PRUNE_EVERY_S = 60.0
"""How often the delivery log is cut back to `log_size` per target."""

RETRY_CLAIM_S = 0.05
"""Pause before claiming again when due deliveries were taken by another process."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WebhookSettings:
    """How the dispatcher sends (ORDERCAST_WEBHOOK_* settings)."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 10.0
    concurrency: int = 8
    lease_margin_s: float = 30.0
    poll_s: float = 1.0
    log_size: int = 1000
    linger_s: float = LINGER_S
    deliver: bool = True
    """Run the workers in this process; False where other processes do."""
    idle_poll_s: float | None = None
    """How long an idle worker waits before it looks again; `poll_s` if None.
    Processes that deliver for others look more often: nobody wakes them."""


class Dispatcher:
    """Workers for every target, kept in step with the stored rules.

    Also the `Routes` the store's writer reads: `rules` is swapped whole
    whenever rules or targets change, here or in another process.
    """

    def __init__(
        self,
        store: WebhookStore,
        settings: WebhookSettings,
        clock: Clock = utc_now,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.draw = draw
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.routing = Routing()
        self._rules = RuleSet()
        self._workers: dict[str, _Worker] = {}
        self.ledger = Ledger(store, self.owner, clock, settings.linger_s)
        self._tasks: list[asyncio.Task[None]] = []
        self._retired: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._install_lock = asyncio.Lock()

    # Routes, read by the store's writer

    @property
    def rules(self) -> RuleSet:
        return self._rules

    def recorded(self, target_ids: set[str]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake, target_ids)

    # lifecycle

    async def start(self) -> None:
        """Load the rules, start a worker per target, and attach to the store."""
        self._loop = asyncio.get_running_loop()
        await self.reload()
        self.store.attach(self)
        self._tasks = [
            asyncio.create_task(self.ledger.run(), name="webhooks-ledger"),
            asyncio.create_task(self._watch(), name="webhooks-watch"),
        ]
        logger.info("webhooks started with %d targets", len(self._workers))

    async def stop(self) -> None:
        """Stop sending; deliveries in flight are due again at once."""
        for task in self._tasks[1:]:
            task.cancel()
        for worker in self._workers.values():
            await worker.stop()
        self._workers.clear()
        ledger = self._tasks[0] if self._tasks else None
        if ledger is not None:
            await self.ledger.drain()
            ledger.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        try:
            await self.store.release(self.owner)
        except StoreError:
            logger.warning("could not release leases; they end on their own")

    async def reload(self) -> None:
        """Read rules and targets again and apply them: call after a change."""
        routing = await self.store.load_routing()
        async with self._install_lock:
            if routing.version >= self.routing.version:
                self._install(routing)

    def wake_all(self) -> None:
        """Have every worker look for due deliveries now (after a replay)."""
        self._wake(set(self._workers))

    def target(self, target_id: str) -> Target | None:
        """The target as last loaded, or None."""
        worker = self._workers.get(target_id)
        return worker.target if worker else None

    async def send_test(self, target: Target) -> Attempt:
        """Post a signed `webhook.test` document to the target now, and log it.

        It goes around the outbox: nothing is retried, nothing dead-lettered.
        """
        now = self.clock()
        event_id = f"test-{ULID()}"
        document = {
            "type": "webhook.test",
            "eventId": event_id,
            "targetId": target.target_id,
            "at": format_at(now),
        }
        worker = self._workers.get(target.target_id)
        async with contextlib.AsyncExitStack() as stack:
            if worker is not None:
                session = worker.session
            else:
                session = await stack.enter_async_context(new_session(1))
            status, error, _, latency_ms = await post(
                session,
                target,
                event_id,
                orjson.dumps(document),
                1,
                target.timeout_s or self.settings.timeout_s,
            )
        attempt = Attempt(
            target.target_id, event_id, 1, now, latency_ms, Outcome.TEST, status, error
        )
        await self.store.log_attempts([attempt])
        return attempt

    # inside

    def _install(self, routing: Routing) -> None:
        self._rules = compile_rules(routing.rules, routing.version)
        self.routing = routing
        wanted = {target.target_id: target for target in routing.targets}
        for target_id in list(self._workers):
            if target_id not in wanted:
                retiring = asyncio.create_task(self._workers.pop(target_id).stop())
                self._retired.add(retiring)
                retiring.add_done_callback(self._retired.discard)
        if not self.settings.deliver:
            return
        for target_id, target in wanted.items():
            if target_id in self._workers:
                self._workers[target_id].target = target
            else:
                worker = _Worker(self, target)
                self._workers[target_id] = worker
                worker.start()

    def _wake(self, target_ids: set[str]) -> None:
        for target_id in target_ids:
            worker = self._workers.get(target_id)
            if worker is not None:
                worker.wake.set()

    async def _watch(self) -> None:
        """Follow changes made by other processes; keep the log short."""
        pruned_at = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.poll_s)
            try:
                if await self.store.routing_version() != self.routing.version:
                    await self.reload()
                if time.monotonic() - pruned_at > PRUNE_EVERY_S:
                    pruned_at = time.monotonic()
                    await self.store.prune_attempts(self.settings.log_size)
            except StoreError:
                logger.warning("could not read the routing version", exc_info=True)


class _Worker:
    """Claims and sends one target's deliveries, `concurrency` at a time."""

    def __init__(self, dispatcher: Dispatcher, target: Target) -> None:
        self.dispatcher = dispatcher
        self.target = target
        self.settings = dispatcher.settings
        self.session = new_session(self.settings.concurrency)
        self.wake = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        name = f"webhooks-{self.target.target_id}"
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self.in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.session.close()

    @property
    def timeout_s(self) -> float:
        return self.target.timeout_s or self.settings.timeout_s

    @property
    def idle_s(self) -> float:
        return self.settings.idle_poll_s or self.settings.poll_s

    async def _run(self) -> None:
        while True:
            self.wake.clear()
            wait_s = self.idle_s
            free = self.settings.concurrency - len(self.in_flight)
            if free > 0:
                claimed = await self._claim(free)
                for delivery in claimed.deliveries:
                    task = asyncio.create_task(self._send(delivery))
                    self.in_flight.add(task)
                    task.add_done_callback(self._finished)
                wait_s = self._wait_s(claimed, free)
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self.wake.wait()

    async def _claim(self, limit: int) -> Claimed:
        lease_s = self.timeout_s + self.settings.lease_margin_s
        request = ClaimRequest(self.target.target_id, limit, lease_s)
        try:
            return await self.dispatcher.ledger.claim(request)
        except StoreError:
            logger.warning("could not claim deliveries; retrying", exc_info=True)
            return Claimed((), None)

    def _wait_s(self, claimed: Claimed, free: int) -> float:
        """How long to sleep before claiming again (a wake cuts it short)."""
        if claimed.next_due_at is None:
            return self.idle_s
        due_in_s = (claimed.next_due_at - self.dispatcher.clock()).total_seconds()
        if due_in_s > 0:
            return min(due_in_s, self.idle_s)
        if len(claimed.deliveries) == free:
            return self.idle_s  # full: a finished send wakes us
        return RETRY_CLAIM_S  # due ones went to another process

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.wake.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("webhook send failed", exc_info=task.exception())

    async def _send(self, delivery: Delivery) -> None:
        target = self.target
        number = delivery.attempts + 1
        started = self.dispatcher.clock()
        status, error, wait_at_least_s, latency_ms = await post(
            self.session,
            target,
            delivery.event_id,
            delivery.body.encode(),
            number,
            self.timeout_s,
        )
        settlement = self._settlement(
            delivery, number, started, status, error, wait_at_least_s, latency_ms
        )
        try:
            await self.dispatcher.ledger.settle(settlement)
        except StoreError:
            # the lease ends and the delivery is sent again: at least once
            logger.warning(
                "could not record an attempt",
                exc_info=True,
                extra={"order_id": delivery.order_id, "seq": delivery.seq},
            )

    def _settlement(
        self,
        delivery: Delivery,
        number: int,
        started: datetime,
        status: int | None,
        error: str | None,
        wait_at_least_s: float | None,
        latency_ms: int,
    ) -> Settlement:
        target, policy = self.target, self._policy()
        next_at = None
        if status is not None and is_success(status):
            outcome = Outcome.DELIVERED
        elif policy.gives_up(number):
            outcome = Outcome.DEAD
            logger.warning(
                "webhook delivery to %s gave up after %d attempts",
                target.target_id,
                number,
                extra={"order_id": delivery.order_id, "seq": delivery.seq},
            )
        else:
            outcome = Outcome.RETRYING
            delay_s = policy.delay_s(number, wait_at_least_s, self.dispatcher.draw)
            next_at = self.dispatcher.clock() + timedelta(seconds=delay_s)
        attempt = Attempt(
            target.target_id,
            delivery.event_id,
            number,
            started,
            latency_ms,
            outcome,
            status,
            error,
            delivery.delivery_id,
            delivery.order_id,
            delivery.seq,
        )
        return Settlement(delivery, attempt, next_at)

    def _policy(self) -> RetryPolicy:
        retry = self.settings.retry
        if self.target.max_attempts is None:
            return retry
        return RetryPolicy(self.target.max_attempts, retry.base_s, retry.max_delay_s)
