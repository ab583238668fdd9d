"""Event patterns: examples of each matcher, definition errors, and properties
checked against the plain reading in tests/routing/reference.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ordercast.errors import InvalidPattern
from ordercast.routing.pattern import parse_pattern
from tests.routing import reference

DOCUMENT = {
    "type": "order.event",
    "orderId": "o-42",
    "seq": 3,
    "event": "courier.assigned",
    "status": "COURIER_ASSIGNED",
    "data": {"courierId": "c-7", "tags": ["vip", "late"], "total": 25.5},
    "order": {"customerId": "cu-7", "restaurantId": "r-3", "courierId": None},
}


def matches(pattern: dict[str, Any], document: dict[str, Any] = DOCUMENT) -> bool:
    return parse_pattern(pattern).matches(document)


# examples


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({}, True),
        ({"event": ["courier.assigned"]}, True),
        ({"event": ["order.received", "courier.assigned"]}, True),
        ({"event": ["order.received"]}, False),
        ({"event": [{"prefix": "courier."}]}, True),
        ({"event": [{"suffix": ".assigned"}]}, True),
        ({"status": [{"equals-ignore-case": "courier_assigned"}]}, True),
        ({"status": [{"anything-but": ["CANCELLED", "FAILED"]}]}, True),
        ({"status": [{"anything-but": "COURIER_ASSIGNED"}]}, False),
        ({"event": [{"anything-but": {"prefix": "order."}}]}, True),
        ({"seq": [3]}, True),
        ({"seq": [3.0]}, True),
        ({"seq": ["3"]}, False),
        ({"seq": [{"numeric": [">", 2, "<=", 3]}]}, True),
        ({"seq": [{"numeric": [">=", 4]}]}, False),
        ({"seq": [{"numeric": ["=", 3]}]}, True),
        ({"data": {"total": [{"numeric": ["<", 30]}]}}, True),
        ({"data": {"courierId": [{"exists": True}]}}, True),
        ({"data": {"reason": [{"exists": False}]}}, True),
        ({"data": {"reason": [{"exists": True}]}}, False),
        ({"data": {"tags": ["vip"]}}, True),
        ({"data": {"tags": [{"anything-but": "vip"}]}}, True),
        ({"order": {"restaurantId": [{"prefix": "r-"}]}, "event": ["x"]}, False),
        ({"order": {"courierId": [None]}}, True),
        ({"order": {"courierId": [{"exists": True}]}}, True),
        ({"order": [{"exists": True}]}, False),
        ({"order": [{"exists": False}]}, True),
        ({"data": {"missing": {"deeper": [{"exists": False}]}}}, True),
        ({"data": {"missing": {"deeper": ["x"]}}}, False),
    ],
)
def test_each_matcher_reads_as_documented(
    pattern: dict[str, Any], expected: bool
) -> None:
    assert matches(pattern) is expected
    assert reference.matches(pattern, DOCUMENT) is expected


def test_true_is_not_the_number_one_nor_a_string() -> None:
    document = {"flag": True, "n": 1}
    assert matches({"flag": [True]}, document)
    assert not matches({"flag": [1]}, document)
    assert not matches({"n": [True]}, document)
    assert not matches({"flag": ["true"]}, document)
    assert not matches({"flag": [{"numeric": [">", 0]}]}, document)


@pytest.mark.parametrize(
    ("pattern", "path", "says"),
    [
        ([], "", "a JSON object"),
        ({"event": "order.received"}, "event", "non-empty array"),
        ({"event": []}, "event", "non-empty array"),
        ({"data": {}}, "data", "non-empty object"),
        ({"event": [{"prefx": "o"}]}, "event[0]", "unknown operator 'prefx'"),
        ({"event": [{"prefix": 1}]}, "event[0].prefix", "takes a string"),
        ({"event": [{"prefix": "a", "suffix": "b"}]}, "event[0]", "one operator"),
        ({"seq": [{"numeric": [">", 5, "<", 5]}]}, "seq[0].numeric", "lower bound"),
        ({"seq": [{"numeric": ["<", 5, ">", 1]}]}, "seq[0].numeric", "takes [op"),
        ({"seq": [{"numeric": ["!=", 5]}]}, "seq[0].numeric", "takes [op"),
        ({"seq": [{"numeric": [">", "5"]}]}, "seq[0].numeric", "takes [op"),
        ({"seq": [{"exists": "yes"}]}, "seq[0].exists", "true or false"),
        ({"s": [{"anything-but": []}]}, "s[0].anything-but", "non-empty array"),
        ({"s": [{"anything-but": {"suffix": "x"}}]}, "s[0].anything-but", "prefix"),
        ({"s": [[1]]}, "s[0]", "a matcher is"),
        ({"": ["x"]}, "", "1 to 128 characters"),
        (
            {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": ["x"]}}}}}}}}},
            "a.b.c.d.e.f.g.h",
            "deeper than 8",
        ),
        ({"s": ["x"] * 257}, "s", "more than 256"),
        ({"s": ["x" * 9000]}, "", "over the 8192 limit"),
        ({"detail": {"status": ["DELIVERED"]}}, "detail", "no EventBridge envelope"),
        ({"detail-type": ["order.event"]}, "detail-type", "no EventBridge envelope"),
        ({"$or": [{"status": ["DELIVERED"]}]}, "$or", "$or is not supported"),
        ({"data": {"$or": [{"reason": ["x"]}]}}, "data.$or", "$or is not supported"),
    ],
)
def test_invalid_pattern_says_where_and_why(pattern: Any, path: str, says: str) -> None:
    with pytest.raises(InvalidPattern) as raised:
        parse_pattern(pattern)
    assert raised.value.fields["path"] == path
    assert says in raised.value.message
    assert raised.value.to_wire()["code"] == "invalid_pattern"
    assert not reference.is_valid(pattern)


# properties: the implementation and the reference read patterns alike
#
# Pools are small so that generated documents often hold the values a
# generated pattern asks for: both verdicts come up often.

KEYS = st.sampled_from(["a", "b", "data"])
STRINGS = st.sampled_from(["", "a", "ab", "Ab", "ba"])
NUMBERS = st.sampled_from([-1, 0, 0.5, 1, 1.0, 2])
SCALARS = st.one_of(STRINGS, NUMBERS, st.booleans(), st.none())
SIGNS = st.sampled_from(["=", "<", "<=", ">", ">="])


def numeric_args() -> st.SearchStrategy[list[Any]]:
    single = st.tuples(SIGNS, NUMBERS)
    ranged = st.tuples(
        st.sampled_from([">", ">="]), NUMBERS, st.sampled_from(["<", "<="]), NUMBERS
    ).filter(lambda t: t[1] < t[3])
    return st.one_of(single, ranged).map(list)


def operator(name: str, argument: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(lambda v: {name: v}, argument)


MATCHERS = st.one_of(
    SCALARS,
    operator("prefix", STRINGS),
    operator("suffix", STRINGS),
    operator("equals-ignore-case", STRINGS),
    operator(
        "anything-but",
        st.one_of(
            STRINGS,
            NUMBERS,
            st.lists(st.one_of(STRINGS, NUMBERS), min_size=1, max_size=3),
            operator("prefix", STRINGS),
        ),
    ),
    operator("numeric", numeric_args()),
    operator("exists", st.booleans()),
)


def patterns(matchers: st.SearchStrategy[Any], min_size: int) -> st.SearchStrategy[Any]:
    arrays = st.lists(matchers, min_size=min_size, max_size=3)
    return st.recursive(
        st.dictionaries(KEYS, arrays, max_size=2),
        lambda inner: st.dictionaries(
            KEYS,
            st.one_of(inner.filter(lambda d: len(d) >= min_size), arrays),
            max_size=2,
        ),
        max_leaves=6,
    )


PATTERNS = patterns(MATCHERS, 1)


def values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(scalars, st.lists(scalars, max_size=3)),
        lambda inner: st.one_of(
            st.fixed_dictionaries({}, optional={"a": inner, "b": inner, "data": inner}),
            st.lists(inner, max_size=2),
        ),
        max_leaves=8,
    )


def documents(scalars: st.SearchStrategy[Any] = SCALARS) -> st.SearchStrategy[Any]:
    inner = values(scalars)
    return st.fixed_dictionaries({}, optional={"a": inner, "b": inner, "data": inner})


DOCUMENTS = documents()


def near(pattern: Any) -> set[Any]:
    """Values close to those a pattern names: themselves, other cases, longer."""
    found: set[Any] = set()
    if isinstance(pattern, dict):
        for value in pattern.values():
            found |= near(value)
    elif isinstance(pattern, list):
        for value in pattern:
            found |= near(value)
    elif isinstance(pattern, str):
        found |= {
            pattern,
            pattern.upper(),
            pattern.lower(),
            pattern + "x",
            "x" + pattern,
        }
    elif reference.is_num(pattern):
        found |= {pattern, pattern + 1, pattern - 0.5}
    return found


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(PATTERNS, st.data())
def test_compiled_patterns_agree_with_the_reference_reading(
    pattern: dict[str, Any], data: st.DataObject
) -> None:
    # given a document made mostly of values near those the pattern names
    close = sorted(near(pattern), key=repr)
    scalars = st.one_of(st.sampled_from(close), SCALARS) if close else SCALARS
    document = data.draw(documents(scalars))

    # then both readings give the same verdict
    assert reference.is_valid(pattern)
    assert parse_pattern(pattern).matches(document) == reference.matches(
        pattern, document
    )


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS)
def test_a_pattern_made_from_a_document_matches_it(document: dict[str, Any]) -> None:
    # given a pattern that asks for the exact value of every scalar field
    pattern = {
        key: [value]
        for key, value in document.items()
        if value is None or isinstance(value, str | int | float | bool)
    }

    # then the document matches, as the reference agrees
    assert parse_pattern(pattern).matches(document)
    assert reference.matches(pattern, document)


# near misses: matchers of the right shape with the wrong parts
NEAR_ARGUMENTS = st.one_of(
    SCALARS,
    st.sampled_from([float("nan"), float("inf")]),
    st.lists(st.one_of(SCALARS, SIGNS), max_size=5),
    st.tuples(SIGNS, NUMBERS).map(list),
    st.tuples(SIGNS, NUMBERS, SIGNS, NUMBERS).map(list),
    st.dictionaries(st.sampled_from(["prefix", "suffix"]), SCALARS, max_size=2),
)
NEAR_MATCHERS = st.one_of(
    MATCHERS,
    st.lists(SCALARS, max_size=2),
    st.dictionaries(
        st.sampled_from(
            [
                "prefix",
                "suffix",
                "equals-ignore-case",
                "anything-but",
                "numeric",
                "exists",
                "wildcard",
                "prefx",
            ]
        ),
        NEAR_ARGUMENTS,
        max_size=2,
    ),
)


@settings(max_examples=800, deadline=None)
@given(st.one_of(patterns(NEAR_MATCHERS, 0), NEAR_ARGUMENTS))
def test_a_pattern_is_refused_exactly_when_the_rules_say_it_is_invalid(
    candidate: Any,
) -> None:
    try:
        parse_pattern(candidate)
    except InvalidPattern:
        assert not reference.is_valid(candidate)
    else:
        assert reference.is_valid(candidate)


# every matcher against every value, on small pools

GRID_STRINGS = ["", "a", "ab", "Ab", "ba"]
GRID_NUMBERS = [-1, 0, 0.5, 1, 1.0, 2]
GRID_SCALARS = [*GRID_STRINGS, *GRID_NUMBERS, True, False, None]
GRID_SIGNS = ["=", "<", "<=", ">", ">="]


def every_matcher() -> list[Any]:
    found: list[Any] = list(GRID_SCALARS)
    for name in ("prefix", "suffix", "equals-ignore-case"):
        found += [{name: s} for s in GRID_STRINGS]
    buts: list[Any] = [*GRID_STRINGS, *GRID_NUMBERS, ["a", 1], ["ab", "ba"], [0, 2]]
    buts += [{"prefix": s} for s in GRID_STRINGS]
    found += [{"anything-but": b} for b in buts]
    found += [{"numeric": [sign, n]} for sign in GRID_SIGNS for n in GRID_NUMBERS]
    found += [
        {"numeric": [low_sign, low, high_sign, high]}
        for low_sign in (">", ">=")
        for high_sign in ("<", "<=")
        for low in GRID_NUMBERS
        for high in GRID_NUMBERS
        if low < high
    ]
    return found + [{"exists": True}, {"exists": False}]


def every_value() -> list[Any]:
    lists = [[a, b] for a in GRID_SCALARS for b in ("a", 1, None)]
    return [*GRID_SCALARS, *lists, [], {}, {"a": "a"}, [[1]], [{"a": 1}]]


def test_every_matcher_reads_every_value_as_the_reference_does() -> None:
    disagreements = []
    for matcher in every_matcher():
        compiled = parse_pattern({"f": [matcher]})
        documents = [{}, *({"f": value} for value in every_value())]
        for document in documents:
            if compiled.matches(document) != reference.matches(
                {"f": [matcher]}, document
            ):
                disagreements.append((matcher, document))
    assert disagreements == []
