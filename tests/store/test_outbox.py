"""The `WebhookStore` contract on the SQL stores: rules and targets, the
outbox written with events, leases, retries, dead letters and the log.

It runs on every store of `conftest.spec` (the SQL ones keep an outbox).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.engine import Connection

from ordercast.errors import (
    DeliveryNotFound,
    RuleExists,
    RuleNotFound,
    TargetExists,
    TargetInUse,
    TargetNotFound,
    UnknownTarget,
)
from ordercast.lifecycle import Command
from ordercast.routing.rules import Rule, RuleSet, Target, compile_rules
from ordercast.store.base import Store
from ordercast.store.outbox import SqlWebhookStore
from ordercast.store.sql import SqlStore
from ordercast.store.sqlite import SqliteStore
from ordercast.webhooks.base import (
    Attempt,
    Backlog,
    Claimed,
    ClaimRequest,
    Delivery,
    Outcome,
    Settlement,
)
from tests.store.stores import StoreSpec
from tests.store.test_contract import (
    NOW,
    RESTAURANT,
    applied,
    apply_one,
    assign,
    command,
    create,
)

pytestmark = pytest.mark.anyio

EVERYTHING = Rule("all", {}, ("t-1",))
LEASE_S = 30.0


@dataclass
class FixedRoutes:
    """`Routes` with rules set by the test, remembering what was recorded."""

    rules: RuleSet
    recorded_for: list[set[str]] = field(default_factory=list)

    def recorded(self, target_ids: set[str]) -> None:
        self.recorded_for.append(target_ids)


def webhooks_of(store: Store, *rules: Rule) -> tuple[SqlWebhookStore, FixedRoutes]:
    assert isinstance(store, SqlStore)
    webhooks = SqlWebhookStore(store)
    routes = FixedRoutes(compile_rules(rules))
    webhooks.attach(routes)
    return webhooks, routes


@asynccontextmanager
async def another(spec: StoreSpec) -> AsyncIterator[SqlWebhookStore]:
    """The webhook store of a second store on the same database."""
    other = spec.make()
    await other.open()
    assert isinstance(other, SqlStore)
    try:
        yield SqlWebhookStore(other)
    finally:
        await other.close()


async def with_targets(webhooks: SqlWebhookStore, *target_ids: str) -> None:
    for target_id in target_ids:
        target = Target(target_id, f"http://127.0.0.1:9/{target_id}", "s" * 16)
        await webhooks.create_target(target, NOW)


async def claim(
    webhooks: SqlWebhookStore,
    target_id: str = "t-1",
    limit: int = 10,
    owner: str = "me",
    at: timedelta = timedelta(0),
) -> Claimed:
    request = ClaimRequest(target_id, limit, LEASE_S)
    [claimed] = await webhooks.exchange([], [request], owner, NOW + at)
    return claimed


def seqs(claimed: Claimed) -> list[tuple[str, int]]:
    return [(d.order_id, d.seq) for d in claimed.deliveries]


def settled(
    delivery: Delivery,
    outcome: Outcome,
    retry_in: timedelta | None = None,
    status: int | None = 200,
) -> Settlement:
    attempt = Attempt(
        delivery.target_id,
        delivery.event_id,
        delivery.attempts + 1,
        NOW,
        5,
        outcome,
        status,
        None if outcome is Outcome.DELIVERED else f"answered {status}",
        delivery.delivery_id,
        delivery.order_id,
        delivery.seq,
    )
    return Settlement(delivery, attempt, None if retry_in is None else NOW + retry_in)


async def settle(webhooks: SqlWebhookStore, *settlements: Settlement) -> None:
    await webhooks.exchange(settlements, [], "me", NOW)


# the outbox is written with the events


async def test_each_matching_event_gets_a_delivery_per_target_in_its_transaction(
    store: Store,
) -> None:
    # given rules: every event to t-1, accepted orders also to t-2
    accepted = Rule("accepted", {"status": ["ACCEPTED"]}, ("t-2", "t-1"))
    webhooks, routes = webhooks_of(store, EVERYTHING, accepted)
    await with_targets(webhooks, "t-1", "t-2")

    # when an order is created and accepted
    await applied(store, create("o-1"))
    await applied(store, command("o-1", Command.ACCEPT, RESTAURANT))

    # then t-1 has both events (first seq 1, the next once it is done) and t-2
    # has the acceptance, each with the document the rules matched
    first = await claim(webhooks, "t-1")
    assert seqs(first) == [("o-1", 1)]
    assert seqs(await claim(webhooks, "t-2")) == [("o-1", 2)]
    await settle(webhooks, settled(first.deliveries[0], Outcome.DELIVERED))
    assert seqs(await claim(webhooks, "t-1")) == [("o-1", 2)]
    assert routes.recorded_for == [{"t-1"}, {"t-1", "t-2"}]


async def test_the_body_is_the_event_document_with_the_order_parties(
    store: Store,
) -> None:
    # given a rule on the order's courier (null until one is assigned)
    pattern = {"order": {"courierId": [{"anything-but": "c-1"}]}}
    webhooks, _ = webhooks_of(store, Rule("couriers", pattern, ("t-1",)))
    await with_targets(webhooks, "t-1")
    await applied(store, create("o-1"))
    await applied(store, command("o-1", Command.ACCEPT, RESTAURANT))
    event = (await applied(store, assign("o-1", "c-9"))).events[0]

    [delivery] = (await claim(webhooks)).deliveries

    assert orjson.loads(delivery.body) == {
        "type": "order.event",
        "eventId": event.event_id,
        "orderId": "o-1",
        "seq": 3,
        "event": "courier.assigned",
        "status": "COURIER_ASSIGNED",
        "at": "2026-12-03T12:00:00.000Z",
        "data": {"courierId": "c-9"},
        "order": {"customerId": "cu-1", "restaurantId": "r-1", "courierId": "c-9"},
    }
    assert delivery.event_id == event.event_id


async def test_refusals_and_replays_record_no_delivery(store: Store) -> None:
    webhooks, routes = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    await applied(store, create("o-1", key="k"))

    await apply_one(store, create("o-1", key="k"))  # replayed
    await apply_one(store, create("o-1"))  # refused: it exists
    await apply_one(store, command("o-1", Command.DELIVER))  # refused: status

    assert seqs(await claim(webhooks)) == [("o-1", 1)]
    assert routes.recorded_for == [{"t-1"}]


async def test_no_rules_means_no_outbox_rows(store: Store) -> None:
    webhooks, routes = webhooks_of(store)
    await with_targets(webhooks, "t-1")
    await applied(store, create("o-1"))
    assert (await claim(webhooks)).deliveries == ()
    assert routes.recorded_for == []


# claims, leases and order


async def test_only_the_lowest_pending_seq_of_an_order_is_given_out(
    store: Store,
) -> None:
    # given three orders with two events each for one target
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    for order_id in ("o-1", "o-2", "o-3"):
        await applied(store, create(order_id))
        await applied(store, command(order_id, Command.ACCEPT, RESTAURANT))

    # when the target claims while the first ones are out
    first = await claim(webhooks)
    again = await claim(webhooks)

    # then it gets each order's seq 1, and nothing more until they are done
    assert sorted(seqs(first)) == [("o-1", 1), ("o-2", 1), ("o-3", 1)]
    assert again.deliveries == ()
    await settle(webhooks, *(settled(d, Outcome.DELIVERED) for d in first.deliveries))
    assert sorted(seqs(await claim(webhooks))) == [("o-1", 2), ("o-2", 2), ("o-3", 2)]


async def test_a_claim_takes_no_more_than_its_limit_and_says_more_are_due(
    store: Store,
) -> None:
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    for n in range(5):
        await applied(store, create(f"o-{n}"))

    claimed = await claim(webhooks, limit=2)

    assert len(claimed.deliveries) == 2
    assert claimed.next_due_at == NOW


async def test_a_leased_delivery_goes_to_nobody_else_until_the_lease_ends(
    store: Store,
) -> None:
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    await applied(store, create("o-1"))
    assert seqs(await claim(webhooks, owner="a")) == [("o-1", 1)]

    assert (await claim(webhooks, owner="b", at=timedelta(seconds=29))).deliveries == ()
    late = await claim(webhooks, owner="b", at=timedelta(seconds=LEASE_S + 1))
    assert seqs(late) == [("o-1", 1)]


async def test_released_leases_are_due_at_once(store: Store) -> None:
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    await applied(store, create("o-1"))
    await claim(webhooks, owner="a")

    await webhooks.release("a")

    assert seqs(await claim(webhooks, owner="b")) == [("o-1", 1)]


async def test_two_stores_on_one_database_never_claim_the_same_delivery(
    store: Store, spec: StoreSpec
) -> None:
    # given 60 deliveries and two stores (two engines) on one database
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    for n in range(60):
        await applied(store, create(f"o-{n}"))
    async with another(spec) as other:
        # when both claim and settle in turns, at the same time
        async def drain(target: SqlWebhookStore, owner: str) -> list[int]:
            got: list[int] = []
            for _ in range(40):
                [claimed] = await target.exchange(
                    [], [ClaimRequest("t-1", 3, LEASE_S)], owner, NOW
                )
                got += [d.delivery_id for d in claimed.deliveries]
                await target.exchange(
                    [settled(d, Outcome.DELIVERED) for d in claimed.deliveries],
                    [],
                    owner,
                    NOW,
                )
            return got

        mine, theirs = await asyncio.gather(drain(webhooks, "a"), drain(other, "b"))

    # then every delivery went to exactly one of them
    assert not set(mine) & set(theirs)
    assert len(mine) + len(theirs) == 60


# retries and dead letters


async def test_a_retried_delivery_waits_for_its_time_and_holds_its_order_back(
    store: Store,
) -> None:
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    await applied(store, create("o-1"))
    await applied(store, command("o-1", Command.ACCEPT, RESTAURANT))
    [first] = (await claim(webhooks)).deliveries

    await settle(webhooks, settled(first, Outcome.RETRYING, timedelta(seconds=5), 500))

    early = await claim(webhooks, at=timedelta(seconds=4))
    assert early.deliveries == ()
    assert early.next_due_at == NOW + timedelta(seconds=5)
    [again] = (await claim(webhooks, at=timedelta(seconds=5))).deliveries
    assert (again.seq, again.attempts) == (1, 1)


async def test_a_dead_delivery_is_listed_and_no_longer_holds_its_order_back(
    store: Store,
) -> None:
    # given an order whose first delivery gave up
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    await applied(store, create("o-1"))
    await applied(store, command("o-1", Command.ACCEPT, RESTAURANT))
    [first] = (await claim(webhooks)).deliveries
    await settle(webhooks, settled(first, Outcome.DEAD, status=503))

    # then the next one is due, and the dead one is on the list with why
    assert seqs(await claim(webhooks)) == [("o-1", 2)]
    [dead] = await webhooks.dead_letters("t-1", 10)
    assert (dead.delivery_id, dead.seq, dead.attempts) == (first.delivery_id, 1, 1)
    assert (dead.last_status, dead.last_error) == (503, "answered 503")
    assert dead.body["event"] == "order.received"
    assert dead.rule_ids == ("all",)
    assert await webhooks.dead_letters("t-2", 10) == []
    assert (await webhooks.backlog())["t-1"] == Backlog(pending=1, dead=1)


async def test_replay_makes_dead_letters_due_with_fresh_attempts(store: Store) -> None:
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    await applied(store, create("o-1"))
    [first] = (await claim(webhooks)).deliveries
    await settle(webhooks, settled(first, Outcome.DEAD, status=500))

    # an unknown id replays nothing at all
    with pytest.raises(DeliveryNotFound):
        await webhooks.replay([first.delivery_id, 999], None, NOW)
    assert len(await webhooks.dead_letters(None, 10)) == 1

    assert await webhooks.replay([first.delivery_id], None, NOW) == 1
    [again] = (await claim(webhooks)).deliveries
    assert (again.delivery_id, again.attempts) == (first.delivery_id, 0)
    assert await webhooks.dead_letters(None, 10) == []


async def test_replay_by_target_and_discard(store: Store) -> None:
    webhooks, _ = webhooks_of(store, Rule("both", {}, ("t-1", "t-2")))
    await with_targets(webhooks, "t-1", "t-2")
    await applied(store, create("o-1"))
    for target_id in ("t-1", "t-2"):
        [d] = (await claim(webhooks, target_id)).deliveries
        await settle(webhooks, settled(d, Outcome.DEAD, status=500))

    assert await webhooks.replay(None, "t-2", NOW) == 1
    [dead] = await webhooks.dead_letters(None, 10)
    assert dead.target_id == "t-1"
    await webhooks.discard(dead.delivery_id)
    with pytest.raises(DeliveryNotFound):
        await webhooks.discard(dead.delivery_id)
    assert await webhooks.dead_letters(None, 10) == []


# the delivery log


async def test_attempts_are_logged_newest_first_and_pruned(store: Store) -> None:
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    await applied(store, create("o-1"))
    [d] = (await claim(webhooks)).deliveries
    await settle(webhooks, settled(d, Outcome.RETRYING, timedelta(0), 500))
    [d] = (await claim(webhooks)).deliveries
    await settle(webhooks, settled(d, Outcome.DELIVERED))
    test = Attempt("t-1", "test-1", 1, NOW, 3, Outcome.TEST, 204)
    await webhooks.log_attempts([test])

    log = await webhooks.attempts("t-1", 10)
    assert [(a.outcome, a.status_code, a.attempt) for a in log] == [
        (Outcome.TEST, 204, 1),
        (Outcome.DELIVERED, 200, 2),
        (Outcome.RETRYING, 500, 1),
    ]
    await webhooks.prune_attempts(keep=2)
    assert [a.outcome for a in await webhooks.attempts("t-1", 10)] == [
        Outcome.TEST,
        Outcome.DELIVERED,
    ]


# rules and targets


async def test_rules_and_targets_are_stored_and_each_change_bumps_the_version(
    store: Store,
) -> None:
    webhooks, _ = webhooks_of(store)
    version = await webhooks.routing_version()
    target = Target("t-1", "https://example.org/hook", "s" * 16, "partner", 3, 2.5)
    rule = Rule("r-1", {"event": [{"prefix": "order."}]}, ("t-1",), "orders")

    versions = [
        await webhooks.create_target(target, NOW),
        await webhooks.create_rule(rule, NOW),
        await webhooks.update_rule(Rule("r-1", {}, ("t-1",), enabled=False), NOW),
    ]

    assert versions == [version + 1, version + 2, version + 3]
    routing = await webhooks.load_routing()
    assert routing.targets == (target,)
    assert routing.rules == (Rule("r-1", {}, ("t-1",), enabled=False),)
    assert routing.version == version + 3


async def test_refused_changes_say_why_and_change_nothing(store: Store) -> None:
    webhooks, _ = webhooks_of(store)
    await with_targets(webhooks, "t-1")
    await webhooks.create_rule(Rule("r-1", {}, ("t-1",)), NOW)
    before = await webhooks.load_routing()

    with pytest.raises(TargetExists):
        await webhooks.create_target(Target("t-1", "http://x/", "s" * 16), NOW)
    with pytest.raises(TargetNotFound):
        await webhooks.update_target(Target("t-9", "http://x/", "s" * 16), NOW)
    with pytest.raises(TargetNotFound):
        await webhooks.delete_target("t-9")
    with pytest.raises(TargetInUse) as in_use:
        await webhooks.delete_target("t-1")
    assert in_use.value.fields["ruleIds"] == ["r-1"]
    with pytest.raises(RuleExists):
        await webhooks.create_rule(Rule("r-1", {}, ("t-1",)), NOW)
    with pytest.raises(UnknownTarget) as unknown:
        await webhooks.create_rule(Rule("r-2", {}, ("t-1", "t-8", "t-9")), NOW)
    assert unknown.value.fields["targetIds"] == ["t-8", "t-9"]
    with pytest.raises(RuleNotFound):
        await webhooks.update_rule(Rule("r-9", {}, ("t-1",)), NOW)
    with pytest.raises(RuleNotFound):
        await webhooks.delete_rule("r-9")

    assert await webhooks.load_routing() == before


async def test_deleting_a_target_takes_its_deliveries_and_log(store: Store) -> None:
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    await webhooks.create_rule(EVERYTHING, NOW)
    await applied(store, create("o-1"))
    await webhooks.log_attempts([Attempt("t-1", "x", 1, NOW, 1, Outcome.TEST, 200)])

    await webhooks.delete_rule("all")
    await webhooks.delete_target("t-1")

    assert await webhooks.backlog() == {}
    assert await webhooks.attempts("t-1", 10) == []


async def test_deliveries_survive_reopening_the_database(
    store: Store, spec: StoreSpec
) -> None:
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    await applied(store, create("o-1"))
    await claim(webhooks, owner="crashed")  # leased when the process died
    await store.close()

    async with another(spec) as reopened:
        assert (await claim(reopened, at=timedelta(seconds=1))).deliveries == ()
        late = await claim(reopened, at=timedelta(seconds=LEASE_S + 1))
        assert seqs(late) == [("o-1", 1)]
        assert (await reopened.load_routing()).targets[0].target_id == "t-1"


# SQLite only: bookkeeping commits skip the disk, commands never do


async def test_bookkeeping_commits_skip_the_disk_and_leave_commands_durable(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "relaxed.db")
    await store.open()
    try:

        def synchronous(connection: Connection) -> int:
            return int(connection.exec_driver_sql("PRAGMA synchronous").scalar_one())

        relaxed = [await store.transact(synchronous, durable=False) for _ in range(3)]
        durable = [await store.transact(synchronous) for _ in range(3)]
        await applied(store, create("o-1"))
        after = await store.transact(synchronous)
    finally:
        await store.close()

    assert relaxed == [1, 1, 1]  # NORMAL
    assert durable == [2, 2, 2]  # FULL, as configured
    assert after == 2


def _claim_from_a_process(spec: StoreSpec, start: Any, owner: str, found: Any) -> None:
    """Claim and settle deliveries until none are left; report their ids."""

    async def drain() -> None:
        store = spec.make()
        await store.open()
        assert isinstance(store, SqlStore)
        webhooks = SqlWebhookStore(store)
        claimed: list[int] = []
        try:
            start.wait(30)
            while True:
                [got] = await webhooks.exchange(
                    [], [ClaimRequest("t-1", 2, LEASE_S)], owner, NOW
                )
                if not got.deliveries and got.next_due_at is None:
                    break  # nothing left that nobody holds
                claimed += [d.delivery_id for d in got.deliveries]
                done = [settled(d, Outcome.DELIVERED) for d in got.deliveries]
                await webhooks.exchange(done, [], owner, NOW)
                await asyncio.sleep(0.005)  # a turn for the other process
        finally:
            await store.close()
        found.put(claimed)

    asyncio.run(drain())


async def test_processes_sharing_a_database_never_claim_the_same_delivery(
    store: Store, spec: StoreSpec
) -> None:
    # given 80 due deliveries
    webhooks, _ = webhooks_of(store, EVERYTHING)
    await with_targets(webhooks, "t-1")
    for n in range(80):
        await applied(store, create(f"o-{n}"))

    # when two real processes claim and settle them at the same time
    context = multiprocessing.get_context("spawn")
    start, found = context.Barrier(2), context.Queue()
    processes = [
        context.Process(
            target=_claim_from_a_process, args=(spec, start, f"p{n}", found)
        )
        for n in range(2)
    ]
    for process in processes:
        process.start()
    try:
        claimed = [await asyncio.to_thread(found.get, True, 60) for _ in processes]
        for process in processes:
            await asyncio.to_thread(process.join, 60)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()

    # then each delivery went to exactly one of them
    assert [p.exitcode for p in processes] == [0, 0]
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 80
    assert min(len(c) for c in claimed) > 0, "both took part"
