"""Store queries behind the ops dashboard: counts per status, overdue orders."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ordercast.lifecycle import Command, Status
from ordercast.store.base import Store
from tests.store.test_contract import (
    NOW,
    RESTAURANT,
    accepted_order,
    applied,
    assign,
    command,
    create,
    fire,
)

pytestmark = pytest.mark.anyio


async def test_orders_are_counted_per_status(store: Store) -> None:
    await applied(store, create("o-1"))
    await applied(store, create("o-2"))
    await accepted_order(store, "o-3")
    await applied(store, create("o-4"))
    await applied(store, command("o-4", Command.REJECT, RESTAURANT))

    counts = await store.count_by_status()

    assert counts == {Status.RECEIVED: 2, Status.ACCEPTED: 1, Status.REJECTED: 1}


async def test_an_empty_store_counts_nothing(store: Store) -> None:
    assert await store.count_by_status() == {}


async def test_an_order_whose_dispatch_deadline_fired_is_overdue(store: Store) -> None:
    # given two accepted orders, one past its courier deadline
    await accepted_order(store, "o-late")
    await accepted_order(store, "o-fine")
    later = NOW + timedelta(minutes=11)
    outcome = await applied(store, fire("o-late", "courier_assignment"), later)
    assert [e.name for e in outcome.events] == ["dispatch.overdue"]

    # when ops asks which orders are overdue
    overdue = await store.overdue_orders(limit=10)

    # then only the late one, still ACCEPTED
    assert [(o.order.state.order_id, o.kind) for o in overdue] == [
        ("o-late", "courier_assignment")
    ]
    assert overdue[0].order.state.status is Status.ACCEPTED


async def test_an_overdue_order_with_a_courier_is_no_longer_overdue(
    store: Store,
) -> None:
    await accepted_order(store, "o-1")
    await applied(store, fire("o-1", "courier_assignment"), NOW + timedelta(minutes=11))

    await applied(store, assign("o-1"))

    assert await store.overdue_orders(limit=10) == []
