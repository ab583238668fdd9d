"""Event patterns: a subset of Amazon EventBridge's pattern language.

A pattern is a JSON object shaped like the document it matches. Each key
names a field; its value is either an object (a pattern for the object
stored under that key) or a non-empty array of matchers, any of which may
match the field (an OR). Every key of the pattern must match (an AND); the
empty pattern `{}` matches every document. docs/webhooks.md states the
language exactly; in short, a matcher is one of:

- a string, number, `true`, `false` or `null`: that exact value;
- `{"prefix": "s"}`, `{"suffix": "s"}`, `{"equals-ignore-case": "s"}`;
- `{"anything-but": v}`, with v a string, a number, a non-empty array of
  them, or `{"prefix": "s"}`;
- `{"numeric": [">", 0, "<=", 5]}`: one comparison (`=`, `<`, `<=`, `>`,
  `>=`) or a lower and an upper bound;
- `{"exists": true}` or `{"exists": false}`.

A field exists when its key is present and its value is not an object (as in
EventBridge, matchers test leaves only). When the value is an array, the
field matches if any element matches. Numbers compare as numbers (`5` matches
`5.0`); a string never matches a number, nor `true` the number 1.

`parse_pattern` checks a pattern and compiles it; an invalid one raises
`InvalidPattern` naming where it breaks the language. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ordercast.errors import InvalidPattern

MAX_DEPTH = 8
"""Most objects nested in a pattern (`data.details.x` is three)."""

MAX_MATCHERS = 256
"""Most matchers in one pattern, all arrays together."""

MAX_KEY_LENGTH = 128

MAX_PATTERN_BYTES = 8192
"""Largest pattern, as compact JSON."""

OPERATORS = (
    "prefix",
    "suffix",
    "equals-ignore-case",
    "anything-but",
    "numeric",
    "exists",
)
"""Every operator a matcher object may name."""

LOWER_BOUNDS = (">", ">=")
UPPER_BOUNDS = ("<", "<=")
COMPARISONS = ("=", *LOWER_BOUNDS, *UPPER_BOUNDS)

Path = tuple[str, ...]
FieldTest = Callable[[Any], bool]
"""Whether the value found at a path (or `ABSENT`) matches a field's matchers."""


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
"""The value of a field whose key is missing (or whose parent is not an object)."""


@dataclass(frozen=True)
class Pattern:
    """A checked, compiled pattern. Build it with `parse_pattern`."""

    source: dict[str, Any]
    """The pattern as given."""
    fields: tuple[tuple[Path, FieldTest], ...] = field(repr=False)
    """One test per array of matchers, with the path of its field."""

    def matches(self, document: Mapping[str, Any]) -> bool:
        """Whether every field of the pattern matches `document`."""
        for path, test in self.fields:
            if not test(value_at(document, path)):
                return False
        return True

    def exact_fields(self) -> list[tuple[Path, frozenset[str]]]:
        """Fields that take exact strings only, each with those strings.

        A document matches only if it holds one of them there (or, in an
        array there, holds one): callers index patterns by them.
        """
        found = []
        for path, _ in self.fields:
            matchers = value_at(self.source, path)
            if all(isinstance(m, str) for m in matchers):
                found.append((path, frozenset(matchers)))
        return found


def value_at(document: Mapping[str, Any], path: Path) -> Any:
    """The value at `path`, or `ABSENT` if a key on the way is missing."""
    value: Any = document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return ABSENT
        value = value[key]
    return value


def parse_pattern(source: Any) -> Pattern:
    """Check a pattern against the language and compile it.

    Raises:
        InvalidPattern: with the path of the first part that breaks the
            language, and why.
    """
    if not isinstance(source, dict):
        raise InvalidPattern("", "a pattern is a JSON object")
    try:
        size = len(orjson.dumps(source))
    except TypeError as exc:
        raise InvalidPattern("", "a pattern holds JSON values only") from exc
    if size > MAX_PATTERN_BYTES:
        raise InvalidPattern("", f"{size} bytes is over the {MAX_PATTERN_BYTES} limit")
    envelope = sorted(ENVELOPE_KEYS & source.keys())
    if envelope:
        raise InvalidPattern(
            envelope[0],
            "patterns address ordercast's event document directly, with no "
            "EventBridge envelope: write its fields (event, status, data, ...) "
            "at the top",
        )
    compiler = _Compiler()
    compiler.walk(source, ())
    return Pattern(source, tuple(compiler.fields))


ENVELOPE_KEYS = frozenset({"detail", "detail-type"})
"""Fields of an EventBridge event's envelope, which ordercast's documents do
not have: a pattern naming them would never match, so it is refused."""


def is_number(value: Any) -> bool:
    """A JSON number: int or float, never a bool, never NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def describe(path: Path, index: int | None = None) -> str:
    """A path as docs and errors write it: `data.items[0]`."""
    text = ".".join(path)
    return text if index is None else f"{text}[{index}]"


# compiling


@dataclass
class _Compiler:
    fields: list[tuple[Path, FieldTest]] = field(default_factory=list)
    matchers: int = 0

    def walk(self, node: dict[str, Any], path: Path) -> None:
        if len(path) >= MAX_DEPTH:
            raise InvalidPattern(describe(path), f"nested deeper than {MAX_DEPTH}")
        for key, value in node.items():
            here = (*path, key)
            if key == "$or":
                raise InvalidPattern(describe(here), "$or is not supported")
            if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
                raise InvalidPattern(
                    describe(path), f"keys are 1 to {MAX_KEY_LENGTH} characters"
                )
            if isinstance(value, dict) and value:
                self.walk(value, here)
            elif isinstance(value, list) and value:
                self.matchers += len(value)
                if self.matchers > MAX_MATCHERS:
                    raise InvalidPattern(
                        describe(here), f"more than {MAX_MATCHERS} matchers in all"
                    )
                self.fields.append((here, _field_test(value, here)))
            else:
                raise InvalidPattern(
                    describe(here),
                    "must be a non-empty object or a non-empty array of matchers",
                )


@dataclass
class _Leaf:
    """The matchers of one field, sorted by kind for fast tests."""

    strings: set[str] = field(default_factory=set)
    numbers: set[float] = field(default_factory=set)
    booleans: set[bool] = field(default_factory=set)
    null: bool = False
    prefixes: list[str] = field(default_factory=list)
    suffixes: list[str] = field(default_factory=list)
    folded: set[str] = field(default_factory=set)
    """equals-ignore-case values, lower-cased."""
    but_strings: list[frozenset[str]] = field(default_factory=list)
    but_numbers: list[frozenset[float]] = field(default_factory=list)
    but_prefixes: list[str] = field(default_factory=list)
    ranges: list[tuple[tuple[str, float], ...]] = field(default_factory=list)
    exists: bool = False
    absent: bool = False

    def add(self, matcher: Any, path: str) -> None:
        if isinstance(matcher, str):
            self.strings.add(matcher)
        elif isinstance(matcher, bool):
            self.booleans.add(matcher)
        elif matcher is None:
            self.null = True
        elif is_number(matcher):
            self.numbers.add(matcher)
        elif isinstance(matcher, dict) and len(matcher) == 1:
            ((operator, argument),) = matcher.items()
            self._add_operator(operator, argument, path)
        else:
            raise InvalidPattern(
                path,
                "a matcher is a string, a finite number, true, false, null, "
                "or an object with one operator",
            )

    def _add_operator(self, operator: str, argument: Any, path: str) -> None:
        where = f"{path}.{operator}"
        if operator in ("prefix", "suffix", "equals-ignore-case"):
            if not isinstance(argument, str):
                raise InvalidPattern(where, "takes a string")
            if operator == "prefix":
                self.prefixes.append(argument)
            elif operator == "suffix":
                self.suffixes.append(argument)
            else:
                self.folded.add(argument.lower())
        elif operator == "anything-but":
            self._add_anything_but(argument, where)
        elif operator == "numeric":
            self.ranges.append(_comparisons(argument, where))
        elif operator == "exists":
            if not isinstance(argument, bool):
                raise InvalidPattern(where, "takes true or false")
            self.exists = self.exists or argument
            self.absent = self.absent or not argument
        else:
            known = ", ".join(OPERATORS)
            raise InvalidPattern(
                path, f"unknown operator {operator!r}; expected one of {known}"
            )

    def _add_anything_but(self, argument: Any, where: str) -> None:
        if isinstance(argument, dict):
            if list(argument) != ["prefix"] or not isinstance(argument["prefix"], str):
                raise InvalidPattern(where, 'takes {"prefix": "..."} as an object')
            self.but_prefixes.append(argument["prefix"])
            return
        values = argument if isinstance(argument, list) else [argument]
        if not values or not all(isinstance(v, str) or is_number(v) for v in values):
            raise InvalidPattern(
                where, "takes a string, a number, or a non-empty array of them"
            )
        self.but_strings.append(frozenset(v for v in values if isinstance(v, str)))
        self.but_numbers.append(frozenset(v for v in values if is_number(v)))

    def test(self) -> FieldTest:
        scalar = self._scalar_test()
        exists, absent = self.exists, self.absent

        def test(value: Any) -> bool:
            if value is ABSENT or isinstance(value, dict):
                return absent
            if exists:
                return True
            if isinstance(value, list):
                return any(scalar(v) for v in value)
            return scalar(value)

        return test

    def _scalar_test(self) -> Callable[[Any], bool]:
        def scalar(value: Any) -> bool:
            if isinstance(value, str):
                return self._matches_string(value)
            if isinstance(value, bool):
                return value in self.booleans
            if value is None:
                return self.null
            if is_number(value):
                return self._matches_number(value)
            return False

        return scalar

    def _matches_string(self, value: str) -> bool:
        return (
            value in self.strings
            or any(value.startswith(p) for p in self.prefixes)
            or any(value.endswith(s) for s in self.suffixes)
            or (bool(self.folded) and value.lower() in self.folded)
            or any(value not in but for but in self.but_strings)
            or any(not value.startswith(p) for p in self.but_prefixes)
        )

    def _matches_number(self, value: float) -> bool:
        return (
            value in self.numbers
            or any(value not in but for but in self.but_numbers)
            or any(_within(value, bounds) for bounds in self.ranges)
        )


def _field_test(matchers: list[Any], path: Path) -> FieldTest:
    leaf = _Leaf()
    for index, matcher in enumerate(matchers):
        leaf.add(matcher, describe(path, index))
    return leaf.test()


def _comparisons(argument: Any, where: str) -> tuple[tuple[str, float], ...]:
    """`[op, n]` or `[lower-op, n, upper-op, m]` as (op, n) pairs, checked."""
    shape = (
        'takes [op, number] or [">" or ">=", low, "<" or "<=", high], '
        "op one of " + " ".join(COMPARISONS)
    )
    if not isinstance(argument, list) or len(argument) not in (2, 4):
        raise InvalidPattern(where, shape)
    pairs = tuple(zip(argument[0::2], argument[1::2], strict=True))
    if not all(op in COMPARISONS and is_number(n) for op, n in pairs):
        raise InvalidPattern(where, shape)
    if len(pairs) == 2:
        (low_op, low), (high_op, high) = pairs
        if low_op not in LOWER_BOUNDS or high_op not in UPPER_BOUNDS:
            raise InvalidPattern(where, shape)
        if not low < high:
            raise InvalidPattern(where, "the lower bound must be below the upper")
    return pairs


def _within(value: float, bounds: tuple[tuple[str, float], ...]) -> bool:
    for op, limit in bounds:
        if op == "=" and not value == limit:
            return False
        if op == "<" and not value < limit:
            return False
        if op == "<=" and not value <= limit:
            return False
        if op == ">" and not value > limit:
            return False
        if op == ">=" and not value >= limit:
            return False
    return True
