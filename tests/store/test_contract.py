"""The `Store` contract, run against every implementation in `conftest.spec`.

Tests in the contract section use only the `Store` protocol, so another
implementation joins by adding a spec. The SQLite-specific checks (the
Alembic migration) sit at the end.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ordercast.errors import (
    Forbidden,
    IdempotencyKeyReused,
    InvalidTransition,
    OrderExists,
    OrderNotFound,
    StoreError,
)
from ordercast.lifecycle import Actor, Command, Event, Request, Role, Status, Timeouts
from ordercast.store.base import (
    Applied,
    DueDeadline,
    Outcome,
    Refused,
    Store,
    Submission,
)
from ordercast.store.schema import metadata
from tests.store.stores import StoreSpec

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
TIMEOUTS = Timeouts(restaurant_timeout_s=300.0, dispatch_timeout_s=600.0)
OPS = Actor(Role.OPS, "ops-1")
RESTAURANT = Actor(Role.RESTAURANT, "r-1")
COURIER = Actor(Role.COURIER, "c-1")


# helpers


def create(
    order_id: str, key: str | None = None, fingerprint: str = "create"
) -> Submission:
    request = Request(
        Command.CREATE, order_id, OPS, customer_id="cu-1", restaurant_id="r-1"
    )
    return Submission(order_id, request, idempotency_key=key, fingerprint=fingerprint)


def command(
    order_id: str,
    name: Command,
    actor: Actor = OPS,
    key: str | None = None,
    fingerprint: str = "",
    **fields: Any,
) -> Submission:
    request = Request(name, order_id, actor, **fields)
    return Submission(
        order_id, request, idempotency_key=key, fingerprint=fingerprint or name.value
    )


def assign(order_id: str, courier_id: str = "c-1") -> Submission:
    return command(order_id, Command.ASSIGN_COURIER, courier_id=courier_id)


def fire(order_id: str, kind: str) -> Submission:
    return Submission(order_id, deadline_kind=kind)


async def apply_one(store: Store, submission: Submission, now: datetime = NOW) -> Any:
    [outcome] = await store.apply([submission], now, TIMEOUTS)
    return outcome


async def applied(store: Store, submission: Submission, now: datetime = NOW) -> Applied:
    outcome = await apply_one(store, submission, now)
    assert isinstance(outcome, Applied), outcome
    return outcome


async def accepted_order(store: Store, order_id: str = "o-1") -> None:
    """Bring an order to ACCEPTED, where assign_courier can repeat forever."""
    await applied(store, create(order_id))
    await applied(store, command(order_id, Command.ACCEPT, RESTAURANT))


def assert_gapless(events: Sequence[Event], count: int) -> None:
    assert [e.seq for e in events] == list(range(1, count + 1))
    assert len({e.event_id for e in events}) == count


async def snapshot(store: Store, order_id: str) -> tuple[Any, ...]:
    far = NOW + timedelta(days=1)
    return (
        await store.get_order(order_id),
        await store.read_events(order_id),
        await store.due_deadlines(far, limit=100),
        await store.next_due_at(),
    )


@asynccontextmanager
async def opened(spec: StoreSpec) -> AsyncIterator[Store]:
    """Another store on the same database: a second engine, or a restart."""
    store = spec.make()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# seq and event ids


async def test_create_and_commands_number_events_1_to_n(store: Store) -> None:
    # given a created order
    outcomes = [await applied(store, create("o-1"))]

    # when it walks the happy path
    for name, actor in [
        (Command.ACCEPT, RESTAURANT),
        (Command.ASSIGN_COURIER, OPS),
        (Command.PICK_UP, COURIER),
        (Command.START_DELIVERY, COURIER),
        (Command.DELIVER, COURIER),
    ]:
        fields = {"courier_id": "c-1"} if name is Command.ASSIGN_COURIER else {}
        submission = command("o-1", name, actor, **fields)
        outcomes.append(await applied(store, submission))

    # then the log runs 1..6 with unique ids, as answered
    answered = [e for outcome in outcomes for e in outcome.events]
    stored = await store.read_events("o-1")
    assert_gapless(stored, 6)
    assert stored == answered
    assert [e.status for e in stored] == [
        Status.RECEIVED,
        Status.ACCEPTED,
        Status.COURIER_ASSIGNED,
        Status.PICKED_UP,
        Status.IN_DELIVERY,
        Status.DELIVERED,
    ]
    assert stored[0].data == {"customerId": "cu-1", "restaurantId": "r-1"}
    assert stored[2].data == {"courierId": "c-1"}
    assert all(e.at == NOW for e in stored)


async def test_event_ids_are_unique_across_orders(store: Store) -> None:
    await store.apply([create(f"o-{i}") for i in range(20)], NOW, TIMEOUTS)

    ids = [(await store.read_events(f"o-{i}"))[0].event_id for i in range(20)]

    assert len(set(ids)) == 20


async def test_batch_on_one_order_numbers_events_in_submission_order(
    store: Store,
) -> None:
    batch = [
        create("o-1"),
        command("o-1", Command.ACCEPT),
        assign("o-1", "c-1"),
        assign("o-1", "c-2"),
    ]

    outcomes = await store.apply(batch, NOW, TIMEOUTS)

    assert [o.events[0].seq for o in outcomes if isinstance(o, Applied)] == [1, 2, 3, 4]
    assert_gapless(await store.read_events("o-1"), 4)
    record = await store.get_order("o-1")
    assert record is not None
    assert record.state.courier_id == "c-2"


async def test_read_events_since_and_limit(store: Store) -> None:
    await store.apply([create("o-1"), command("o-1", Command.ACCEPT)], NOW, TIMEOUTS)
    await store.apply([assign("o-1"), assign("o-1", "c-2")], NOW, TIMEOUTS)

    assert [e.seq for e in await store.read_events("o-1", since_seq=2)] == [3, 4]
    assert [e.seq for e in await store.read_events("o-1", 1, limit=2)] == [2, 3]
    assert await store.read_events("o-1", since_seq=4) == []
    assert await store.read_events("o-unknown") == []


async def test_empty_batch_has_no_outcomes(store: Store) -> None:
    assert await store.apply([], NOW, TIMEOUTS) == []


# one transaction


async def test_status_and_seq_are_written_with_each_event(store: Store) -> None:
    await accepted_order(store)
    for i in range(3):
        # when a command is applied
        outcome = await applied(store, assign("o-1", f"c-{i}"))

        # then the stored order already points at its last event
        record = await store.get_order("o-1")
        assert record is not None
        last = (await store.read_events("o-1"))[-1]
        assert record.state.seq == last.seq == outcome.events[-1].seq
        assert record.state.status is last.status
        assert record == outcome.order
        assert record.updated_at == NOW


async def test_refused_command_writes_nothing(store: Store) -> None:
    # given an order just received
    await applied(store, create("o-1"))
    before = await snapshot(store, "o-1")

    # when a command that does not fit arrives
    outcome = await apply_one(store, command("o-1", Command.DELIVER))

    # then it is refused and nothing changed
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, InvalidTransition)
    assert await snapshot(store, "o-1") == before


async def test_refusals_in_a_batch_leave_the_others_applied(store: Store) -> None:
    await applied(store, create("o-1"))
    intruder = Actor(Role.RESTAURANT, "r-2")
    batch = [
        command("o-1", Command.ACCEPT, intruder),
        command("o-1", Command.ACCEPT, RESTAURANT),
        command("o-1", Command.DELIVER),
        create("o-1"),
        assign("o-1"),
    ]

    outcomes = await store.apply(batch, NOW, TIMEOUTS)

    kinds = [type(o.error) if isinstance(o, Refused) else Applied for o in outcomes]
    assert kinds == [Forbidden, Applied, InvalidTransition, OrderExists, Applied]
    assert_gapless(await store.read_events("o-1"), 3)


async def test_command_on_unknown_order_is_not_found(store: Store) -> None:
    outcome = await apply_one(store, command("o-9", Command.ACCEPT))

    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, OrderNotFound)
    assert await store.get_order("o-9") is None
    assert await store.read_events("o-9") == []


async def test_create_of_a_taken_id_is_refused(store: Store) -> None:
    await applied(store, create("o-1"))

    outcome = await apply_one(store, create("o-1"))

    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, OrderExists)
    assert_gapless(await store.read_events("o-1"), 1)


# idempotency


async def test_repeated_key_returns_the_first_answer_and_records_nothing(
    store: Store,
) -> None:
    # given an accept sent with a key
    await applied(store, create("o-1"))
    accept = command("o-1", Command.ACCEPT, RESTAURANT, key="k-1")
    first = await applied(store, accept)
    before = await snapshot(store, "o-1")

    # when the same request comes again, later
    again = await applied(store, accept, NOW + timedelta(seconds=5))

    # then it is the first answer, replayed, and the log did not grow
    assert again.replayed is True
    assert first.replayed is False
    assert again.events == first.events
    assert again.order == first.order
    assert await snapshot(store, "o-1") == before


async def test_repeated_key_in_the_same_batch_is_replayed(store: Store) -> None:
    first, again = await store.apply(
        [create("o-1", key="k-1"), create("o-1", key="k-1")], NOW, TIMEOUTS
    )

    assert isinstance(first, Applied)
    assert isinstance(again, Applied)
    assert again.replayed is True
    assert again.events == first.events
    assert_gapless(await store.read_events("o-1"), 1)


async def test_repeated_create_key_is_replayed_after_later_commands(
    store: Store,
) -> None:
    first = await applied(store, create("o-1", key="k-1"))
    await applied(store, command("o-1", Command.ACCEPT))

    again = await applied(store, create("o-1", key="k-1"))

    assert again.replayed is True
    assert again.events == first.events
    assert again.order.state.status is Status.RECEIVED


async def test_key_reused_for_another_request_is_refused(store: Store) -> None:
    await applied(store, create("o-1", key="k-1", fingerprint="one"))
    before = await snapshot(store, "o-1")

    outcome = await apply_one(store, create("o-1", key="k-1", fingerprint="two"))

    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, IdempotencyKeyReused)
    assert outcome.error.fields == {"idempotencyKey": "k-1"}
    assert await snapshot(store, "o-1") == before


async def test_key_that_first_got_a_refusal_replays_the_refusal(store: Store) -> None:
    # given an accept refused because the order did not exist yet
    accept = command("o-1", Command.ACCEPT, RESTAURANT, key="k-1")
    first = await apply_one(store, accept)
    assert isinstance(first, Refused)

    # when the order now exists and the same request comes again
    await applied(store, create("o-1"))
    again = await apply_one(store, accept)

    # then it gets the same refusal, and the order was not accepted
    assert isinstance(again, Refused)
    assert type(again.error) is OrderNotFound
    assert again.error.to_wire() == first.error.to_wire()
    assert_gapless(await store.read_events("o-1"), 1)


async def test_same_key_from_two_subjects_are_two_requests(store: Store) -> None:
    await store.apply([create("o-1"), create("o-2")], NOW, TIMEOUTS)
    first = command("o-1", Command.ACCEPT, RESTAURANT, key="k-1")
    other = Actor(Role.OPS, "ops-2")
    second = command("o-2", Command.ACCEPT, other, key="k-1", fingerprint="other")

    outcomes = await store.apply([first, second], NOW, TIMEOUTS)

    assert [isinstance(o, Applied) and not o.replayed for o in outcomes] == [True] * 2


# deadlines


async def test_create_sets_the_restaurant_deadline(store: Store) -> None:
    await applied(store, create("o-1"))
    due_at = NOW + timedelta(seconds=300)

    assert await store.next_due_at() == due_at
    assert await store.due_deadlines(due_at - timedelta(milliseconds=1), 10) == []
    assert await store.due_deadlines(due_at, 10) == [
        DueDeadline("o-1", "restaurant_answer", due_at)
    ]


async def test_leaving_a_status_clears_its_deadline(store: Store) -> None:
    # given a received order
    await applied(store, create("o-1"))
    later = NOW + timedelta(seconds=10)

    # when the restaurant accepts, then only the courier deadline is left
    await applied(store, command("o-1", Command.ACCEPT), later)
    due_at = later + timedelta(seconds=600)
    assert await store.next_due_at() == due_at
    assert await store.due_deadlines(due_at, 10) == [
        DueDeadline("o-1", "courier_assignment", due_at)
    ]

    # when a courier is assigned, then no deadline is left
    await applied(store, assign("o-1"), later)
    assert await store.next_due_at() is None
    assert await store.due_deadlines(due_at, 10) == []


async def test_due_deadlines_come_earliest_first_up_to_the_limit(
    store: Store,
) -> None:
    for i in (2, 0, 1):
        await applied(store, create(f"o-{i}"), NOW + timedelta(seconds=i))
    far = NOW + timedelta(days=1)

    due = await store.due_deadlines(far, limit=2)

    assert [d.order_id for d in due] == ["o-0", "o-1"]
    assert await store.next_due_at() == NOW + timedelta(seconds=300)


async def test_restaurant_deadline_rejects_a_received_order(store: Store) -> None:
    await applied(store, create("o-1"))
    due_at = NOW + timedelta(seconds=300)

    outcome = await applied(store, fire("o-1", "restaurant_answer"), due_at)

    [event] = outcome.events
    assert (event.seq, event.name, event.status) == (2, "order.rejected", "REJECTED")
    assert event.data == {"reason": "restaurant_timeout"}
    assert await store.read_events("o-1", since_seq=1) == [event]
    assert await store.next_due_at() is None


async def test_courier_deadline_fires_once_and_keeps_the_order_accepted(
    store: Store,
) -> None:
    # given an accepted order whose courier deadline came due
    await accepted_order(store)
    due_at = NOW + timedelta(seconds=600)

    # when the deadline is fired twice (two engines, or a retry)
    first = await applied(store, fire("o-1", "courier_assignment"), due_at)
    second = await applied(store, fire("o-1", "courier_assignment"), due_at)

    # then one dispatch.overdue is recorded and the order stays ACCEPTED
    assert [e.name for e in first.events] == ["dispatch.overdue"]
    assert second.events == ()
    assert [e.name for e in await store.read_events("o-1")] == [
        "order.received",
        "order.accepted",
        "dispatch.overdue",
    ]
    record = await store.get_order("o-1")
    assert record is not None
    assert record.state.status is Status.ACCEPTED
    assert await store.next_due_at() is None


async def test_deadline_fired_before_it_is_due_does_nothing(store: Store) -> None:
    await applied(store, create("o-1"))
    before = await snapshot(store, "o-1")

    outcome = await applied(store, fire("o-1", "restaurant_answer"), NOW)

    assert outcome.events == ()
    assert await snapshot(store, "o-1") == before


async def test_stale_deadline_does_nothing(store: Store) -> None:
    # given an order accepted before its restaurant deadline
    await accepted_order(store)
    before = await snapshot(store, "o-1")

    # when the old deadline is fired anyway
    far = NOW + timedelta(days=1)
    outcome = await applied(store, fire("o-1", "restaurant_answer"), far)

    # then nothing is recorded
    assert outcome.events == ()
    assert outcome.order.state.status is Status.ACCEPTED
    assert await snapshot(store, "o-1") == before


async def test_deadline_of_unknown_order_is_refused(store: Store) -> None:
    outcome = await apply_one(store, fire("o-9", "restaurant_answer"))

    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, OrderNotFound)


# leases


async def test_a_leased_deadline_is_not_leased_again_until_the_lease_ends(
    store: Store,
) -> None:
    # given a due restaurant deadline
    await applied(store, create("o-1"))
    due_at = NOW + timedelta(seconds=300)

    # when one caller leases it for 10 s
    first = await store.lease_due_deadlines(due_at, 10, lease_s=10)

    # then no one else gets it during the lease, and everyone after it
    assert first == [DueDeadline("o-1", "restaurant_answer", due_at)]
    assert await store.lease_due_deadlines(due_at, 10, lease_s=10) == []
    assert await store.next_due_at() == due_at + timedelta(seconds=10)
    after = due_at + timedelta(seconds=10)
    assert await store.lease_due_deadlines(after, 10, lease_s=10) == first


async def test_only_due_deadlines_are_leased_earliest_first(store: Store) -> None:
    for i in (2, 0, 1):
        await applied(store, create(f"o-{i}"), NOW + timedelta(seconds=i))
    at = NOW + timedelta(seconds=301)

    leased = await store.lease_due_deadlines(at, 10, lease_s=5)

    assert [d.order_id for d in leased] == ["o-0", "o-1"]
    assert await store.due_deadlines(at, 10) == leased  # still stored


async def test_a_fired_deadline_is_gone_for_every_caller(store: Store) -> None:
    # given a deadline leased and fired
    await applied(store, create("o-1"))
    due_at = NOW + timedelta(seconds=300)
    [deadline] = await store.lease_due_deadlines(due_at, 10, lease_s=1)
    await applied(store, fire(deadline.order_id, deadline.kind), due_at)

    # then, once the lease has ended, there is nothing left to lease
    later = due_at + timedelta(seconds=5)
    assert await store.lease_due_deadlines(later, 10, lease_s=1) == []
    assert await store.next_due_at() is None


async def test_two_stores_leasing_at_once_share_the_deadlines_out(
    store: Store, spec: StoreSpec
) -> None:
    # given 40 due deadlines
    await store.apply([create(f"o-{i}") for i in range(40)], NOW, TIMEOUTS)
    due_at = NOW + timedelta(seconds=300)

    # when two stores (two nodes) lease in small bites at once
    async with opened(spec) as other:
        bites = [
            target.lease_due_deadlines(due_at, 5, lease_s=60)
            for _ in range(6)
            for target in (store, other)
        ]
        leased = [d.order_id for bite in await asyncio.gather(*bites) for d in bite]

    # then each deadline went to exactly one of them
    assert sorted(leased) == sorted(f"o-{i}" for i in range(40))


# current seqs


async def test_order_seqs_answer_for_the_orders_that_exist(store: Store) -> None:
    await accepted_order(store, "o-1")
    await applied(store, create("o-2"))

    seqs = await store.order_seqs(["o-1", "o-2", "o-unknown"])

    assert seqs == {"o-1": 2, "o-2": 1}
    assert await store.order_seqs([]) == {}


async def test_order_seqs_read_long_lists_in_parts(store: Store) -> None:
    ids = [f"o-{i}" for i in range(2500)]
    await store.apply([create(i) for i in ids[::100]], NOW, TIMEOUTS)

    seqs = await store.order_seqs(ids)

    assert seqs == dict.fromkeys(ids[::100], 1)


async def test_an_open_store_answers_a_ping(store: Store) -> None:
    await store.ping()


# concurrency


async def test_concurrent_applies_on_one_order_keep_seq_gapless(store: Store) -> None:
    # given an accepted order, which assign_courier can move forever
    await accepted_order(store)
    singles = [
        store.apply([assign("o-1", f"c-{i}")], NOW, TIMEOUTS) for i in range(300)
    ]
    batches = [
        store.apply([assign("o-1", f"b{b}-{i}") for i in range(20)], NOW, TIMEOUTS)
        for b in range(5)
    ]

    # when they all run at once
    results = await asyncio.gather(*singles, *batches)

    # then every one applied, and the log runs 1..N
    outcomes: list[Outcome] = [o for result in results for o in result]
    assert all(isinstance(o, Applied) for o in outcomes)
    total = 2 + 300 + 5 * 20
    assert_gapless(await store.read_events("o-1"), total)
    answered = sorted(
        e.seq for o in outcomes if isinstance(o, Applied) for e in o.events
    )
    assert answered == list(range(3, total + 1))
    record = await store.get_order("o-1")
    assert record is not None
    assert record.state.seq == total


async def test_two_stores_on_one_database_keep_seq_gapless(
    store: Store, spec: StoreSpec
) -> None:
    # given a second store (another engine) on the same database
    await accepted_order(store)
    async with opened(spec) as other:
        # when both write to one order at once
        writes = [
            target.apply([assign("o-1", f"{name}-{i}")], NOW, TIMEOUTS)
            for i in range(100)
            for name, target in (("a", store), ("b", other))
        ]
        results = await asyncio.gather(*writes)

    # then the log runs 1..N without a gap
    assert all(isinstance(o, Applied) for [o] in results)
    assert_gapless(await store.read_events("o-1"), 2 + 200)


def _write_from_a_process(spec: StoreSpec, start: Any, count: int, name: str) -> None:
    async def write() -> None:
        store = spec.make()
        await store.open()
        try:
            start.wait(30)
            for i in range(count):
                [outcome] = await store.apply(
                    [assign("o-1", f"{name}-{i}")], datetime.now(UTC), TIMEOUTS
                )
                assert isinstance(outcome, Applied), outcome
        finally:
            await store.close()

    asyncio.run(write())


async def test_stores_in_separate_processes_keep_seq_gapless(
    store: Store, spec: StoreSpec
) -> None:
    # given an accepted order and two real processes with their own stores
    await accepted_order(store)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)  # both write only once both have opened
    processes = [
        context.Process(target=_write_from_a_process, args=(spec, start, 50, f"p{n}"))
        for n in range(2)
    ]
    for process in processes:
        process.start()

    # when they both write to the order at once
    try:
        for process in processes:
            await asyncio.to_thread(process.join, 60)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()

    # then each finished and the log runs 1..N without a gap
    assert [p.exitcode for p in processes] == [0, 0]
    events = await store.read_events("o-1")
    assert_gapless(events, 2 + 2 * 50)
    assert {e.data["courierId"].split("-")[0] for e in events[2:]} == {"p0", "p1"}


async def test_two_stores_creating_one_order_at_once_create_it_once(
    store: Store, spec: StoreSpec
) -> None:
    # given two stores (two nodes) on one database
    async with opened(spec) as other:
        # when both create the same orders at the same moment
        writes = [
            target.apply([create(f"o-{i}")], NOW, TIMEOUTS)
            for i in range(20)
            for target in (store, other)
        ]
        results = await asyncio.gather(*writes)

    # then each order was created once, and the other create was refused
    outcomes = [outcome for [outcome] in results]
    assert sum(isinstance(o, Applied) for o in outcomes) == 20
    refused = [o for o in outcomes if isinstance(o, Refused)]
    assert all(isinstance(o.error, OrderExists) for o in refused)
    for i in range(20):
        assert_gapless(await store.read_events(f"o-{i}"), 1)


async def test_a_deadline_fired_by_two_stores_at_once_fires_once(
    store: Store, spec: StoreSpec
) -> None:
    # given accepted orders whose courier deadline came due
    for i in range(10):
        await accepted_order(store, f"o-{i}")
    due_at = NOW + timedelta(seconds=600)

    # when two stores fire every one of them at the same moment
    async with opened(spec) as other:
        fires = [
            target.apply([fire(f"o-{i}", "courier_assignment")], due_at, TIMEOUTS)
            for i in range(10)
            for target in (store, other)
        ]
        await asyncio.gather(*fires)

    # then each order has one dispatch.overdue
    for i in range(10):
        names = [e.name for e in await store.read_events(f"o-{i}")]
        assert names.count("dispatch.overdue") == 1, names


# durability


async def test_everything_survives_reopening_the_database(
    store: Store, spec: StoreSpec
) -> None:
    # given an order, its deadline and a used key, and the store closed
    await applied(store, create("o-1"))
    accept = command("o-1", Command.ACCEPT, RESTAURANT, key="k-1")
    first = await applied(store, accept)
    before = await snapshot(store, "o-1")
    await store.close()

    # when a new store opens the same database
    async with opened(spec) as reopened:
        # then the order, its log, its deadlines and the key are all there
        assert await snapshot(reopened, "o-1") == before
        again = await applied(reopened, accept)
        assert again.replayed is True
        assert again.events == first.events
        outcome = await applied(reopened, assign("o-1"))
        assert outcome.events[0].seq == 3


async def test_closed_store_refuses_every_call(spec: StoreSpec) -> None:
    # given a store that was used, then closed
    async with opened(spec) as store:
        await applied(store, create("o-1"))

    # then every call raises instead of quietly reconnecting
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.apply([command("o-1", Command.ACCEPT)], NOW, TIMEOUTS),
        lambda: store.get_order("o-1"),
        lambda: store.read_events("o-1"),
        lambda: store.due_deadlines(NOW, 10),
        store.next_due_at,
    ]
    for call in calls:
        with pytest.raises(StoreError, match="closed"):
            await call()


# the schema as migrated


def _schema_of(connection: sa.Connection) -> dict[str, Any]:
    inspector = sa.inspect(connection)
    return {
        "diff": compare_metadata(MigrationContext.configure(connection), metadata),
        "tables": set(inspector.get_table_names()),
        "columns": {
            table: {
                c["name"]: (str(c["type"]), c["nullable"])
                for c in inspector.get_columns(table)
            }
            for table in metadata.tables
        },
        "indexes": {
            # PostgreSQL lists the index behind a unique constraint as well
            table: {
                i["name"]
                for i in inspector.get_indexes(table)
                if "duplicates_constraint" not in i
            }
            for table in metadata.tables
        },
        "dialect": connection.dialect,
    }


async def test_migration_creates_exactly_the_schema_of_schema_py(
    spec: StoreSpec,
) -> None:
    # given a database created by the store's migrations
    with spec.empty() as empty:
        async with opened(empty):
            pass
        schema = await empty.look(_schema_of)

    # then alembic's autogenerate finds nothing to change
    assert schema["diff"] == []

    # and the tables, columns and indexes are those of schema.py
    assert schema["tables"] == {*metadata.tables, "alembic_version"}
    for name, table in metadata.tables.items():
        expected = {
            c.name: (str(c.type.compile(schema["dialect"])), c.nullable)
            for c in table.columns
        }
        assert schema["columns"][name] == expected, name
        assert schema["indexes"][name] == {i.name for i in table.indexes}, name


async def test_stores_opening_a_new_database_at_once_migrate_it_once(
    spec: StoreSpec,
) -> None:
    with spec.empty() as empty:
        stores = [empty.make() for _ in range(3)]

        await asyncio.gather(*(s.open() for s in stores))
        try:
            outcomes = await asyncio.gather(
                *(
                    s.apply([create(f"o-{i}")], NOW, TIMEOUTS)
                    for i, s in enumerate(stores)
                )
            )
        finally:
            for s in stores:
                await s.close()

    assert all(isinstance(o, Applied) for [o] in outcomes)
