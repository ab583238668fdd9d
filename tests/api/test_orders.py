"""The HTTP API against a real server process: orders, commands, errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from ordercast.auth import issue_token
from ordercast.lifecycle import Role
from ordercast.wire.messages import message_for
from tests.support import (
    OPS,
    SECRET,
    Server,
    auth,
    command,
    create_order,
    events_of,
    order_of,
    unique_id,
)


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert len(body["message"]) > 10


def state_of(client: httpx.Client, order_id: str) -> tuple[int, str, list[Any]]:
    """Seq, status and event log: what a refusal must leave as it was."""
    order = order_of(client, order_id)
    return order["seq"], order["status"], events_of(client, order_id)


def new_order(client: httpx.Client, status: str = "RECEIVED") -> str:
    """A fresh order of customer cu-1 and restaurant r-1, moved on to `status`."""
    order_id = unique_id()
    create_order(client, order_id)
    steps = {
        "ACCEPTED": [("accept", {})],
        "COURIER_ASSIGNED": [("accept", {}), ("assign_courier", {"courierId": "c-1"})],
        "PICKED_UP": [
            ("accept", {}),
            ("assign_courier", {"courierId": "c-1"}),
            ("pick_up", {}),
        ],
        "IN_DELIVERY": [
            ("accept", {}),
            ("assign_courier", {"courierId": "c-1"}),
            ("pick_up", {}),
            ("start_delivery", {}),
        ],
    }
    for name, fields in steps.get(status, []):
        response = command(client, order_id, name, **fields)
        assert response.status_code == 200, response.text
    return order_id


# creating orders


def test_create_answers_201_with_the_received_order_and_its_first_event(
    client: httpx.Client,
) -> None:
    order_id = unique_id()

    response = client.post(
        "/orders",
        json={"orderId": order_id, "customerId": "cu-1", "restaurantId": "r-1"},
        headers=OPS,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["order"]["orderId"] == order_id
    assert body["order"]["status"] == "RECEIVED"
    assert body["order"]["seq"] == 1
    assert body["order"]["courierId"] is None
    [event] = body["events"]
    assert event["type"] == "order.event"
    assert event["seq"] == 1
    assert event["event"] == "order.received"
    assert event["data"] == {"customerId": "cu-1", "restaurantId": "r-1"}


@pytest.mark.parametrize(
    ("query", "accept_language", "lang"),
    [
        ({}, None, "en"),
        ({}, "es-MX,es;q=0.9", "es"),
        ({}, "fr;q=1, pt-BR;q=0.5", "pt"),
        ({"lang": "zh-Hans"}, "es", "zh-Hans"),
        ({"lang": "xx"}, "pt", "pt"),
    ],
)
def test_messages_speak_the_callers_language(
    client: httpx.Client,
    query: dict[str, str],
    accept_language: str | None,
    lang: str,
) -> None:
    # given a caller who asks for a language by query, header, or both
    headers = dict(OPS)
    if accept_language is not None:
        headers["Accept-Language"] = accept_language
    order_id = unique_id()
    body = {"orderId": order_id, "customerId": "cu-1", "restaurantId": "r-1"}

    # when it creates an order and reads its log
    created = client.post("/orders", json=body, headers=headers, params=query)
    read = client.get(f"/orders/{order_id}/events", headers=headers, params=query)

    # then both answers carry the message in that language
    data = {"customerId": "cu-1", "restaurantId": "r-1"}
    expected = message_for("order.received", data, lang)
    assert created.json()["events"][0]["message"] == expected
    assert read.json()["events"][0]["message"] == expected


def test_create_without_order_id_generates_a_fresh_one(client: httpx.Client) -> None:
    body = {"customerId": "cu-1", "restaurantId": "r-1"}

    first = client.post("/orders", json=body, headers=OPS)
    second = client.post("/orders", json=body, headers=OPS)

    assert first.status_code == second.status_code == 201
    first_id = first.json()["order"]["orderId"]
    second_id = second.json()["order"]["orderId"]
    assert first_id != second_id
    assert first_id.startswith("o-")
    assert order_of(client, first_id)["status"] == "RECEIVED"


def test_create_records_details_with_the_received_event(client: httpx.Client) -> None:
    order_id = unique_id()
    details = {"items": 3, "dropOff": {"lat": 52.5, "lng": 13.4}}

    response = client.post(
        "/orders",
        json={
            "orderId": order_id,
            "customerId": "cu-1",
            "restaurantId": "r-1",
            "details": details,
        },
        headers=OPS,
    )

    assert response.status_code == 201, response.text
    assert events_of(client, order_id)[0]["data"]["details"] == details


# the lifecycle through the API


def test_happy_path_runs_from_received_to_delivered_with_each_role(
    client: httpx.Client,
) -> None:
    # given
    order_id = unique_id()
    create_order(client, order_id, customer="cu-happy", restaurant="r-happy")
    steps = [
        ("accept", auth("restaurant", "r-happy"), {}, "ACCEPTED", "order.accepted"),
        (
            "assign_courier",
            auth("dispatch", "d-1"),
            {"courierId": "c-happy"},
            "COURIER_ASSIGNED",
            "courier.assigned",
        ),
        ("pick_up", auth("courier", "c-happy"), {}, "PICKED_UP", "order.picked_up"),
        (
            "start_delivery",
            auth("courier", "c-happy"),
            {},
            "IN_DELIVERY",
            "delivery.started",
        ),
        ("deliver", auth("courier", "c-happy"), {}, "DELIVERED", "order.delivered"),
    ]

    # when / then: each command answers with the order and its one new event
    for seq, (name, headers, fields, status, event) in enumerate(steps, start=2):
        response = command(client, order_id, name, headers=headers, **fields)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["order"]["status"] == status
        assert body["order"]["seq"] == seq
        assert [(e["seq"], e["event"], e["status"]) for e in body["events"]] == [
            (seq, event, status)
        ]

    # then: the log tells the whole story
    log = events_of(client, order_id)
    assert [e["seq"] for e in log] == [1, 2, 3, 4, 5, 6]
    assert [e["status"] for e in log] == [
        "RECEIVED",
        "ACCEPTED",
        "COURIER_ASSIGNED",
        "PICKED_UP",
        "IN_DELIVERY",
        "DELIVERED",
    ]
    assert log[2]["data"] == {"courierId": "c-happy"}
    assert order_of(client, order_id)["courierId"] == "c-happy"


@pytest.mark.parametrize(
    ("status", "name", "role", "subject", "ending"),
    [
        ("RECEIVED", "reject", "restaurant", "r-1", "REJECTED"),
        ("RECEIVED", "cancel", "customer", "cu-1", "CANCELLED"),
        ("COURIER_ASSIGNED", "cancel", "restaurant", "r-1", "CANCELLED"),
        ("PICKED_UP", "cancel", "ops", "ops-1", "CANCELLED"),
        ("IN_DELIVERY", "fail", "courier", "c-1", "FAILED"),
    ],
)
def test_an_order_can_end_other_than_delivered(
    client: httpx.Client,
    status: str,
    name: str,
    role: str,
    subject: str,
    ending: str,
) -> None:
    order_id = new_order(client, status)

    response = command(
        client, order_id, name, headers=auth(role, subject), reason="closed early"
    )

    assert response.status_code == 200, response.text
    assert response.json()["order"]["status"] == ending
    assert events_of(client, order_id)[-1]["data"] == {"reason": "closed early"}


def test_reassigning_a_courier_before_pickup_moves_the_order_to_the_new_one(
    client: httpx.Client,
) -> None:
    order_id = new_order(client, "COURIER_ASSIGNED")

    response = command(client, order_id, "assign_courier", courierId="c-2")

    assert response.status_code == 200, response.text
    assert order_of(client, order_id)["courierId"] == "c-2"
    refused = command(client, order_id, "pick_up", headers=auth("courier", "c-1"))
    assert_refused(refused, 403, "forbidden")


# reading orders


def test_get_order_answers_status_seq_and_parties(client: httpx.Client) -> None:
    order_id = new_order(client, "COURIER_ASSIGNED")

    response = client.get(f"/orders/{order_id}", headers=auth("customer", "cu-1"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["orderId"] == order_id
    assert body["status"] == "COURIER_ASSIGNED"
    assert body["seq"] == 3
    assert (body["customerId"], body["restaurantId"]) == ("cu-1", "r-1")
    assert body["courierId"] == "c-1"
    assert body["createdAt"] <= body["updatedAt"]


def test_events_since_returns_only_the_events_after_that_seq(
    client: httpx.Client,
) -> None:
    order_id = new_order(client, "IN_DELIVERY")

    later = events_of(client, order_id, since=2)
    none = events_of(client, order_id, since=5)
    all_of_them = events_of(client, order_id, since=0)

    assert [e["seq"] for e in later] == [3, 4, 5]
    assert none == []
    assert all_of_them[2:] == later


def test_events_with_a_negative_since_are_refused(client: httpx.Client) -> None:
    order_id = new_order(client)

    response = client.get(f"/orders/{order_id}/events?since=-1", headers=OPS)

    assert_refused(response, 422, "invalid_request")


# refusals


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/orders/{id}"),
        ("GET", "/orders/{id}/events"),
        ("POST", "/orders/{id}/commands"),
    ],
)
def test_an_unknown_order_is_404_order_not_found(
    client: httpx.Client, method: str, path: str
) -> None:
    url = path.format(id=unique_id("missing"))

    response = client.request(method, url, json={"command": "accept"}, headers=OPS)

    assert_refused(response, 404, "order_not_found")


@pytest.mark.parametrize(
    ("status", "name", "fields"),
    [
        ("RECEIVED", "pick_up", {}),
        ("RECEIVED", "assign_courier", {"courierId": "c-1"}),
        ("ACCEPTED", "accept", {}),
        ("PICKED_UP", "deliver", {}),
        ("IN_DELIVERY", "assign_courier", {"courierId": "c-2"}),
    ],
)
def test_a_command_that_does_not_fit_is_409_and_changes_nothing(
    client: httpx.Client, status: str, name: str, fields: dict[str, Any]
) -> None:
    order_id = new_order(client, status)
    before = state_of(client, order_id)

    response = command(client, order_id, name, **fields)

    assert_refused(response, 409, "invalid_transition")
    assert response.json()["status"] == status
    assert state_of(client, order_id) == before


def test_a_command_on_a_final_order_is_409(client: httpx.Client) -> None:
    order_id = new_order(client)
    command(client, order_id, "reject")
    before = state_of(client, order_id)

    response = command(client, order_id, "cancel")

    assert_refused(response, 409, "invalid_transition")
    assert "it is REJECTED" in response.json()["message"]
    assert state_of(client, order_id) == before


def test_creating_an_existing_order_is_409_order_exists_and_changes_nothing(
    client: httpx.Client,
) -> None:
    order_id = new_order(client, "ACCEPTED")
    before = state_of(client, order_id)

    response = client.post(
        "/orders",
        json={"orderId": order_id, "customerId": "cu-2", "restaurantId": "r-2"},
        headers=OPS,
    )

    assert_refused(response, 409, "order_exists")
    assert state_of(client, order_id) == before


MALFORMED = "invalid_request"
"""The body does not match the schema."""

UNFIT = "invalid_command"
"""A well-formed command without a field it needs, or with one it does not take."""


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        pytest.param(
            b'{"command": "accept"',
            MALFORMED,
            "the body is not valid JSON at character 20",
            id="malformed-json",
        ),
        pytest.param(b"hello", MALFORMED, "the body is not valid JSON", id="not-json"),
        pytest.param(
            b'["accept"]', MALFORMED, "the body must be a JSON object", id="json-array"
        ),
        pytest.param(
            b'{"command": "teleport"}', MALFORMED, "command:", id="unknown-command"
        ),
        pytest.param(b"{}", MALFORMED, "command: Field required", id="missing-command"),
        pytest.param(
            b'{"command": "assign_courier", "courierId": 7}',
            MALFORMED,
            "courierId:",
            id="courier-id-number",
        ),
        pytest.param(
            b'{"command": "assign_courier", "courierId": "c 7"}',
            MALFORMED,
            "courierId:",
            id="courier-id-space",
        ),
        pytest.param(
            b'{"command": "cancel", "reason": ["x"]}',
            MALFORMED,
            "reason:",
            id="reason-list",
        ),
        pytest.param(
            b'{"command": "accept", "priority": 1}',
            MALFORMED,
            "priority:",
            id="extra-field",
        ),
        pytest.param(
            b'{"command": "accept", "courierId": "c-9"}',
            UNFIT,
            "accept takes no courierId",
            id="courier-on-accept",
        ),
        pytest.param(
            b'{"command": "accept", "reason": "hi"}',
            UNFIT,
            "accept takes no reason",
            id="reason-on-accept",
        ),
        pytest.param(
            b'{"command": "assign_courier"}',
            UNFIT,
            "assign_courier needs courierId",
            id="assign-without-courier",
        ),
    ],
)
@pytest.mark.parametrize("status", ["RECEIVED", "ACCEPTED"])
def test_a_malformed_or_unfit_command_is_422_and_changes_nothing(
    client: httpx.Client, body: bytes, code: str, says: str, status: str
) -> None:
    order_id = new_order(client, status)
    before = state_of(client, order_id)

    response = client.post(
        f"/orders/{order_id}/commands",
        content=body,
        headers={**OPS, "Content-Type": "application/json"},
    )

    assert_refused(response, 422, code)
    assert says in response.json()["message"]
    assert state_of(client, order_id) == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"customerId": "cu-1"}, id="no-restaurant"),
        pytest.param(
            {"orderId": "o/1", "customerId": "cu-1", "restaurantId": "r-1"},
            id="order-id-with-slash",
        ),
        pytest.param(
            {"orderId": "", "customerId": "cu-1", "restaurantId": "r-1"},
            id="empty-order-id",
        ),
        pytest.param(
            {"customerId": "cu-1", "restaurantId": "r-1", "status": "DELIVERED"},
            id="extra-field",
        ),
        pytest.param(
            {"customerId": "cu-1", "restaurantId": "r-1", "details": []},
            id="details-not-an-object",
        ),
        pytest.param(
            {"customerId": "cu-1", "restaurantId": "r-1", "details": {"n": 1e12}},
            id="details-with-a-huge-number",
        ),
        pytest.param(
            {"customerId": "cu-1", "restaurantId": "r-1", "details": {"b": "x" * 9000}},
            id="details-over-8-kb",
        ),
        pytest.param(
            {
                "customerId": "cu-1",
                "restaurantId": "r-1",
                "details": {"a": [[[[[1]]]]]},
            },
            id="details-nested-too-deep",
        ),
    ],
)
def test_a_malformed_create_is_422_invalid_request(
    client: httpx.Client, body: dict[str, Any]
) -> None:
    order_id = unique_id()
    response = client.post("/orders", json={"orderId": order_id, **body}, headers=OPS)

    assert_refused(response, 422, "invalid_request")
    if "orderId" not in body:
        assert client.get(f"/orders/{order_id}", headers=OPS).status_code == 404


def test_assign_courier_without_courier_id_is_422_invalid_command(
    client: httpx.Client,
) -> None:
    order_id = new_order(client, "ACCEPTED")
    before = state_of(client, order_id)

    response = command(client, order_id, "assign_courier")

    assert_refused(response, 422, "invalid_command")
    assert state_of(client, order_id) == before


def test_a_token_from_a_clock_a_little_ahead_is_accepted(
    client: httpx.Client,
) -> None:
    claims = {"sub": "ops-1", "role": "ops", "iat": int(time.time()) + 5}
    token = jwt.encode(claims, SECRET, algorithm="HS256")

    response = client.post(
        "/orders",
        json={"customerId": "cu-1", "restaurantId": "r-1"},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 201, response.text


def signed(claims: dict[str, Any]) -> dict[str, str]:
    """An Authorization header carrying `claims`, signed with the server's key."""
    return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer"}, id="empty-bearer"),
        pytest.param({"Authorization": "Bearer not-a-jwt"}, id="not-a-jwt"),
        pytest.param(
            {"Authorization": OPS["Authorization"].replace("Bearer", "Basic")},
            id="basic-scheme",
        ),
        pytest.param(
            {
                "Authorization": "Bearer "
                + issue_token("another-secret-of-at-least-32-bytes!", Role.OPS, "o")
            },
            id="bad-signature",
        ),
        pytest.param(
            signed({"sub": "ops-1", "role": "ops", "exp": int(time.time()) - 600}),
            id="expired",
        ),
        pytest.param(signed({"sub": "x", "role": "admin"}), id="unknown-role"),
        pytest.param(signed({"role": "ops"}), id="no-subject"),
        pytest.param(signed({"sub": "", "role": "ops"}), id="empty-subject"),
        pytest.param(signed({"sub": "a b", "role": "ops"}), id="subject-not-an-id"),
        pytest.param(
            signed({"sub": "ops-1", "role": "ops", "iat": int(time.time()) + 600}),
            id="issued-ten-minutes-ahead",
        ),
    ],
)
def test_a_caller_without_a_valid_token_is_401_and_changes_nothing(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    order_id = new_order(client)
    before = state_of(client, order_id)

    on_command = command(client, order_id, "accept", headers=headers)
    on_read = client.get(f"/orders/{order_id}", headers=headers)
    on_create = client.post(
        "/orders",
        json={"customerId": "cu-1", "restaurantId": "r-1"},
        headers=headers,
    )

    assert_refused(on_command, 401, "unauthorized")
    assert_refused(on_read, 401, "unauthorized")
    assert_refused(on_create, 401, "unauthorized")
    assert state_of(client, order_id) == before


@pytest.mark.parametrize(
    ("status", "name", "role", "subject"),
    [
        pytest.param("RECEIVED", "accept", "customer", "cu-1", id="customer-accepts"),
        pytest.param(
            "RECEIVED", "accept", "restaurant", "r-other", id="other-restaurant"
        ),
        pytest.param(
            "IN_DELIVERY", "deliver", "courier", "c-other", id="courier-not-assigned"
        ),
        pytest.param(
            "PICKED_UP", "cancel", "customer", "cu-1", id="customer-cancels-late"
        ),
        pytest.param(
            "IN_DELIVERY", "cancel", "restaurant", "r-1", id="restaurant-cancels-late"
        ),
        pytest.param(
            "ACCEPTED", "cancel", "customer", "cu-other", id="other-customer-cancels"
        ),
        pytest.param(
            "ACCEPTED",
            "assign_courier",
            "courier",
            "c-1",
            id="courier-assigns-itself",
        ),
        pytest.param("IN_DELIVERY", "fail", "customer", "cu-1", id="customer-fails"),
    ],
)
def test_a_command_from_the_wrong_party_is_403_and_changes_nothing(
    client: httpx.Client, status: str, name: str, role: str, subject: str
) -> None:
    order_id = new_order(client, status)
    before = state_of(client, order_id)

    fields = {"courierId": "c-1"} if name == "assign_courier" else {}
    response = command(client, order_id, name, headers=auth(role, subject), **fields)

    assert_refused(response, 403, "forbidden")
    assert state_of(client, order_id) == before


@pytest.mark.parametrize("role", ["customer", "restaurant", "courier", "dispatch"])
def test_only_ops_creates_orders(client: httpx.Client, role: str) -> None:
    order_id = unique_id()

    response = client.post(
        "/orders",
        json={"orderId": order_id, "customerId": "cu-1", "restaurantId": "r-1"},
        headers=auth(role, "cu-1"),
    )

    assert_refused(response, 403, "forbidden")
    assert_refused(
        client.get(f"/orders/{order_id}", headers=OPS), 404, "order_not_found"
    )


@pytest.mark.parametrize(
    ("role", "subject", "allowed"),
    [
        ("customer", "cu-1", True),
        ("customer", "cu-other", False),
        ("restaurant", "r-1", True),
        ("restaurant", "r-other", False),
        ("courier", "c-1", True),
        ("courier", "c-other", False),
        ("dispatch", "d-1", True),
    ],
)
def test_only_the_parties_of_an_order_read_it(
    client: httpx.Client, role: str, subject: str, allowed: bool
) -> None:
    order_id = new_order(client, "COURIER_ASSIGNED")

    order = client.get(f"/orders/{order_id}", headers=auth(role, subject))
    log = client.get(f"/orders/{order_id}/events", headers=auth(role, subject))

    if allowed:
        assert order.status_code == log.status_code == 200
    else:
        assert_refused(order, 403, "forbidden")
        assert_refused(log, 403, "forbidden")


# idempotency


def test_a_repeated_command_with_the_same_key_replays_the_first_answer(
    client: httpx.Client,
) -> None:
    order_id = new_order(client)
    headers = {**auth("restaurant", "r-1"), "Idempotency-Key": unique_id("key")}
    first = command(client, order_id, "accept", headers=headers)
    after_first = state_of(client, order_id)

    repeat = command(client, order_id, "accept", headers=headers)

    assert first.status_code == repeat.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert repeat.json() == first.json()
    assert state_of(client, order_id) == after_first
    assert after_first[0] == 2


def test_a_repeated_create_with_the_same_key_replays_the_generated_order(
    client: httpx.Client,
) -> None:
    headers = {**OPS, "Idempotency-Key": unique_id("key")}
    body = {"customerId": "cu-1", "restaurantId": "r-1"}
    first = client.post("/orders", json=body, headers=headers)

    repeat = client.post("/orders", json=body, headers=headers)

    assert first.status_code == repeat.status_code == 201
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert repeat.json() == first.json()
    order_id = first.json()["order"]["orderId"]
    assert [e["seq"] for e in events_of(client, order_id)] == [1]


def test_a_repeated_refusal_with_the_same_key_replays_the_first_refusal(
    client: httpx.Client,
) -> None:
    order_id = new_order(client)
    headers = {**OPS, "Idempotency-Key": unique_id("key")}
    first = command(client, order_id, "deliver", headers=headers)
    before = state_of(client, order_id)

    repeat = command(client, order_id, "deliver", headers=headers)

    assert_refused(first, 409, "invalid_transition")
    assert repeat.status_code == 409
    assert repeat.json() == first.json()
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert state_of(client, order_id) == before


def test_a_key_reused_for_a_different_body_is_422_and_records_nothing(
    client: httpx.Client,
) -> None:
    order_id = new_order(client, "ACCEPTED")
    headers = {**OPS, "Idempotency-Key": unique_id("key")}
    command(client, order_id, "assign_courier", headers=headers, courierId="c-1")
    before = state_of(client, order_id)

    reused = command(
        client, order_id, "assign_courier", headers=headers, courierId="c-2"
    )
    other_order = new_order(client, "ACCEPTED")
    reused_elsewhere = command(
        client, other_order, "assign_courier", headers=headers, courierId="c-1"
    )

    assert_refused(reused, 422, "idempotency_key_reused")
    assert_refused(reused_elsewhere, 422, "idempotency_key_reused")
    assert state_of(client, order_id) == before
    assert order_of(client, other_order)["seq"] == 2


def test_an_idempotency_key_belongs_to_its_caller(client: httpx.Client) -> None:
    order_id = new_order(client)
    key = unique_id("key")
    command(
        client,
        order_id,
        "accept",
        headers={**auth("restaurant", "r-1"), "Idempotency-Key": key},
    )

    response = command(
        client,
        order_id,
        "assign_courier",
        headers={**auth("dispatch", "d-1"), "Idempotency-Key": key},
        courierId="c-1",
    )

    assert response.status_code == 200, response.text
    assert "Idempotent-Replayed" not in response.headers
    assert order_of(client, order_id)["status"] == "COURIER_ASSIGNED"


# OpenAPI


def test_openapi_lists_every_endpoint(client: httpx.Client) -> None:
    response = client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths["/orders"]) == {"post"}
    assert set(paths["/orders/{order_id}/commands"]) == {"post"}
    assert set(paths["/orders/{order_id}"]) == {"get"}
    assert set(paths["/orders/{order_id}/events"]) == {"get"}
    assert set(paths["/@connections/{connection_id}"]) == {"get", "post", "delete"}
    assert set(paths["/@connections"]) == {"get"}


def test_openapi_lists_the_refusals_each_endpoint_may_answer(
    client: httpx.Client,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    def refusals(path: str, method: str) -> set[str]:
        return {code for code in paths[path][method]["responses"] if code >= "4"}

    assert refusals("/orders/{order_id}/commands", "post") == {
        "401", "403", "404", "409", "413", "422", "503",
    }  # fmt: skip
    assert refusals("/orders/{order_id}", "get") == {"401", "403", "404", "422"}
    assert "410" in refusals("/@connections/{connection_id}", "delete")
    lang = paths["/orders/{order_id}/commands"]["post"]["parameters"]
    assert {"name": "lang", "in": "query"}.items() <= next(
        p for p in lang if p["name"] == "lang"
    ).items()


# concurrency


def http_client(server: Server) -> httpx.AsyncClient:
    # plain HTTP: verify=False only skips loading CA certificates per client
    return httpx.AsyncClient(base_url=server.url, timeout=30, verify=False)


async def _assign_all(
    server: Server, order_id: str, couriers: list[str]
) -> list[httpx.Response]:
    clients = [http_client(server) for _ in couriers]
    try:
        return await asyncio.gather(
            *(
                http.post(
                    f"/orders/{order_id}/commands",
                    json={"command": "assign_courier", "courierId": courier},
                    headers=OPS,
                )
                for http, courier in zip(clients, couriers, strict=True)
            )
        )
    finally:
        await asyncio.gather(*(http.aclose() for http in clients))


def test_concurrent_reassignments_number_events_without_gaps_or_duplicates(
    server: Server, client: httpx.Client
) -> None:
    # given
    order_id = new_order(client, "ACCEPTED")
    couriers = [f"c-{n}" for n in range(50)]

    # when
    responses = asyncio.run(_assign_all(server, order_id, couriers))

    # then: every command was applied once, and the log counts them 3..52
    assert [r.status_code for r in responses] == [200] * 50
    answered = sorted(r.json()["events"][0]["seq"] for r in responses)
    assert answered == list(range(3, 53))
    log = events_of(client, order_id)
    assert [e["seq"] for e in log] == list(range(1, 53))
    assert sorted(e["data"]["courierId"] for e in log[2:]) == sorted(couriers)
    final = order_of(client, order_id)
    assert final["seq"] == 52
    assert final["courierId"] == log[-1]["data"]["courierId"]


async def _create_all(server: Server, order_id: str, count: int) -> list[int]:
    clients = [http_client(server) for _ in range(count)]
    body = {"orderId": order_id, "customerId": "cu-1", "restaurantId": "r-1"}
    try:
        responses = await asyncio.gather(
            *(http.post("/orders", json=body, headers=OPS) for http in clients)
        )
    finally:
        await asyncio.gather(*(http.aclose() for http in clients))
    return [r.status_code for r in responses]


def test_concurrent_creates_of_one_order_create_it_once(
    server: Server, client: httpx.Client
) -> None:
    order_id = unique_id()

    statuses = asyncio.run(_create_all(server, order_id, 20))

    assert sorted(statuses) == [201] + [409] * 19
    assert [e["seq"] for e in events_of(client, order_id)] == [1]


# what the framework refuses before an endpoint runs


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("DELETE", "/orders", 405, "method_not_allowed"),
        (
            "GET",
            "/orders/o-1/events?since=99999999999999999999",
            422,
            "invalid_request",
        ),
    ],
)
def test_every_error_has_the_documented_shape(
    client: httpx.Client, method: str, path: str, status: int, code: str
) -> None:
    response = client.request(method, path, headers=OPS)

    assert_refused(response, status, code)


def test_a_body_that_is_not_json_is_invalid_request(client: httpx.Client) -> None:
    response = client.post(
        "/orders",
        content=b"{" * 2000,
        headers={**OPS, "Content-Type": "application/json"},
    )

    assert response.status_code in (400, 422)
    assert response.json()["code"] == "invalid_request"


def test_a_body_over_128_kb_is_refused_unread(client: httpx.Client) -> None:
    body = {
        "customerId": "cu-1",
        "restaurantId": "r-1",
        "details": {"b": "x" * 200_000},
    }

    response = client.post("/orders", json=body, headers=OPS)

    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    assert "128 KB" in response.json()["message"]


def test_a_streamed_body_is_cut_off_at_128_kb(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"orderId": "o-streamed", "customerId": "cu-1", "restaurantId": "r-1",'
        yield b' "details": {"b": "'
        for _ in range(20):
            yield b"x" * 10_000
        yield b'"}}'

    response = client.post(
        "/orders",
        content=chunks(),
        headers={**OPS, "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    assert client.get("/orders/o-streamed", headers=OPS).status_code == 404


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_checks_answer_head_as_load_balancers_send_it(
    client: httpx.Client, path: str
) -> None:
    assert client.head(path).status_code == 200
    assert client.get(path).status_code == 200
