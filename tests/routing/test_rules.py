"""Rules: the index the writer uses routes exactly as testing every rule would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings, strategies as st

from ordercast.lifecycle import Event, OrderState, Status
from ordercast.routing.rules import (
    Rule,
    compile_rules,
    event_document,
    order_after,
    route,
)
from tests.routing import reference

AT = datetime(2026, 12, 3, 12, 0, 5, 120000, tzinfo=UTC)
NAMES = ["order.received", "order.accepted", "courier.assigned", "order.delivered"]
STATUSES = ["RECEIVED", "ACCEPTED", "COURIER_ASSIGNED", "DELIVERED"]


def event(seq: int, name: str, status: Status, **data: Any) -> Event:
    return Event("o-42", seq, f"e-{seq}", name, status, AT, data)


def test_the_document_is_the_frame_without_message_plus_the_order() -> None:
    state = OrderState("o-42", Status.COURIER_ASSIGNED, 3, "cu-7", "r-3", "c-7")
    document = event_document(
        event(3, "courier.assigned", Status.COURIER_ASSIGNED, courierId="c-7"), state
    )
    assert document == {
        "type": "order.event",
        "eventId": "e-3",
        "orderId": "o-42",
        "seq": 3,
        "event": "courier.assigned",
        "status": "COURIER_ASSIGNED",
        "at": "2026-12-03T12:00:05.120Z",
        "data": {"courierId": "c-7"},
        "order": {"customerId": "cu-7", "restaurantId": "r-3", "courierId": "c-7"},
    }


def test_the_order_after_a_log_names_its_parties_and_latest_courier() -> None:
    log = [
        event(
            1, "order.received", Status.RECEIVED, customerId="cu-7", restaurantId="r-3"
        ),
        event(2, "order.accepted", Status.ACCEPTED),
        event(3, "courier.assigned", Status.COURIER_ASSIGNED, courierId="c-1"),
        event(4, "courier.assigned", Status.COURIER_ASSIGNED, courierId="c-2"),
        event(5, "order.picked_up", Status.PICKED_UP),
    ]
    assert order_after(log[:2]) == OrderState("o-42", Status.ACCEPTED, 2, "cu-7", "r-3")
    assert order_after(log) == OrderState(
        "o-42", Status.PICKED_UP, 5, "cu-7", "r-3", "c-2"
    )


def test_route_sends_each_event_once_per_target_with_every_rule_that_matched() -> None:
    rules = compile_rules(
        [
            Rule("b-all", {}, ("t-1",)),
            Rule("a-accepted", {"event": ["order.accepted"]}, ("t-1", "t-2")),
            Rule("off", {}, ("t-3",), enabled=False),
        ]
    )
    state = OrderState("o-42", Status.ACCEPTED, 2, "cu-7", "r-3")
    log = [
        event(1, "order.received", Status.RECEIVED),
        event(2, "order.accepted", Status.ACCEPTED),
    ]

    routed = route(log, state, rules)

    assert [(r.target_id, r.event.seq, r.rule_ids) for r in routed] == [
        ("t-1", 1, ("b-all",)),
        ("t-1", 2, ("a-accepted", "b-all")),
        ("t-2", 2, ("a-accepted",)),
    ]
    assert orjson.loads(routed[0].body) == event_document(log[0], state)


def test_no_rules_route_nothing() -> None:
    rules = compile_rules([Rule("off", {}, ("t-1",), enabled=False)])
    assert rules.is_empty
    assert not compile_rules([Rule("on", {}, ("t-1",))]).is_empty


FIELD_MATCHERS = st.one_of(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=2),
    st.lists(
        st.builds(lambda p: {"prefix": p}, st.sampled_from(["order.", "courier."])),
        min_size=1,
        max_size=1,
    ),
)
SOME = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2)
RULE_PATTERNS = st.fixed_dictionaries(
    {},
    optional={
        "event": FIELD_MATCHERS,
        "status": st.lists(st.sampled_from(STATUSES), min_size=1, max_size=2),
        "seq": st.just([{"numeric": [">", 1]}]),
        "order": st.fixed_dictionaries({"restaurantId": SOME}),
        "data": st.fixed_dictionaries({"tags": SOME}),
    },
)
DOCUMENTS = st.fixed_dictionaries(
    {
        "event": st.sampled_from(NAMES),
        "status": st.sampled_from(STATUSES),
        "seq": st.integers(1, 3),
        "order": st.fixed_dictionaries({"restaurantId": st.sampled_from("abcd")}),
        "data": st.fixed_dictionaries(
            {},
            optional={
                "tags": st.one_of(
                    st.sampled_from("abcd"),
                    st.lists(st.sampled_from("abcd"), max_size=3),
                )
            },
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            RULE_PATTERNS, st.sets(st.sampled_from(["t-1", "t-2", "t-3"]), min_size=1)
        ),
        max_size=8,
    ),
    DOCUMENTS,
)
def test_the_index_routes_as_testing_every_rule_would(
    rules: list[tuple[dict[str, Any], set[str]]], document: dict[str, Any]
) -> None:
    compiled = compile_rules(
        Rule(f"r-{i}", pattern, tuple(sorted(targets)))
        for i, (pattern, targets) in enumerate(rules)
    )

    naive: dict[str, set[str]] = {}
    for i, (pattern, targets) in enumerate(rules):
        if reference.matches(pattern, document):
            for target in targets:
                naive.setdefault(target, set()).add(f"r-{i}")

    got = compiled.routes(document)
    assert {t: set(r) for t, r in got.items()} == naive
    assert all(len(r) == len(set(r)) for r in got.values())


def test_a_rule_is_filed_under_its_most_telling_exact_field() -> None:
    rules = compile_rules(
        [
            Rule(
                "by-restaurant",
                {"event": ["courier.assigned"], "order": {"restaurantId": ["r-3"]}},
                ("t",),
            ),
            Rule(
                "by-event",
                {"event": ["order.accepted"], "status": ["ACCEPTED"]},
                ("t",),
            ),
            Rule("by-status", {"status": ["DELIVERED", "FAILED"]}, ("t",)),
            Rule("anything", {"seq": [{"numeric": [">", 1]}]}, ("t",)),
        ]
    )
    filed = {
        path: {value: [r.rule_id for r in rs] for value, rs in index.items()}
        for path, index in rules.by_path.items()
    }
    assert filed == {
        ("order", "restaurantId"): {"r-3": ["by-restaurant"]},
        ("event",): {"order.accepted": ["by-event"]},
        ("status",): {"DELIVERED": ["by-status"], "FAILED": ["by-status"]},
    }
    assert [r.rule_id for r in rules.unindexed] == ["anything"]
