"""Client frames in, server frames out: the wire format of DESIGN.md."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ordercast.errors import FrameError, FrameTooLarge, InvalidJson, UnknownAction
from ordercast.lifecycle import DEADLINES, TRANSITIONS, Event, Status
from ordercast.wire.frames import (
    MAX_FRAME_BYTES,
    Location,
    Ping,
    Subscribe,
    Unsubscribe,
    encode,
    event_frame,
    format_at,
    parse_client_frame,
    pong_frame,
    subscribed_frame,
    unsubscribed_frame,
)
from ordercast.wire.messages import message_for, supported_language

DESIGN_EXAMPLE = json.loads(
    """
    {"type": "order.event", "orderId": "o-42", "seq": 3,
     "event": "courier.assigned", "status": "COURIER_ASSIGNED",
     "eventId": "01JEXAMPLE5K3", "at": "2026-12-03T12:00:05.120Z",
     "data": {"courierId": "c-7"},
     "message": "Your courier is on the way to the restaurant"}
    """
)
"""The pushed event of DESIGN.md's "Events" section, verbatim."""

EXAMPLE_EVENT = Event(
    order_id="o-42",
    seq=3,
    event_id="01JEXAMPLE5K3",
    name="courier.assigned",
    status=Status.COURIER_ASSIGNED,
    at=datetime(2026, 12, 3, 12, 0, 5, 120000, tzinfo=UTC),
    data={"courierId": "c-7"},
)


# client frames: every action


def test_subscribe_is_read_with_since() -> None:
    frame = parse_client_frame('{"action": "subscribe", "orderId": "o-1", "since": 4}')

    assert frame == Subscribe(action="subscribe", orderId="o-1", since=4)
    assert isinstance(frame, Subscribe)
    assert frame.order_id == "o-1"
    assert frame.since == 4


def test_subscribe_without_since_starts_from_the_snapshot() -> None:
    frame = parse_client_frame(b'{"action": "subscribe", "orderId": "o-1"}')

    assert isinstance(frame, Subscribe)
    assert frame.since is None


def test_unsubscribe_is_read() -> None:
    frame = parse_client_frame('{"action": "unsubscribe", "orderId": "o-1"}')

    assert isinstance(frame, Unsubscribe)
    assert frame.order_id == "o-1"


def test_ping_is_read() -> None:
    assert isinstance(parse_client_frame('{"action": "ping"}'), Ping)


def test_location_is_read() -> None:
    raw = '{"action": "location", "orderId": "o-1", "lat": 52.52, "lng": -13.4}'

    frame = parse_client_frame(raw)

    assert isinstance(frame, Location)
    assert (frame.order_id, frame.lat, frame.lng) == ("o-1", 52.52, -13.4)


# client frames: refusals


@pytest.mark.parametrize("raw", ["{", '{"action": "ping",}', "", "nul", b"\xff\xfe"])
def test_invalid_json_is_refused(raw: str | bytes) -> None:
    with pytest.raises(InvalidJson) as raised:
        parse_client_frame(raw)

    assert raised.value.code == "invalid_json"
    assert "JSON" in str(raised.value)


@pytest.mark.parametrize("raw", ["[]", '"ping"', "42", "null", '[{"action": "ping"}]'])
def test_json_that_is_not_an_object_is_refused(raw: str) -> None:
    with pytest.raises(InvalidJson, match="object"):
        parse_client_frame(raw)


@pytest.mark.parametrize(
    "raw",
    [
        '{"action": "dance"}',
        '{"orderId": "o-1"}',
        '{"action": null}',
        '{"action": ["ping"]}',
        '{"action": "PING"}',
    ],
)
def test_unknown_or_missing_action_is_refused(raw: str) -> None:
    with pytest.raises(UnknownAction) as raised:
        parse_client_frame(raw)

    assert raised.value.code == "unknown_action"
    for action in ("subscribe", "unsubscribe", "ping", "location"):
        assert action in str(raised.value)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ('{"action": "subscribe"}', "orderId"),
        ('{"action": "unsubscribe"}', "orderId"),
        ('{"action": "location", "orderId": "o-1", "lat": 1}', "lng"),
        ('{"action": "location", "lat": 1, "lng": 2}', "orderId"),
    ],
)
def test_missing_field_is_refused_with_its_name(raw: str, where: str) -> None:
    with pytest.raises(FrameError) as raised:
        parse_client_frame(raw)

    assert type(raised.value) is FrameError
    assert raised.value.code == "invalid_frame"
    assert where in str(raised.value)
    assert str(raised.value).startswith(json.loads(raw)["action"])


@pytest.mark.parametrize(
    "raw",
    [
        '{"action": "subscribe", "orderId": ""}',
        '{"action": "subscribe", "orderId": "o-1", "since": -1}',
        '{"action": "subscribe", "orderId": "o-1", "since": "soon"}',
        '{"action": "subscribe", "orderId": "o-1", "since": "2"}',
        '{"action": "subscribe", "orderId": "o-1", "since": true}',
        '{"action": "subscribe", "orderId": "o-1", "since": 2.5}',
        '{"action": "subscribe", "orderId": "o-1", "since": 99999999999999999999}',
        '{"action": "location", "orderId": "o-1", "lat": 91, "lng": 0}',
        '{"action": "location", "orderId": "o-1", "lat": 0, "lng": -181}',
        '{"action": "ping", "extra": true}',
        '{"action": "subscribe", "order_id": "o-1"}',
    ],
)
def test_malformed_field_is_refused(raw: str) -> None:
    with pytest.raises(FrameError) as raised:
        parse_client_frame(raw)

    assert type(raised.value) is FrameError


def _padded_ping(size: int) -> str:
    """A valid ping frame of exactly `size` bytes."""
    head = '{"action": "ping"'
    return head + " " * (size - len(head) - 1) + "}"


def test_frame_of_exactly_32_kb_is_read() -> None:
    raw = _padded_ping(MAX_FRAME_BYTES)
    assert len(raw.encode()) == 32 * 1024

    assert isinstance(parse_client_frame(raw), Ping)


def test_frame_over_32_kb_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(FrameTooLarge) as raised:
        parse_client_frame(_padded_ping(MAX_FRAME_BYTES + 1))

    assert raised.value.code == "frame_too_large"
    assert str(MAX_FRAME_BYTES + 1) in str(raised.value)
    with pytest.raises(FrameTooLarge):
        parse_client_frame("{" * (MAX_FRAME_BYTES + 1))


def test_frame_size_counts_utf8_bytes_not_characters() -> None:
    # each "é" is two bytes: under the limit in characters, over it in bytes
    order_id = "é" * (MAX_FRAME_BYTES // 2)
    raw = json.dumps({"action": "subscribe", "orderId": order_id}, ensure_ascii=False)
    assert len(raw) < MAX_FRAME_BYTES < len(raw.encode())

    with pytest.raises(FrameTooLarge):
        parse_client_frame(raw)


def test_frame_errors_become_error_frames() -> None:
    with pytest.raises(FrameError) as raised:
        parse_client_frame("[]")

    assert raised.value.to_wire() == {
        "type": "error",
        "code": "invalid_json",
        "message": "frame must be a JSON object",
    }


# server frames


ETA = "2026-12-03T12:31:00.000Z"


def test_event_frame_is_the_design_example_and_the_eta_it_announces() -> None:
    frame = event_frame(EXAMPLE_EVENT, "en", ETA)

    assert frame == {**DESIGN_EXAMPLE, "eta": ETA}
    assert list(frame) == [*DESIGN_EXAMPLE, "eta"]


def test_event_frame_of_a_final_order_announces_no_eta() -> None:
    assert event_frame(EXAMPLE_EVENT, "en")["eta"] is None


def test_encoded_event_frame_is_json_text_of_the_same_frame() -> None:
    text = encode(event_frame(EXAMPLE_EVENT, "en", ETA))

    assert isinstance(text, str)
    assert json.loads(text) == {**DESIGN_EXAMPLE, "eta": ETA}


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (
            datetime(2026, 12, 3, 12, 0, 5, 120000, tzinfo=UTC),
            "2026-12-03T12:00:05.120Z",
        ),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC), "2026-01-02T03:04:05.999Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 1000, tzinfo=UTC), "2026-01-02T03:04:05.001Z"),
    ],
)
def test_at_is_utc_with_milliseconds_and_z(at: datetime, expected: str) -> None:
    assert format_at(at) == expected


def test_at_of_a_non_utc_time_is_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    at = datetime(2026, 12, 3, 13, 0, 5, 120000, tzinfo=paris)

    assert format_at(at) == "2026-12-03T12:00:05.120Z"


def test_at_has_the_rfc3339_shape() -> None:
    at = event_frame(EXAMPLE_EVENT, "en")["at"]

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", at)


def test_subscribed_frame_carries_a_snapshot() -> None:
    frame = subscribed_frame("o-1", "ACCEPTED", 2, eta="2026-12-03T12:30:00.000Z")

    assert frame == {
        "type": "subscribed",
        "orderId": "o-1",
        "snapshot": {
            "status": "ACCEPTED",
            "seq": 2,
            "eta": "2026-12-03T12:30:00.000Z",
            "courierPosition": None,
        },
    }


def test_unsubscribed_and_pong_frames() -> None:
    assert unsubscribed_frame("o-1") == {"type": "unsubscribed", "orderId": "o-1"}
    assert pong_frame() == {"type": "pong"}


# messages


@pytest.mark.parametrize("lang", ["en", "en-GB", "EN", "xx", "zh-TW", "", "zz-Latn-ZZ"])
def test_message_falls_back_to_english(lang: str) -> None:
    frame = event_frame(EXAMPLE_EVENT, lang)

    assert frame["message"] == "Your courier is on the way to the restaurant"


def test_every_event_of_the_lifecycle_has_a_message() -> None:
    names = {row.event for row in TRANSITIONS} | {d.event for d in DEADLINES}

    for name in names:
        message = message_for(name, {}, "en")
        assert message != name
        assert message[0].isupper()


def test_unknown_event_reads_as_its_name() -> None:
    assert message_for("order.teleported", {}, "fr") == "order.teleported"


@pytest.mark.parametrize(
    ("asked", "given"),
    [
        ("en", "en"),
        ("en-US", "en"),
        ("EN", "en"),
        ("xx", "en"),
        (None, "en"),
        ("", "en"),
    ],
)
def test_connection_gets_a_supported_language(asked: str | None, given: str) -> None:
    assert supported_language(asked) == given
