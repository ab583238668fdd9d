"""A second, deliberately plain reading of the pattern language.

It follows docs/webhooks.md sentence by sentence, one matcher at a time, with
no compilation, no indexes and no shared code with ordercast.routing.pattern,
so that the property tests compare two independent readings of the rules.
"""

from __future__ import annotations

import json
import math
from typing import Any

MISSING = object()


def is_num(x: Any) -> bool:
    """A JSON number. `type`, not `isinstance`: True is not a number here."""
    return type(x) in (int, float) and math.isfinite(x)


def matches(pattern: dict[str, Any], value: Any) -> bool:
    """Every key of the pattern must match; an object descends."""
    for key, sub in pattern.items():
        if isinstance(value, dict) and key in value:
            child = value[key]
        else:
            child = MISSING
        if isinstance(sub, dict):
            if not matches(sub, child):
                return False
        elif not any(matcher_matches(m, child) for m in sub):
            return False
    return True


def exists(value: Any) -> bool:
    """Present, and not an object."""
    return value is not MISSING and not isinstance(value, dict)


def matcher_matches(matcher: Any, value: Any) -> bool:
    if isinstance(matcher, dict) and list(matcher) == ["exists"]:
        return exists(value) == matcher["exists"]
    if not exists(value):
        return False
    candidates = value if isinstance(value, list) else [value]
    return any(scalar_matches(matcher, c) for c in candidates)


def scalar_matches(matcher: Any, x: Any) -> bool:
    if matcher is None:
        return x is None
    if matcher is True or matcher is False:
        return x is matcher
    if is_num(matcher):
        return is_num(x) and x == matcher
    if isinstance(matcher, str):
        return isinstance(x, str) and x == matcher
    ((op, arg),) = matcher.items()
    if op == "prefix":
        return isinstance(x, str) and x[: len(arg)] == arg
    if op == "suffix":
        return isinstance(x, str) and (arg == "" or x[-len(arg) :] == arg)
    if op == "equals-ignore-case":
        return isinstance(x, str) and x.lower() == arg.lower()
    if op == "anything-but":
        if isinstance(arg, dict):
            return isinstance(x, str) and x[: len(arg["prefix"])] != arg["prefix"]
        unwanted = arg if isinstance(arg, list) else [arg]
        if isinstance(x, str):
            return x not in [u for u in unwanted if isinstance(u, str)]
        if is_num(x):
            return all(not (is_num(u) and u == x) for u in unwanted)
        return False
    if op == "numeric":
        if not is_num(x):
            return False
        for i in range(0, len(arg), 2):
            sign, limit = arg[i], arg[i + 1]
            ok = {
                "=": x == limit,
                "<": x < limit,
                "<=": x <= limit,
                ">": x > limit,
                ">=": x >= limit,
            }[sign]
            if not ok:
                return False
        return True
    raise AssertionError(f"not a matcher: {matcher!r}")


# which patterns are valid

OPS = ("prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists")


def is_valid(pattern: Any) -> bool:
    """The docs' rules for a pattern, checked one by one."""
    if not isinstance(pattern, dict):
        return False
    compact = json.dumps(pattern, separators=(",", ":"), ensure_ascii=False)
    if len(compact.encode()) > 8192:
        return False
    counted = [0]
    return _valid_object(pattern, 0, counted, top=True) and counted[0] <= 256


def _valid_object(
    node: dict[str, Any], depth: int, counted: list[int], top: bool
) -> bool:
    if not node and not top:
        return False
    if node and depth >= 8:
        return False
    for key, sub in node.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            return False
        if key == "$or" or (top and key in ("detail", "detail-type")):
            return False
        if isinstance(sub, dict):
            if not _valid_object(sub, depth + 1, counted, top=False):
                return False
        elif isinstance(sub, list) and sub:
            counted[0] += len(sub)
            if not all(_valid_matcher(m) for m in sub):
                return False
        else:
            return False
    return True


def _valid_matcher(m: Any) -> bool:
    if m is None or isinstance(m, bool) or isinstance(m, str) or is_num(m):
        return True
    if not isinstance(m, dict) or len(m) != 1:
        return False
    ((op, arg),) = m.items()
    if op in ("prefix", "suffix", "equals-ignore-case"):
        return isinstance(arg, str)
    if op == "exists":
        return isinstance(arg, bool)
    if op == "anything-but":
        if isinstance(arg, dict):
            return list(arg) == ["prefix"] and isinstance(arg["prefix"], str)
        values = arg if isinstance(arg, list) else [arg]
        return bool(values) and all(isinstance(v, str) or is_num(v) for v in values)
    if op == "numeric":
        return _valid_numeric(arg)
    return False


def _valid_numeric(arg: Any) -> bool:
    signs = ("=", "<", "<=", ">", ">=")
    if not isinstance(arg, list):
        return False
    if len(arg) == 2:
        return arg[0] in signs and is_num(arg[1])
    if len(arg) == 4:
        low_sign, low, high_sign, high = arg
        return (
            low_sign in (">", ">=")
            and high_sign in ("<", "<=")
            and is_num(low)
            and is_num(high)
            and low < high
        )
    return False
