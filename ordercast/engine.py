"""The workflow engine: commands in, durable events out, deadlines kept.

Every command and every deadline that comes due passes through one queue. A
single writer task takes whatever has queued up, applies it to the store as
one batch (group commit), announces the new events on the bus, and only then
answers the callers. Deadlines live in the store, so they fire after a
restart, late if the process was down when they came due. The deadline loop
leases what it fires (`Store.lease_due_deadlines`), so engines of several
nodes on one store share the work, and a deadline leased by a node that died
is fired by another once the lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ordercast.bus.base import Bus
from ordercast.errors import BusError, StoreError
from ordercast.lifecycle import DEADLINES, Event, Timeouts
from ordercast.store.base import Applied, Outcome, Store, Submission

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


MAX_BATCH = 256
"""Most submissions written in one transaction."""

DEADLINE_RETRY_S = 0.5
"""Pause before the deadline loop asks a failing store again."""

LATE_DEADLINE_S = 1.0
"""A deadline fired later than this after it came due is logged as a warning."""

DEADLINE_LEASE_S = 10.0
"""How long a leased deadline is this engine's to fire before others may."""

DEADLINE_STATUSES = frozenset(deadline.status for deadline in DEADLINES)
"""Statuses an order gets a deadline in: an event into one may set it."""


@dataclass
class _Pending:
    submission: Submission
    answer: asyncio.Future[Outcome]


class Engine:
    """Applies commands through the store and announces their events.

    Call `start` before `submit` and `stop` when done; `stop` finishes what
    is queued.
    """

    def __init__(
        self,
        store: Store,
        bus: Bus,
        timeouts: Timeouts,
        clock: Clock = utc_now,
        max_deadline_sleep_s: float = 30.0,
        deadline_lease_s: float = DEADLINE_LEASE_S,
    ) -> None:
        self.store = store
        self.bus = bus
        self.timeouts = timeouts
        self.clock = clock
        self.max_deadline_sleep_s = max_deadline_sleep_s
        self.deadline_lease_s = deadline_lease_s
        self._bus_failing = False
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._deadlines_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_at: datetime | None = None
        # when the deadline loop plans to look again; None while it is busy
        self._soonest_new_deadline_s = min(
            timeouts.restaurant_timeout_s, timeouts.dispatch_timeout_s
        )

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="engine-writer"),
            asyncio.create_task(self._deadline_loop(), name="engine-deadlines"),
        ]

    async def stop(self) -> None:
        """Stop firing deadlines, finish queued commands, then stop writing."""
        writer, deadlines = self._tasks
        deadlines.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await deadlines
        await self._queue.join()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    async def submit(self, submission: Submission) -> Outcome:
        """Apply one command or deadline; return once it is durable and announced.

        Raises:
            StoreError: it was not recorded; the caller may retry.
        """
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(submission, answer))
        return await answer

    # writing

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except Exception as exc:
                logger.exception("writer failed on a batch of %d", len(batch))
                for pending in batch:
                    if not pending.answer.done():
                        pending.answer.set_exception(StoreError(str(exc)))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[_Pending]) -> None:
        submissions = [pending.submission for pending in batch]
        outcomes = await self.store.apply(submissions, self.clock(), self.timeouts)

        # announce before answering, so a caller that hears "done" can count
        # on followers having been sent the event
        new_events: list[Event] = []
        for outcome in outcomes:
            if isinstance(outcome, Applied) and not outcome.replayed:
                new_events.extend(outcome.events)
                self._note_status(outcome)
        if new_events:
            await self._announce(new_events)

        for pending, outcome in zip(batch, outcomes, strict=True):
            if not pending.answer.done():
                pending.answer.set_result(outcome)
        self._wake_deadlines_if_sooner()

    def _wake_deadlines_if_sooner(self) -> None:
        """Wake the deadline loop if this batch may have set an earlier deadline.

        A new deadline is never due sooner than the shortest timeout from now,
        so most batches leave the sleeping loop alone.
        """
        soonest = self.clock() + timedelta(seconds=self._soonest_new_deadline_s)
        if self._wake_at is None or soonest < self._wake_at:
            self._deadlines_changed.set()

    async def _announce(self, events: list[Event]) -> None:
        try:
            await self.bus.publish(events)
        except BusError as exc:
            # once per outage: a bus that is down fails every batch
            log = logger.debug if self._bus_failing else logger.warning
            log(
                "bus dropped %d events (%s); followers catch up from the store",
                len(events),
                exc,
            )
            self._bus_failing = True
            return
        if self._bus_failing:
            logger.info("bus announces again")
            self._bus_failing = False

    async def hear(self, events: Sequence[Event]) -> None:
        """Bus handler: events another node recorded may have set a deadline.

        Another node's deadline settings may be shorter than this one's (while
        a change rolls out, say), so an event that sets a deadline wakes the
        loop to read the store, whatever this node's own timeouts promise.
        """
        if any(event.status in DEADLINE_STATUSES for event in events):
            self._deadlines_changed.set()

    def _note_status(self, outcome: Applied) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            for event in outcome.events:
                logger.debug(
                    "= %s %s %s",
                    event.order_id,
                    event.seq,
                    event.status,
                    extra={"order_id": event.order_id, "seq": event.seq},
                )
        status = outcome.order.state.status
        if outcome.events and status.is_terminal:
            logger.info(
                "order reached %s",
                status,
                extra={"order_id": outcome.order.state.order_id},
            )

    # deadlines

    async def _deadline_loop(self) -> None:
        while True:
            try:
                if await self._fire_due():
                    continue
                self._deadlines_changed.clear()
                sleep_s = await self._seconds_to_next_deadline()
            except StoreError:
                # a store that fails now may answer in a moment; a deadline
                # loop that died would never fire again
                logger.warning("could not read deadlines; retrying", exc_info=True)
                sleep_s = DEADLINE_RETRY_S
            self._wake_at = self.clock() + timedelta(seconds=sleep_s)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
            # a cancellation that arrives as the event is set (CPython
            # gh-86296, fixed in 3.12), and `stop` would then wait for ever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep_s):
                    await self._deadlines_changed.wait()
            self._wake_at = None

    async def _fire_due(self) -> int:
        now = self.clock()
        due = await self.store.lease_due_deadlines(
            now, MAX_BATCH, self.deadline_lease_s
        )
        for deadline in due:
            late_s = (now - deadline.due_at).total_seconds()
            if late_s > LATE_DEADLINE_S:
                logger.warning(
                    "deadline %s fired %.1f s late",
                    deadline.kind,
                    late_s,
                    extra={"order_id": deadline.order_id},
                )
        submissions = [Submission(d.order_id, deadline_kind=d.kind) for d in due]
        await asyncio.gather(*(self.submit(s) for s in submissions))
        return len(due)

    async def _seconds_to_next_deadline(self) -> float:
        next_due = await self.store.next_due_at()
        if next_due is None:
            return self.max_deadline_sleep_s
        wait_s = (next_due - self.clock()).total_seconds()
        return min(max(wait_s, 0.0), self.max_deadline_sleep_s)
