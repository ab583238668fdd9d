"""The SQL store: SQLAlchemy Core, shared by SQLite and PostgreSQL.

Each node writes a batch at a time: commands that arrive while a batch is
being written wait and are written together in the next transaction (group
commit). Every submission in a batch sees the effects of those before it, so
seq is assigned without gaps even for commands on the same order.

Across processes and nodes, a batch first locks the rows of the orders it
names (`SELECT … FOR UPDATE`, in order-id order so that two batches never
wait on each other in a cycle); a batch on another node that names one of
them waits until this one commits, then reads the order as committed. SQLite
takes its one write lock at `BEGIN IMMEDIATE` instead and ignores the clause.

Subclasses say how a unit of work reaches the database: `SqliteStore` runs it
on threads, `PostgresStore` on asyncpg through SQLAlchemy's asyncio layer.
Either way the unit of work is the same synchronous SQLAlchemy code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config
from sqlalchemy.engine import Connection
from ulid import ULID

from ordercast.errors import (
    IdempotencyKeyReused,
    OrderNotFound,
    Refusal,
    StoreError,
    refusal_from_wire,
)
from ordercast.lifecycle import (
    DEADLINES,
    Actor,
    Decision,
    Event,
    OrderState,
    Status,
    Timeouts,
    decide,
    fire_deadline,
)
from ordercast.lifecycle.transitions import SYSTEM
from ordercast.routing.rules import Routed, Routes, RuleSet, route
from ordercast.store.base import (
    Applied,
    DueDeadline,
    OrderRecord,
    Outcome,
    OverdueOrder,
    Refused,
    Submission,
)
from ordercast.store.schema import (
    PENDING,
    deadlines,
    events,
    idempotency_keys,
    orders,
    webhook_deliveries,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


def to_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def migrate(connection: Connection) -> None:
    """Bring the schema to the latest Alembic revision, in the caller's transaction."""
    config = Config()
    config.set_main_option("script_location", "ordercast.store:migrations")
    config.attributes["connection"] = connection
    alembic_command.upgrade(config, "head")


Work = Callable[..., Any]
"""A unit of work: a function of a SQLAlchemy `Connection` and its arguments."""


class SqlStore:
    """`Store` on SQLAlchemy Core. Subclasses supply `_write` and `_read`."""

    def __init__(self) -> None:
        self._closed = False
        self.routes: Routes | None = None
        """Rules to match new events against: each match is recorded as a
        webhook delivery in the event's transaction (set by the dispatcher)."""

    async def open(self) -> None:
        await self._write(migrate)

    async def close(self) -> None:
        self._closed = True

    async def ping(self) -> None:
        await self._read(_select_one)

    # commands

    async def apply(
        self, submissions: Sequence[Submission], now: datetime, timeouts: Timeouts
    ) -> list[Outcome]:
        if not submissions:
            return []
        routes = self.routes
        rules = routes.rules if routes is not None else None
        outcomes, targets = await self._write(
            _apply_batch, submissions, now, timeouts, rules
        )
        if routes is not None and targets:
            routes.recorded(targets)
        return list(outcomes)

    async def lease_due_deadlines(
        self, now: datetime, limit: int, lease_s: float
    ) -> list[DueDeadline]:
        # a look first, so that a loop that wakes to nothing writes nothing
        if not await self._read(_any_free_due, to_ms(now)):
            return []
        until_ms = to_ms(now) + int(lease_s * 1000)
        due: list[DueDeadline] = await self._write(
            _lease_due, to_ms(now), limit, until_ms
        )
        return due

    # for the other tables of the same database (ordercast.store.outbox)

    async def transact(
        self, work: Callable[[Connection], T], durable: bool = True
    ) -> T:
        """Run `work` in one write transaction, in turn with command batches.

        With `durable=False` the commit may skip waiting for the disk (where
        the database allows it): for bookkeeping whose loss in a power cut
        only means doing it again, such as webhook leases and attempts.

        Raises:
            StoreError: the database failed; nothing `work` wrote was kept.
        """
        result: T = await (self._write(work) if durable else self._write_lax(work))
        return result

    async def _write_lax(self, work: Work) -> Any:
        """`_write`, with a commit that need not wait for the disk."""
        return await self._write(work)

    async def query(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a reader connection, off the event loop.

        Raises:
            StoreError: the database failed.
        """
        result: T = await self._read(work)
        return result

    # queries

    async def get_order(self, order_id: str) -> OrderRecord | None:
        found: OrderRecord | None = await self._read(_load_order, order_id)
        return found

    async def read_events(
        self, order_id: str, since_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        found: list[Event] = await self._read(_load_events, order_id, since_seq, limit)
        return found

    async def order_seqs(self, order_ids: Sequence[str]) -> dict[str, int]:
        seqs: dict[str, int] = {}
        for start in range(0, len(order_ids), MAX_IDS_PER_QUERY):
            chunk = list(order_ids[start : start + MAX_IDS_PER_QUERY])
            seqs.update(await self._read(_load_seqs, chunk))
        return seqs

    async def due_deadlines(self, now: datetime, limit: int) -> list[DueDeadline]:
        query = (
            sa.select(deadlines)
            .where(deadlines.c.due_at_ms <= to_ms(now))
            .order_by(deadlines.c.due_at_ms)
            .limit(limit)
        )
        rows = await self._read_rows(query)
        return [DueDeadline(r.order_id, r.kind, from_ms(r.due_at_ms)) for r in rows]

    async def next_due_at(self) -> datetime | None:
        # a leased deadline is due again for the others only once its lease ends
        leased = deadlines.c.leased_until_ms
        due_ms = deadlines.c.due_at_ms
        later = sa.case((leased > due_ms, leased), else_=due_ms)
        rows = await self._read_rows(sa.select(sa.func.min(later)))
        next_ms = rows[0][0] if rows else None
        return None if next_ms is None else from_ms(next_ms)

    async def count_by_status(self) -> dict[Status, int]:
        how_many = sa.func.count().label("how_many")
        query = sa.select(orders.c.status, how_many).group_by(orders.c.status)
        rows = await self._read_rows(query)
        return {Status(row.status): int(row.how_many) for row in rows}

    async def overdue_orders(self, limit: int) -> list[OverdueOrder]:
        found: list[OverdueOrder] = []
        for deadline in DEADLINES:
            if deadline.target is not None:
                continue  # it moved the order on: nothing is left waiting
            stored = sa.exists().where(
                deadlines.c.order_id == orders.c.order_id,
                deadlines.c.kind == deadline.kind,
            )
            query = (
                sa.select(orders)
                .where(orders.c.status == deadline.status.value, ~stored)
                .order_by(orders.c.updated_at_ms)
                .limit(limit)
            )
            rows = await self._read_rows(query)
            found.extend(OverdueOrder(_record_from_row(r), deadline.kind) for r in rows)
        return found[:limit]

    # how work reaches the database

    async def _write(self, work: Work, *args: Any) -> Any:
        """Run `work` in one write transaction and commit it.

        Raises:
            StoreError: the store failed or is closed; the transaction was
                rolled back.
        """
        raise NotImplementedError

    async def _read(self, work: Work, *args: Any) -> Any:
        """Run `work` on a connection that only reads.

        Raises:
            StoreError: the store failed or is closed.
        """
        raise NotImplementedError

    async def _read_rows(self, query: sa.Select[Any]) -> list[sa.Row[Any]]:
        rows: list[sa.Row[Any]] = await self._read(_rows_of, query)
        return rows

    def _check_open(self) -> None:
        # Store.close: "calls after this raise"; a disposed engine would
        # otherwise quietly open new connections.
        if self._closed:
            raise StoreError("the store is closed")


MAX_IDS_PER_QUERY = 1000
"""Order ids named in one `IN (…)` list: far below SQLite's and asyncpg's limits."""


def _apply_batch(
    connection: Connection,
    submissions: Sequence[Submission],
    now: datetime,
    timeouts: Timeouts,
    rules: RuleSet | None,
) -> tuple[list[Outcome], set[str]]:
    """The batch's outcomes, and the webhook targets it recorded deliveries for."""
    now = from_ms(to_ms(now))  # what is stored is what is answered
    batch = _Batch(connection, now, timeouts, rules)
    batch.prefetch(submissions)
    outcomes = [batch.apply(submission) for submission in submissions]
    batch.flush()
    return outcomes, {row["target_id"] for row in batch.deliveries}


def _free_and_due(now_ms: int) -> sa.ColumnElement[bool]:
    leased = deadlines.c.leased_until_ms
    return sa.and_(
        deadlines.c.due_at_ms <= now_ms,
        sa.or_(leased.is_(None), leased <= now_ms),
    )


def _any_free_due(connection: Connection, now_ms: int) -> bool:
    query = sa.select(deadlines.c.order_id).where(_free_and_due(now_ms)).limit(1)
    return connection.execute(query).first() is not None


def _lease_due(
    connection: Connection, now_ms: int, limit: int, until_ms: int
) -> list[DueDeadline]:
    """Lease due deadlines that no one holds; rows another node holds are skipped."""
    query = (
        sa.select(deadlines.c.order_id, deadlines.c.kind, deadlines.c.due_at_ms)
        .where(_free_and_due(now_ms))
        .order_by(deadlines.c.due_at_ms)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(connection.execute(query))
    leases = [
        {"b_order_id": r.order_id, "b_kind": r.kind, "leased_until_ms": until_ms}
        for r in rows
    ]
    if leases:
        connection.execute(_lease_deadline, leases)
    return [DueDeadline(r.order_id, r.kind, from_ms(r.due_at_ms)) for r in rows]


def _select_one(connection: Connection) -> None:
    connection.execute(sa.text("SELECT 1"))


def _rows_of(connection: Connection, query: sa.Select[Any]) -> list[sa.Row[Any]]:
    return list(connection.execute(query))


def _load_seqs(connection: Connection, order_ids: list[str]) -> dict[str, int]:
    query = sa.select(orders.c.order_id, orders.c.seq).where(
        orders.c.order_id.in_(order_ids)
    )
    return {row.order_id: row.seq for row in connection.execute(query)}


_select_orders = sa.select(orders).where(
    orders.c.order_id.in_(sa.bindparam("order_ids", expanding=True))
)
_lock_orders = _select_orders.order_by(orders.c.order_id).with_for_update()


def _load_order(connection: Connection, order_id: str) -> OrderRecord | None:
    found = _load_orders(connection, [order_id])
    return found[0] if found else None


def _load_orders(connection: Connection, order_ids: list[str]) -> list[OrderRecord]:
    rows = connection.execute(_select_orders, {"order_ids": order_ids})
    return [_record_from_row(row) for row in rows]


def _record_from_row(row: sa.Row[Any]) -> OrderRecord:
    state = OrderState(
        row.order_id,
        Status(row.status),
        row.seq,
        row.customer_id,
        row.restaurant_id,
        row.courier_id,
    )
    return OrderRecord(state, from_ms(row.created_at_ms), from_ms(row.updated_at_ms))


def _load_events(
    connection: Connection, order_id: str, since_seq: int, limit: int | None = None
) -> list[Event]:
    query = (
        sa.select(events)
        .where(events.c.order_id == order_id, events.c.seq > since_seq)
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [
        Event(
            row.order_id,
            row.seq,
            row.event_id,
            row.name,
            Status(row.status),
            from_ms(row.at_ms),
            row.data,
        )
        for row in connection.execute(query)
    ]


class _Batch:
    """One write transaction: decisions made in memory, rows written in `flush`."""

    def __init__(
        self,
        connection: Connection,
        now: datetime,
        timeouts: Timeouts,
        rules: RuleSet | None = None,
    ):
        self.connection = connection
        self.now = now
        self.timeouts = timeouts
        self.rules = rules if rules is not None and not rules.is_empty else None
        self.deliveries: list[dict[str, Any]] = []
        self.orders: dict[str, OrderRecord | None] = {}
        self.created: set[str] = set()
        self.new_events: list[Event] = []
        self.actors: list[Actor] = []
        self.deadlines: dict[tuple[str, str], int | None] = {}
        self.keys: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self.new_keys: list[dict[str, Any]] = []

    def prefetch(self, submissions: Sequence[Submission]) -> None:
        """Load and lock every order the batch names, in one query."""
        order_ids = sorted({s.order_id for s in submissions})
        self.orders = dict.fromkeys(order_ids)
        rows = self.connection.execute(_lock_orders, {"order_ids": order_ids})
        for row in rows:
            self.orders[row.order_id] = _record_from_row(row)

    def apply(self, submission: Submission) -> Outcome:
        """Decide one submission against the batch's view of the store."""
        actor = submission.request.actor if submission.request else SYSTEM
        key = (actor.subject, submission.idempotency_key or "")
        if submission.idempotency_key:
            seen = self._seen_key(key)
            if seen is not None:
                return self._replay(submission, *seen)

        record = self._order(submission.order_id)
        try:
            decision = self._decide(submission, record)
        except Refusal as refusal:
            self._remember(submission, key, {"error": refusal.to_wire()})
            return Refused(refusal)

        applied = self._record(decision, record, actor)
        answer: dict[str, Any] = {"order": _record_to_json(applied.order)}
        if applied.events:
            answer["seqs"] = [applied.events[0].seq, applied.events[-1].seq]
        self._remember(submission, key, answer)
        return applied

    def _decide(self, submission: Submission, record: OrderRecord | None) -> Decision:
        state = record.state if record else None
        if submission.request is not None:
            return decide(state, submission.request, self.now, self.timeouts)
        assert submission.deadline_kind is not None, (
            "a submission is a command or a deadline"
        )
        if state is None:
            # The order is gone (never created or removed by hand): drop the deadline.
            self.deadlines[(submission.order_id, submission.deadline_kind)] = None
            raise OrderNotFound(submission.order_id)
        if not self._is_due(submission.order_id, submission.deadline_kind):
            # Fired already (another engine on the same database, a retry),
            # cleared by a command, or not due yet: record nothing.
            return Decision(state, ())
        return fire_deadline(state, submission.deadline_kind, self.now, self.timeouts)

    def _is_due(self, order_id: str, kind: str) -> bool:
        """Whether the deadline is still stored, in this batch's view, and due."""
        if (order_id, kind) in self.deadlines:
            due_ms = self.deadlines[(order_id, kind)]
        else:
            due_ms = self.connection.execute(
                sa.select(deadlines.c.due_at_ms).where(
                    deadlines.c.order_id == order_id, deadlines.c.kind == kind
                )
            ).scalar()
        return due_ms is not None and due_ms <= to_ms(self.now)

    def _record(
        self, decision: Decision, before: OrderRecord | None, actor: Actor
    ) -> Applied:
        order_id = decision.order.order_id
        first_seq = decision.order.seq - len(decision.events) + 1
        new = tuple(
            Event(
                order_id, first_seq + i, str(ULID()), e.name, e.status, self.now, e.data
            )
            for i, e in enumerate(decision.events)
        )
        self.new_events.extend(new)
        self.actors.extend(actor for _ in new)
        if self.rules is not None:
            routed = route(new, decision.order, self.rules)
            self.deliveries.extend(_delivery_row(r, self.now) for r in routed)
        if before is None:
            self.created.add(order_id)
        created_at = before.created_at if before else self.now
        updated_at = self.now if new else (before.updated_at if before else self.now)
        record = OrderRecord(decision.order, created_at, updated_at)
        self.orders[order_id] = record
        for kind in decision.deadlines_cleared:
            self.deadlines[(order_id, kind)] = None
        for kind, due_at in decision.deadlines_set:
            self.deadlines[(order_id, kind)] = to_ms(due_at)
        return Applied(record, new)

    # idempotency

    def _seen_key(self, key: tuple[str, str]) -> tuple[str, dict[str, Any]] | None:
        if key in self.keys:
            return self.keys[key]
        row = self.connection.execute(
            sa.select(idempotency_keys.c.fingerprint, idempotency_keys.c.answer).where(
                idempotency_keys.c.subject == key[0], idempotency_keys.c.key == key[1]
            )
        ).first()
        return None if row is None else (row.fingerprint, row.answer)

    def _remember(
        self, submission: Submission, key: tuple[str, str], answer: dict[str, Any]
    ) -> None:
        if not submission.idempotency_key:
            return
        self.keys[key] = (submission.fingerprint, answer)
        self.new_keys.append(
            {
                "subject": key[0],
                "key": key[1],
                "fingerprint": submission.fingerprint,
                "order_id": submission.order_id,
                "answer": answer,
                "created_at_ms": to_ms(self.now),
            }
        )

    def _replay(
        self, submission: Submission, fingerprint: str, answer: dict[str, Any]
    ) -> Outcome:
        if fingerprint != submission.fingerprint:
            return Refused(IdempotencyKeyReused(submission.idempotency_key or ""))
        if "error" in answer:
            return Refused(refusal_from_wire(answer["error"]), replayed=True)
        record = _record_from_json(answer["order"])
        replayed: tuple[Event, ...] = ()
        if "seqs" in answer:
            first, last = answer["seqs"]
            in_batch = [
                e
                for e in self.new_events
                if e.order_id == record.state.order_id and first <= e.seq <= last
            ]
            order_id, count = record.state.order_id, last - first + 1
            stored = _load_events(self.connection, order_id, first - 1, count)
            replayed = tuple(e for e in [*stored, *in_batch] if e.seq <= last)
        return Applied(record, replayed, replayed=True)

    # reads and writes

    def _order(self, order_id: str) -> OrderRecord | None:
        if order_id not in self.orders:
            self.orders[order_id] = _load_order(self.connection, order_id)
        return self.orders[order_id]

    def flush(self) -> None:
        """Write everything decided in this batch; the caller commits."""
        execute = self.connection.execute
        # rows in order-id order, like the locks: two batches that create the
        # same new orders wait on each other in one direction only
        touched = sorted({e.order_id for e in self.new_events})
        rows = [_order_row(self.orders[i]) for i in touched if self.orders[i]]
        inserts = [r for r in rows if r["order_id"] in self.created]
        updates = [r for r in rows if r["order_id"] not in self.created]
        if inserts:
            execute(orders.insert(), inserts)
        if updates:
            execute(
                _update_order, [{**r, "b_order_id": r["order_id"]} for r in updates]
            )
        if self.new_events:
            execute(events.insert(), [_event_row(e, a) for e, a in self._with_actors()])
        if self.deadlines:
            execute(
                _delete_deadline,
                [{"b_order_id": o, "b_kind": k} for o, k in self.deadlines],
            )
            due = [
                {"order_id": o, "kind": k, "due_at_ms": ms}
                for (o, k), ms in self.deadlines.items()
                if ms is not None
            ]
            if due:
                execute(deadlines.insert(), due)
        if self.new_keys:
            keys = sorted(self.new_keys, key=lambda k: (k["subject"], k["key"]))
            execute(idempotency_keys.insert(), keys)
        if self.deliveries:
            execute(webhook_deliveries.insert(), self.deliveries)

    def _with_actors(self) -> zip[tuple[Event, Actor]]:
        return zip(self.new_events, self.actors, strict=True)


_update_order = (
    orders.update()
    .where(orders.c.order_id == sa.bindparam("b_order_id"))
    .values(
        status=sa.bindparam("status"),
        seq=sa.bindparam("seq"),
        courier_id=sa.bindparam("courier_id"),
        updated_at_ms=sa.bindparam("updated_at_ms"),
    )
)

_lease_deadline = (
    deadlines.update()
    .where(
        deadlines.c.order_id == sa.bindparam("b_order_id"),
        deadlines.c.kind == sa.bindparam("b_kind"),
    )
    .values(leased_until_ms=sa.bindparam("leased_until_ms"))
)

_delete_deadline = deadlines.delete().where(
    deadlines.c.order_id == sa.bindparam("b_order_id"),
    deadlines.c.kind == sa.bindparam("b_kind"),
)


def _order_row(record: OrderRecord | None) -> dict[str, Any]:
    assert record is not None, "only orders that exist are written"
    state = record.state
    return {
        "order_id": state.order_id,
        "customer_id": state.customer_id,
        "restaurant_id": state.restaurant_id,
        "courier_id": state.courier_id,
        "status": state.status.value,
        "seq": state.seq,
        "created_at_ms": to_ms(record.created_at),
        "updated_at_ms": to_ms(record.updated_at),
    }


def _event_row(event: Event, actor: Actor) -> dict[str, Any]:
    return {
        "order_id": event.order_id,
        "seq": event.seq,
        "event_id": event.event_id,
        "name": event.name,
        "status": event.status.value,
        "at_ms": to_ms(event.at),
        "data": event.data,
        "actor_role": actor.role.value,
        "actor_subject": actor.subject,
    }


def _delivery_row(routed: Routed, now: datetime) -> dict[str, Any]:
    """An outbox row: due now, leased by nobody."""
    now_ms = to_ms(now)
    return {
        "target_id": routed.target_id,
        "order_id": routed.event.order_id,
        "seq": routed.event.seq,
        "event_id": routed.event.event_id,
        "rule_ids": list(routed.rule_ids),
        "body": routed.body,
        "state": PENDING,
        "attempts": 0,
        "next_attempt_at_ms": now_ms,
        "lease_owner": None,
        "lease_until_ms": 0,
        "last_status": None,
        "last_error": None,
        "created_at_ms": now_ms,
        "updated_at_ms": now_ms,
    }


def _record_to_json(record: OrderRecord) -> dict[str, Any]:
    return _order_row(record)


def _record_from_json(row: dict[str, Any]) -> OrderRecord:
    state = OrderState(
        row["order_id"],
        Status(row["status"]),
        row["seq"],
        row["customer_id"],
        row["restaurant_id"],
        row["courier_id"],
    )
    return OrderRecord(
        state, from_ms(row["created_at_ms"]), from_ms(row["updated_at_ms"])
    )
