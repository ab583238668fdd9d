"""The store port: the durable home of orders, their event logs and deadlines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ordercast.errors import Refusal
from ordercast.lifecycle import Event, OrderState, Request, Status, Timeouts


@dataclass(frozen=True)
class Submission:
    """One unit of work for `Store.apply`: a command, or a deadline that came due."""

    order_id: str
    request: Request | None = None
    deadline_kind: str | None = None
    """Set instead of `request` when the scheduler fires a deadline."""
    idempotency_key: str | None = None
    fingerprint: str = ""
    """What the request says, hashed: a key reused for another request is refused."""


@dataclass(frozen=True)
class OrderRecord:
    """An order as stored, with when it was created and last changed."""

    state: OrderState
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Applied:
    """A submission that was recorded, or the first answer to its idempotency key."""

    order: OrderRecord
    events: tuple[Event, ...]
    """Events it appended, in seq order; empty for a deadline that no longer applied."""
    replayed: bool = False
    """True when this is the stored answer to a repeated idempotency key."""


@dataclass(frozen=True)
class Refused:
    """A submission that the lifecycle refused; it changed nothing."""

    error: Refusal
    replayed: bool = False
    """True when this is the stored refusal of a repeated idempotency key."""


Outcome = Applied | Refused


@dataclass(frozen=True)
class DueDeadline:
    """A deadline that has come due and waits to be fired."""

    order_id: str
    kind: str
    due_at: datetime


@dataclass(frozen=True)
class OverdueOrder:
    """An order whose deadline fired without moving it on."""

    order: OrderRecord
    kind: str
    """The deadline that fired (`courier_assignment`)."""


class Store(Protocol):
    """Orders, their append-only event logs, deadlines and idempotency keys.

    Contract for every implementation:

    - `apply` handles each submission atomically: its events, the order's new
      status, its deadlines and its idempotency record are written in one
      transaction, or none of them is. Once `apply` returns, what it returned
      as `Applied` is durable.
    - Within an order, seq runs 1, 2, 3, … with no gap and no duplicate, even
      when commands for that order arrive concurrently from many callers (or,
      for a shared store, from many nodes).
    - A submission whose idempotency key was seen before for the same subject
      records nothing and returns the first outcome (`replayed=True` if it was
      applied). The same key with another fingerprint is refused with
      `IdempotencyKeyReused`.
    - A refused submission changes nothing.
    - A deadline fires at most once: firing one that is no longer stored (a
      command cleared it, another node fired it) records nothing. Leases
      (`lease_due_deadlines`) keep nodes from firing the same ones at once;
      a lease that ends unfired (its node died) frees the deadline for others.
    """

    async def open(self) -> None:
        """Create or migrate the schema and get ready to serve."""

    async def close(self) -> None:
        """Release connections. Calls after this raise."""

    async def ping(self) -> None:
        """Return once the store answers a trivial query.

        Raises:
            StoreError: it does not.
        """

    async def apply(
        self, submissions: Sequence[Submission], now: datetime, timeouts: Timeouts
    ) -> list[Outcome]:
        """Apply submissions in order; return one outcome per submission.

        Raises:
            StoreError: the store failed; none of the submissions was recorded.
        """

    async def get_order(self, order_id: str) -> OrderRecord | None:
        """The order, or None if no order has that id."""

    async def read_events(
        self, order_id: str, since_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Events of one order with seq > since_seq, in seq order."""

    async def order_seqs(self, order_ids: Sequence[str]) -> dict[str, int]:
        """The current seq of each order that exists, by order id."""

    async def due_deadlines(self, now: datetime, limit: int) -> list[DueDeadline]:
        """Deadlines with due_at <= now, earliest first, leased or not."""

    async def lease_due_deadlines(
        self, now: datetime, limit: int, lease_s: float
    ) -> list[DueDeadline]:
        """Take the due deadlines no one holds, earliest first, for `lease_s`.

        The caller fires them (`apply` with `deadline_kind`); until the lease
        ends no other caller gets them, from this store or from another
        node's. A deadline that is still stored when its lease ends is due
        again for every caller.

        Raises:
            StoreError: the store failed; nothing was leased.
        """

    async def next_due_at(self) -> datetime | None:
        """When a caller should next ask `lease_due_deadlines`.

        The earliest due_at of the stored deadlines, or the end of its lease
        if that is later; None if no deadline is stored.
        """

    async def count_by_status(self) -> dict[Status, int]:
        """How many orders are in each status now (statuses with none left out)."""

    async def overdue_orders(self, limit: int) -> list[OverdueOrder]:
        """Orders still waiting in a status whose deadline has already fired.

        A deadline that keeps the status (`dispatch.overdue`: the order stays
        ACCEPTED) is cleared when it fires; these are the orders it left
        behind, longest waiting first.
        """
