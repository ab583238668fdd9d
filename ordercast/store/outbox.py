"""The webhook store on SQL: rules, targets, the outbox and the delivery log.

It shares the SQL store's engines and its writer thread, so webhook
bookkeeping takes turns with command batches instead of competing with them
for SQLite's write lock. Portable SQLAlchemy Core: SQLite and PostgreSQL.

Leases: a delivery is claimed by a conditional UPDATE that sets its lease only
if nobody holds it (`lease_until_ms <= now`). On SQLite writers take turns; on
PostgreSQL the query that picks them skips rows another claimer has locked,
and should two pick the same row anyway, the second waits for the first
one's row lock, re-checks the condition on the updated row, and skips it.
Either way one caller gets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ordercast.errors import (
    DeliveryNotFound,
)
from ordercast.routing.rules import Routes, Routing, Rule, Target
from ordercast.store import routing
from ordercast.store.schema import (
    DEAD,
    PENDING,
    webhook_attempts,
    webhook_deliveries,
)
from ordercast.store.sql import SqlStore, from_ms, to_ms
from ordercast.webhooks.base import (
    Attempt,
    Backlog,
    Claimed,
    ClaimRequest,
    DeadLetter,
    Delivery,
    Outcome,
    Settlement,
)

_d = webhook_deliveries
_earlier = webhook_deliveries.alias("earlier")

_is_first_of_order = ~sa.exists().where(
    _earlier.c.target_id == _d.c.target_id,
    _earlier.c.order_id == _d.c.order_id,
    _earlier.c.state == PENDING,
    _earlier.c.seq < _d.c.seq,
)
"""No pending delivery of the same order to the same target comes before it."""


class SqlWebhookStore:
    """`WebhookStore` on a `SqlStore`'s database."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def attach(self, routes: Routes) -> None:
        self.store.routes = routes

    # rules and targets

    async def load_routing(self) -> Routing:
        return await self.store.query(routing.load_routing)

    async def routing_version(self) -> int:
        return await self.store.query(routing.routing_version)

    async def create_target(self, target: Target, now: datetime) -> int:
        return await self.store.transact(
            lambda c: routing.create_target(c, target, now)
        )

    async def update_target(self, target: Target, now: datetime) -> int:
        return await self.store.transact(
            lambda c: routing.update_target(c, target, now)
        )

    async def delete_target(self, target_id: str) -> int:
        return await self.store.transact(lambda c: routing.delete_target(c, target_id))

    async def create_rule(self, rule: Rule, now: datetime) -> int:
        return await self.store.transact(
            lambda c: routing.save_rule(c, rule, now, True)
        )

    async def update_rule(self, rule: Rule, now: datetime) -> int:
        return await self.store.transact(
            lambda c: routing.save_rule(c, rule, now, False)
        )

    async def delete_rule(self, rule_id: str) -> int:
        return await self.store.transact(lambda c: routing.delete_rule(c, rule_id))

    # the outbox

    async def exchange(
        self,
        settlements: Sequence[Settlement],
        claims: Sequence[ClaimRequest],
        owner: str,
        now: datetime,
    ) -> list[Claimed]:
        now_ms = to_ms(now)

        def work(connection: Connection) -> list[Claimed]:
            _settle(connection, settlements, now_ms)
            return [_claim(connection, claim, owner, now_ms) for claim in claims]

        # losing this to a power cut only sends a delivery again
        return await self.store.transact(work, durable=False)

    async def release(self, owner: str) -> None:
        query = (
            _d.update()
            .where(_d.c.lease_owner == owner)
            .values(lease_owner=None, lease_until_ms=0)
        )
        await self.store.transact(lambda c: c.execute(query), durable=False)

    async def backlog(self) -> dict[str, Backlog]:
        how_many = sa.func.count().label("how_many")
        query = sa.select(_d.c.target_id, _d.c.state, how_many).group_by(
            _d.c.target_id, _d.c.state
        )
        rows = await self.store.query(lambda c: list(c.execute(query)))
        found: dict[str, Backlog] = {}
        for row in rows:
            counts = found.get(row.target_id, Backlog())
            if row.state == DEAD:
                found[row.target_id] = Backlog(counts.pending, int(row.how_many))
            else:
                found[row.target_id] = Backlog(int(row.how_many), counts.dead)
        return found

    async def dead_letters(self, target_id: str | None, limit: int) -> list[DeadLetter]:
        query = sa.select(_d).where(_d.c.state == DEAD)
        if target_id is not None:
            query = query.where(_d.c.target_id == target_id)
        query = query.order_by(_d.c.delivery_id).limit(limit)
        rows = await self.store.query(lambda c: list(c.execute(query)))
        return [_dead_letter(row) for row in rows]

    async def replay(
        self, delivery_ids: Sequence[int] | None, target_id: str | None, now: datetime
    ) -> int:
        return await self.store.transact(
            lambda c: _replay(c, delivery_ids, target_id, to_ms(now))
        )

    async def discard(self, delivery_id: int) -> None:
        query = _d.delete().where(_d.c.delivery_id == delivery_id, _d.c.state == DEAD)

        def work(connection: Connection) -> None:
            if connection.execute(query).rowcount != 1:
                raise DeliveryNotFound(delivery_id)

        await self.store.transact(work)

    async def attempts(self, target_id: str, limit: int) -> list[Attempt]:
        a = webhook_attempts
        query = (
            sa.select(a)
            .where(a.c.target_id == target_id)
            .order_by(a.c.attempt_id.desc())
            .limit(limit)
        )
        rows = await self.store.query(lambda c: list(c.execute(query)))
        return [_attempt_from_row(row) for row in rows]

    async def log_attempts(self, attempts: Sequence[Attempt]) -> None:
        rows = [_attempt_row(a) for a in attempts]
        if rows:
            await self.store.transact(
                lambda c: c.execute(webhook_attempts.insert(), rows), durable=False
            )

    async def prune_attempts(self, keep: int) -> None:
        await self.store.transact(lambda c: _prune_attempts(c, keep), durable=False)


# the outbox


# Statements built once: building one costs more than running it.

_heads = (
    sa.select(_d.c.delivery_id, _d.c.next_attempt_at_ms)
    .where(
        _d.c.target_id == sa.bindparam("b_target_id"),
        _d.c.state == PENDING,
        _d.c.lease_until_ms <= sa.bindparam("b_now_ms"),
        _is_first_of_order,
    )
    .order_by(_d.c.next_attempt_at_ms)
    .limit(sa.bindparam("b_limit"))
    # PostgreSQL: pass over rows another claimer is leasing right now, rather
    # than wait for it and find them gone (SQLite has one writer, and no
    # such clause)
    .with_for_update(skip_locked=True)
)

_lease = (
    _d.update()
    .where(
        _d.c.delivery_id.in_(sa.bindparam("b_ids", expanding=True)),
        _d.c.state == PENDING,
        _d.c.lease_until_ms <= sa.bindparam("b_now_ms"),
    )
    .values(lease_owner=sa.bindparam("b_owner"), lease_until_ms=sa.bindparam("b_until"))
    .returning(
        _d.c.delivery_id,
        _d.c.target_id,
        _d.c.order_id,
        _d.c.seq,
        _d.c.event_id,
        _d.c.body,
        _d.c.attempts,
    )
)

_delete_delivered = _d.delete().where(
    _d.c.delivery_id.in_(sa.bindparam("b_ids", expanding=True))
)


def _claim(
    connection: Connection,
    claim: ClaimRequest,
    owner: str,
    now_ms: int,
) -> Claimed:
    """Lease the target's due deliveries that come first in their order.

    One query finds the heads ordered by due time, one more than the limit:
    those due now are leased, and the first one left says when to look again.
    """
    found = {
        "b_target_id": claim.target_id,
        "b_now_ms": now_ms,
        "b_limit": claim.limit + 1,
    }
    heads = list(connection.execute(_heads, found))
    due = [
        h.delivery_id for h in heads[: claim.limit] if h.next_attempt_at_ms <= now_ms
    ]
    rest = heads[len(due) :]
    next_due_at = from_ms(rest[0].next_attempt_at_ms) if rest else None
    if not due:
        return Claimed((), next_due_at)
    lease = {
        "b_ids": due,
        "b_now_ms": now_ms,
        "b_owner": owner,
        "b_until": now_ms + int(claim.lease_s * 1000),
    }
    leased = connection.execute(_lease, lease)
    deliveries = sorted((Delivery(*row) for row in leased), key=lambda d: d.delivery_id)
    return Claimed(tuple(deliveries), next_due_at)


_retry = (
    _d.update()
    .where(_d.c.delivery_id == sa.bindparam("b_delivery_id"))
    .values(
        state=sa.bindparam("b_state"),
        attempts=sa.bindparam("b_attempts"),
        next_attempt_at_ms=sa.bindparam("b_next_attempt_at_ms"),
        lease_owner=None,
        lease_until_ms=0,
        last_status=sa.bindparam("b_last_status"),
        last_error=sa.bindparam("b_last_error"),
        updated_at_ms=sa.bindparam("b_updated_at_ms"),
    )
)


def _settle(
    connection: Connection, settlements: Sequence[Settlement], now_ms: int
) -> None:
    done = [
        s.delivery.delivery_id
        for s in settlements
        if s.attempt.outcome is Outcome.DELIVERED
    ]
    if done:
        connection.execute(_delete_delivered, {"b_ids": done})
    failed = [
        _failure(s, now_ms)
        for s in settlements
        if s.attempt.outcome is not Outcome.DELIVERED
    ]
    if failed:
        connection.execute(_retry, failed)
    if settlements:
        connection.execute(
            webhook_attempts.insert(), [_attempt_row(s.attempt) for s in settlements]
        )


def _failure(settlement: Settlement, now_ms: int) -> dict[str, Any]:
    attempt = settlement.attempt
    dead = attempt.outcome is Outcome.DEAD
    retry_at = settlement.next_attempt_at
    assert dead or retry_at is not None, "a delivery that retries has a time"
    return {
        "b_delivery_id": settlement.delivery.delivery_id,
        "b_state": DEAD if dead else PENDING,
        "b_attempts": attempt.attempt,
        "b_next_attempt_at_ms": now_ms if retry_at is None else to_ms(retry_at),
        "b_last_status": attempt.status_code,
        "b_last_error": attempt.error,
        "b_updated_at_ms": now_ms,
    }


def _replay(
    connection: Connection,
    delivery_ids: Sequence[int] | None,
    target_id: str | None,
    now_ms: int,
) -> int:
    query = _d.update().where(_d.c.state == DEAD)
    if delivery_ids is not None:
        ids = sorted(set(delivery_ids))
        found = set(
            connection.execute(
                sa.select(_d.c.delivery_id).where(
                    _d.c.delivery_id.in_(ids), _d.c.state == DEAD
                )
            ).scalars()
        )
        missing = [i for i in ids if i not in found]
        if missing:
            raise DeliveryNotFound(missing[0])
        query = query.where(_d.c.delivery_id.in_(ids))
    if target_id is not None:
        query = query.where(_d.c.target_id == target_id)
    replayed = connection.execute(
        query.values(
            state=PENDING,
            attempts=0,
            next_attempt_at_ms=now_ms,
            lease_owner=None,
            lease_until_ms=0,
            updated_at_ms=now_ms,
        )
    )
    return int(replayed.rowcount)


def _dead_letter(row: sa.Row[Any]) -> DeadLetter:
    return DeadLetter(
        row.delivery_id,
        row.target_id,
        row.order_id,
        row.seq,
        row.event_id,
        tuple(row.rule_ids),
        row.attempts,
        row.last_status,
        row.last_error,
        from_ms(row.updated_at_ms),
        orjson.loads(row.body),
    )


# the delivery log


def _attempt_row(attempt: Attempt) -> dict[str, Any]:
    return {
        "target_id": attempt.target_id,
        "delivery_id": attempt.delivery_id,
        "order_id": attempt.order_id,
        "seq": attempt.seq,
        "event_id": attempt.event_id,
        "attempt": attempt.attempt,
        "at_ms": to_ms(attempt.at),
        "status_code": attempt.status_code,
        "error": attempt.error,
        "latency_ms": attempt.latency_ms,
        "outcome": attempt.outcome.value,
    }


def _attempt_from_row(row: sa.Row[Any]) -> Attempt:
    return Attempt(
        row.target_id,
        row.event_id,
        row.attempt,
        from_ms(row.at_ms),
        row.latency_ms,
        Outcome(row.outcome),
        row.status_code,
        row.error,
        row.delivery_id,
        row.order_id,
        row.seq,
    )


def _prune_attempts(connection: Connection, keep: int) -> None:
    a = webhook_attempts
    for target_id in connection.execute(sa.select(a.c.target_id).distinct()).scalars():
        oldest_kept = connection.execute(
            sa.select(a.c.attempt_id)
            .where(a.c.target_id == target_id)
            .order_by(a.c.attempt_id.desc())
            .offset(keep - 1)
            .limit(1)
        ).scalar()
        if oldest_kept is not None:
            connection.execute(
                a.delete().where(
                    a.c.target_id == target_id, a.c.attempt_id < oldest_kept
                )
            )
