"""The webhook store port: rules and targets, the outbox, the delivery log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from ordercast.routing.rules import Routes, Routing, Rule, Target


class Outcome(StrEnum):
    """What one attempt came to."""

    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD = "dead"
    TEST = "test"
    """A test delivery (`POST /webhooks/targets/{id}/test`), outside the outbox."""


@dataclass(frozen=True)
class Delivery:
    """One event bound for one target, as claimed from the outbox."""

    delivery_id: int
    target_id: str
    order_id: str
    seq: int
    event_id: str
    body: str
    """The JSON text the target receives, the same on every attempt."""
    attempts: int
    """Attempts made before this one."""


@dataclass(frozen=True)
class ClaimRequest:
    """Up to `limit` due deliveries of one target, leased for `lease_s`."""

    target_id: str
    limit: int
    lease_s: float


@dataclass(frozen=True)
class Claimed:
    """What a claim got, and when the target's next delivery comes due."""

    deliveries: tuple[Delivery, ...]
    next_due_at: datetime | None
    """None when nothing else is waiting (or everything is leased)."""


@dataclass(frozen=True)
class Attempt:
    """One request to a target, for the delivery log."""

    target_id: str
    event_id: str
    attempt: int
    """1 for the first attempt of a delivery."""
    at: datetime
    latency_ms: int
    outcome: Outcome
    status_code: int | None = None
    """The answer's status; None when none came (refused, timed out)."""
    error: str | None = None
    delivery_id: int | None = None
    order_id: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class Settlement:
    """The end of an attempt: the delivery is done, waits, or is dead."""

    delivery: Delivery
    attempt: Attempt
    next_attempt_at: datetime | None = None
    """When to try again (outcome RETRYING only)."""


@dataclass(frozen=True)
class DeadLetter:
    """A delivery that gave up, with why."""

    delivery_id: int
    target_id: str
    order_id: str
    seq: int
    event_id: str
    rule_ids: tuple[str, ...]
    attempts: int
    last_status: int | None
    last_error: str | None
    died_at: datetime
    body: dict[str, Any]


@dataclass(frozen=True)
class Backlog:
    """How many deliveries of one target wait, and how many are dead."""

    pending: int = 0
    dead: int = 0


class WebhookStore(Protocol):
    """Rules, targets and the webhook outbox, in the store's database.

    Contract for every implementation:

    - Once `attach`ed, every event the store records that a rule matches gets
      one delivery per target it is bound for, written in the event's
      transaction: a delivery exists if and only if its event does.
    - `exchange` leases each delivery it returns to `owner` for the
      claim's `lease_s`; no other caller is given it before that lease ends,
      whether or not it shares this process. Of one order's pending
      deliveries to one target, only the one with the lowest seq is ever
      given out, so a target gets an order's events in seq order.
    - A delivery is removed when settled DELIVERED, becomes dead when settled
      DEAD, and is due again at `next_attempt_at` when settled RETRYING. A
      lease that ends unsettled (the process died) makes it due again.
    - Every change to rules or targets bumps the routing version.
    """

    def attach(self, routes: Routes) -> None:
        """Match every event recorded from now on against `routes.rules`."""

    # rules and targets

    async def load_routing(self) -> Routing:
        """Every target and rule, and the routing version, as one snapshot."""

    async def routing_version(self) -> int:
        """The routing version: it changes whenever rules or targets do."""

    async def create_target(self, target: Target, now: datetime) -> int:
        """Store a new target; return the new routing version.

        Raises:
            TargetExists: the id is taken.
        """

    async def update_target(self, target: Target, now: datetime) -> int:
        """Replace a target's settings; return the new routing version.

        Raises:
            TargetNotFound: no target has the id.
        """

    async def delete_target(self, target_id: str) -> int:
        """Remove a target with its deliveries and log.

        Raises:
            TargetNotFound: no target has the id.
            TargetInUse: a rule names it.
        """

    async def create_rule(self, rule: Rule, now: datetime) -> int:
        """Store a new rule (its pattern already checked).

        Raises:
            RuleExists: the id is taken.
            UnknownTarget: it names a target that does not exist.
        """

    async def update_rule(self, rule: Rule, now: datetime) -> int:
        """Replace a rule.

        Raises:
            RuleNotFound: no rule has the id.
            UnknownTarget: it names a target that does not exist.
        """

    async def delete_rule(self, rule_id: str) -> int:
        """Remove a rule; deliveries it already caused stay due.

        Raises:
            RuleNotFound: no rule has the id.
        """

    # the outbox

    async def exchange(
        self,
        settlements: Sequence[Settlement],
        claims: Sequence[ClaimRequest],
        owner: str,
        now: datetime,
    ) -> list[Claimed]:
        """Settle attempts, then claim deliveries, in one transaction.

        Returns one `Claimed` per claim request, in order.
        """

    async def release(self, owner: str) -> None:
        """End every lease `owner` holds: its deliveries are due again now."""

    async def backlog(self) -> dict[str, Backlog]:
        """Pending and dead deliveries per target (targets with none left out)."""

    async def dead_letters(self, target_id: str | None, limit: int) -> list[DeadLetter]:
        """Dead deliveries, oldest first, of one target or of all."""

    async def replay(
        self, delivery_ids: Sequence[int] | None, target_id: str | None, now: datetime
    ) -> int:
        """Make dead deliveries due again now (the ids given, or every one of
        the target, or every one); return how many.

        Raises:
            DeliveryNotFound: one of `delivery_ids` is not a dead letter;
                nothing was replayed.
        """

    async def discard(self, delivery_id: int) -> None:
        """Forget a dead delivery.

        Raises:
            DeliveryNotFound: it is not a dead letter.
        """

    async def attempts(self, target_id: str, limit: int) -> list[Attempt]:
        """The target's most recent attempts, newest first."""

    async def log_attempts(self, attempts: Sequence[Attempt]) -> None:
        """Add attempts made outside the outbox (test deliveries) to the log."""

    async def prune_attempts(self, keep: int) -> None:
        """Keep only the `keep` most recent attempts of each target."""
