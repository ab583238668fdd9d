"""Rules on AWS: SNS subscription filter policies and the webhook stack.

On AWS the order workflow already announces every event on the SNS topic
(`ordercast.aws.asl`), so a rule becomes a subscription of its target's SQS
queue to that topic, with a filter policy on the message body; the target's
webhook function reads the queue and posts (`ordercast.aws.webhooks`).
docs/webhooks.md explains the choice over EventBridge.

SNS filter policies read almost the same language as our patterns, but not
quite: the message is the event as the workflow carries it (`name` where the
document has `event`, no `order`), and SNS caps a policy at five top-level
keys and 150 combinations. So a policy is a pre-filter: each part of a
pattern SNS can say is kept as it is, and each part it cannot is left out,
which only lets more through. The webhook function applies the whole
pattern, with ordercast's own matcher, before it posts. A policy that kept
every part (`exact`) passes exactly the events the pattern matches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ordercast.routing.pattern import is_number, parse_pattern

MESSAGE_FIELDS = {
    "event": "name",
    "orderId": "orderId",
    "seq": "seq",
    "eventId": "eventId",
    "status": "status",
    "at": "at",
}
"""Top-level document fields and their names in the SNS message body."""

CONSTANT_FIELDS = {"type": "order.event"}
"""Document fields with the same value in every event: decided when generating."""

KEEP_FIRST = ("name", "status", "data", "orderId", "seq", "eventId", "at")
"""Which keys a policy keeps when it must drop some, most selective first."""

MAX_KEYS = 5
"""SNS: at most five top-level keys in a filter policy."""

MAX_COMBINATIONS = 150
"""SNS: values multiplied by nesting depth, over every array, at most 150."""

MAX_NUMBER = 1_000_000_000
"""SNS compares numbers strictly between minus and plus this, to 5 decimals."""


@dataclass(frozen=True)
class FilterPolicy:
    """A pattern as an SNS filter policy on the message body."""

    policy: dict[str, Any] | None
    """The policy; None when the pattern needs none (it lets everything in)."""
    exact: bool
    """Whether SNS passes exactly what the pattern matches, no more."""
    never: bool = False
    """The pattern matches no event at all (it asks for a field events lack)."""


def filter_policy(pattern: dict[str, Any]) -> FilterPolicy:
    """The SNS filter policy closest to `pattern` that lets no match through.

    Raises:
        InvalidPattern: the pattern is not valid.
    """
    parse_pattern(pattern)
    leaves: list[tuple[tuple[str, ...], list[Any]]] = []
    exact = True
    for key, value in pattern.items():
        if key in CONSTANT_FIELDS:
            if not parse_pattern({key: value}).matches(CONSTANT_FIELDS):
                return FilterPolicy(None, False, never=True)
        elif key in MESSAGE_FIELDS and isinstance(value, list):
            leaves.append(((MESSAGE_FIELDS[key],), value))
        elif key == "data" and isinstance(value, dict):
            found, complete = _data_leaves(value)
            leaves += found
            exact = exact and complete
        elif key in ("order", "data") or key in MESSAGE_FIELDS:
            exact = False  # not in the message, or deeper than SNS can see
        elif not parse_pattern({key: value}).matches({}):
            return FilterPolicy(None, False, never=True)  # a field no event has
    sayable = [(path, m) for path, m in leaves if _can_say(m)]
    kept = _within_limits(sayable)
    exact = exact and len(kept) == len(leaves)
    if not kept:
        return FilterPolicy(None, exact)
    return FilterPolicy(_nest(kept), exact)


def _data_leaves(
    value: dict[str, Any],
) -> tuple[list[tuple[tuple[str, ...], list[Any]]], bool]:
    """Fields of `data` one level down; deeper ones are left to the function
    (`data.details` holds whatever the platform sent, arrays of objects
    included, where SNS and our matcher could disagree)."""
    found: list[tuple[tuple[str, ...], list[Any]]] = []
    complete = True
    for key, matchers in value.items():
        if isinstance(matchers, list):
            found.append((("data", key), matchers))
        else:
            complete = False
    return found, complete


def _can_say(matchers: list[Any]) -> bool:
    """Whether SNS reads every matcher of a field as our matcher does."""
    return all(_sayable(m) for m in matchers)


def _sayable(matcher: Any) -> bool:
    if isinstance(matcher, str):
        return True
    if isinstance(matcher, bool) or matcher is None:
        return False  # SNS does not match booleans or null in a body
    if is_number(matcher):
        return _small(matcher)
    ((operator, argument),) = matcher.items()
    if operator in ("prefix", "suffix", "exists"):
        return True
    if operator == "equals-ignore-case":
        return bool(argument) and argument == argument.lower()
    if operator == "numeric":
        return all(_small(n) for n in argument[1::2])
    if operator == "anything-but":
        values = argument if isinstance(argument, list) else [argument]
        if isinstance(argument, dict):
            return True
        return all(isinstance(v, str) for v in values) or all(
            is_number(v) and _small(v) for v in values
        )
    return False


def _small(number: float) -> bool:
    return abs(number) < MAX_NUMBER and math.isclose(number, round(number, 5))


def _within_limits(
    leaves: list[tuple[tuple[str, ...], list[Any]]],
) -> list[tuple[tuple[str, ...], list[Any]]]:
    """Leaves the most selective keys within SNS's limits, dropping the rest."""
    ranked = sorted(
        leaves, key=lambda leaf: (KEEP_FIRST.index(leaf[0][0]), len(leaf[1]))
    )
    kept: list[tuple[tuple[str, ...], list[Any]]] = []
    for leaf in ranked:
        trial = [*kept, leaf]
        if len({path[0] for path, _ in trial}) > MAX_KEYS:
            continue
        if _combinations(trial) > MAX_COMBINATIONS:
            continue
        kept = trial
    return kept


def _combinations(leaves: Iterable[tuple[tuple[str, ...], list[Any]]]) -> int:
    total = 1
    for path, matchers in leaves:
        total *= len(matchers) * len(path)
    return total


def _nest(leaves: list[tuple[tuple[str, ...], list[Any]]]) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    for path, matchers in leaves:
        node = policy
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = matchers
    return policy
