"""Rules, targets, and the document a rule's pattern is matched against.

A rule names targets and holds a pattern; an event goes to a target when any
enabled rule naming that target matches the event's document. The document
is also what the target receives, so a pattern reads like the body a
receiver sees:

```json
{"type": "order.event", "eventId": "01JEXAMPLE5K3", "orderId": "o-42",
 "seq": 3, "event": "courier.assigned", "status": "COURIER_ASSIGNED",
 "at": "2026-12-03T12:00:05.120Z", "data": {"courierId": "c-7"},
 "order": {"customerId": "cu-7", "restaurantId": "r-3", "courierId": "c-7"}}
```

It is the WebSocket `order.event` frame without `message` (which depends on
the follower's language) and `eta`, and with `order`: the order's parties once the
event is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ordercast.lifecycle import Event, OrderState
from ordercast.routing.pattern import Path, Pattern, parse_pattern, value_at
from ordercast.wire.frames import format_at

LOW_CARDINALITY = (("event",), ("status",))
"""Fields with few distinct values: a rule is indexed by one of them only when
it asks for no other field exactly."""


@dataclass(frozen=True)
class Target:
    """A webhook endpoint and the secret its requests are signed with."""

    target_id: str
    url: str
    secret: str
    description: str = ""
    max_attempts: int | None = None
    """Attempts before a delivery is dead-lettered; None for the setting."""
    timeout_s: float | None = None
    """How long one attempt may take; None for the setting."""


@dataclass(frozen=True)
class Rule:
    """Events matching `pattern` go to each of `target_ids`."""

    rule_id: str
    pattern: dict[str, Any]
    target_ids: tuple[str, ...]
    description: str = ""
    enabled: bool = True


@dataclass(frozen=True)
class Routing:
    """Every target and rule, as stored, and the version of that set."""

    targets: tuple[Target, ...] = ()
    rules: tuple[Rule, ...] = ()
    version: int = 0


def event_document(event: Event, order: OrderState) -> dict[str, Any]:
    """The document patterns match and targets receive, for `event`.

    `order` is the order once the event is applied (for its parties).
    """
    return {
        "type": "order.event",
        "eventId": event.event_id,
        "orderId": event.order_id,
        "seq": event.seq,
        "event": event.name,
        "status": event.status.value,
        "at": format_at(event.at),
        "data": event.data,
        "order": {
            "customerId": order.customer_id,
            "restaurantId": order.restaurant_id,
            "courierId": order.courier_id,
        },
    }


def order_after(events: Sequence[Event]) -> OrderState:
    """The order's parties and status after `events`, its log from seq 1.

    For runtimes that keep no order row beside the log (the AWS webhook
    function reads the events table): `order.received` names the customer
    and restaurant, the last `courier.assigned` the courier.
    """
    assert events, "an order has at least its first event"
    assert events[0].seq == 1, "the log starts at seq 1"
    first = events[0].data
    courier_id = None
    for event in events:
        if event.name == "courier.assigned":
            courier_id = event.data.get("courierId")
    last = events[-1]
    return OrderState(
        last.order_id,
        last.status,
        last.seq,
        str(first.get("customerId", "")),
        str(first.get("restaurantId", "")),
        courier_id,
    )


@dataclass(frozen=True)
class _Compiled:
    rule_id: str
    pattern: Pattern
    target_ids: tuple[str, ...]


@dataclass(frozen=True)
class RuleSet:
    """Enabled rules, compiled and indexed for the writer. Immutable.

    A rule whose pattern asks for exact strings somewhere is filed under one
    such field and its strings: an event is tested only against the rules
    filed under the values it holds, plus the rules that ask for no exact
    string anywhere. The field chosen is the one likely to tell events apart
    best: anything but `status` and `event` (an order's restaurant, a courier)
    before `event` before `status`, then the fewest strings.
    """

    version: int = 0
    by_path: dict[Path, dict[str, tuple[_Compiled, ...]]] = field(default_factory=dict)
    unindexed: tuple[_Compiled, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.unindexed and not self.by_path

    def routes(self, document: dict[str, Any]) -> dict[str, list[str]]:
        """Targets the document goes to, each with the ids of the rules that
        send it there."""
        found: dict[str, list[str]] = {}
        for rule in self._candidates(document):
            if rule.pattern.matches(document):
                for target_id in rule.target_ids:
                    found.setdefault(target_id, []).append(rule.rule_id)
        return found

    def _candidates(self, document: dict[str, Any]) -> Iterable[_Compiled]:
        yield from self.unindexed
        for path, index in self.by_path.items():
            value = value_at(document, path)
            if isinstance(value, str):
                yield from index.get(value, ())
            elif isinstance(value, list):
                # an array matches if an element does; a rule filed under two
                # of its elements is still tested once
                filed = (index.get(v, ()) for v in set(value) if isinstance(v, str))
                yield from {id(r): r for rules in filed for r in rules}.values()


def compile_rules(rules: Iterable[Rule], version: int = 0) -> RuleSet:
    """Compile and index the enabled rules.

    Raises:
        InvalidPattern: a stored pattern no longer parses (only if the store
            was edited by hand: patterns are checked before they are stored).
    """
    by_path: dict[Path, dict[str, list[_Compiled]]] = {}
    unindexed: list[_Compiled] = []
    for rule in sorted(rules, key=lambda r: r.rule_id):
        if not rule.enabled:
            continue
        pattern = parse_pattern(rule.pattern)
        compiled = _Compiled(rule.rule_id, pattern, rule.target_ids)
        exact = pattern.exact_fields()
        if not exact:
            unindexed.append(compiled)
            continue
        path, values = min(exact, key=_selectivity)
        for value in values:
            by_path.setdefault(path, {}).setdefault(value, []).append(compiled)
    return RuleSet(
        version,
        {p: {v: tuple(rs) for v, rs in idx.items()} for p, idx in by_path.items()},
        tuple(unindexed),
    )


def _selectivity(field: tuple[Path, frozenset[str]]) -> tuple[int, int]:
    """Smaller is more selective (see `RuleSet`)."""
    path, values = field
    rank = LOW_CARDINALITY.index(path) + 1 if path in LOW_CARDINALITY else 0
    return rank, len(values)


@dataclass(frozen=True)
class Routed:
    """One event bound for one target: a delivery for the outbox."""

    target_id: str
    event: Event
    rule_ids: tuple[str, ...]
    """The rules that send it there."""
    body: str
    """The event's document as JSON text: what the target receives."""


def route(events: Iterable[Event], order: OrderState, rules: RuleSet) -> list[Routed]:
    """Every (event, target) pair that `rules` match, in event order.

    `order` is the order once the events are applied.
    """
    routed: list[Routed] = []
    for event in events:
        document = event_document(event, order)
        targets = rules.routes(document)
        if targets:
            body = orjson.dumps(document).decode()
            for target_id, rule_ids in targets.items():
                routed.append(Routed(target_id, event, tuple(sorted(rule_ids)), body))
    return routed


class Routes(Protocol):
    """The rules the store's writer matches each new event against.

    The writer reads `rules` once per transaction and records a delivery for
    every (event, target) they match, in the event's transaction.
    """

    @property
    def rules(self) -> RuleSet:
        """The current rules; an immutable set, swapped whole when they change."""

    def recorded(self, target_ids: set[str]) -> None:
        """Deliveries for these targets were committed.

        Called on the writer's thread, not the event loop's: implementations
        must be thread-safe and return at once.
        """
