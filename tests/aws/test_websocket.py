"""The WebSocket handlers: authoriser, connect, subscribe and resume, frames."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from ordercast.auth import issue_token
from ordercast.aws.handlers import websocket
from ordercast.aws.runtime import services
from ordercast.lifecycle import Role
from tests.aws.harness import REGION, Context, Stack, failing, sample
from tests.support import SECRET, token


def _types(frames: list[dict[str, Any]]) -> list[str]:
    return [f["type"] for f in frames]


def _delivered(stack: Stack, order_id: str) -> None:
    """Drive an order to PICKED_UP, waiting for each announcement."""
    stack.create(order_id)
    stack.settle(order_id, 1)
    for seq, (name, role, subject, fields) in enumerate(
        [
            ("accept", "restaurant", "r-1", {}),
            ("assign_courier", "dispatch", "d-1", {"courierId": "c-7"}),
            ("pick_up", "courier", "c-7", {}),
        ],
        start=2,
    ):
        assert stack.command(order_id, name, role, subject, **fields).status == 200
        stack.settle(order_id, seq)


# $connect


def test_authoriser_allows_a_signed_token_and_passes_role_and_subject(
    stack: Stack,
) -> None:
    event = sample("ws_authorizer")
    event["queryStringParameters"] = {"token": token("courier", "c-7")}

    policy = websocket.authorize(event, Context())

    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert policy["context"] == {"role": "courier", "subject": "c-7"}


def test_authoriser_denies_a_bad_or_missing_token(stack: Stack) -> None:
    for query in ({"token": "not-a-token"}, {}):
        event = sample("ws_authorizer")
        event["queryStringParameters"] = query
        policy = websocket.authorize(event, Context())
        assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_connect_answers_the_ordercast_subprotocol_when_offered(stack: Stack) -> None:
    event = sample("ws_connect")
    event["headers"]["Sec-WebSocket-Protocol"] = "ordercast"
    answer = websocket.connect(event, Context())
    assert answer["headers"] == {"Sec-WebSocket-Protocol": "ordercast"}
    assert websocket.SUBPROTOCOL == "ordercast"


def test_disconnect_forgets_the_connection_and_its_subscriptions(stack: Stack) -> None:
    stack.create("o-1")
    phone = stack.follower("customer", "cu-1")
    stack.send(phone, {"action": "subscribe", "orderId": "o-1"})

    stack.disconnect(phone)

    assert stack.services.connections.get(phone) is None
    assert stack.services.connections.followers("o-1") == []


# subscribe and resume


def test_subscribe_sends_the_embedded_snapshot(stack: Stack) -> None:
    stack.create("o-2")
    phone = stack.follower("customer", "cu-1")

    stack.send(phone, {"action": "subscribe", "orderId": "o-2"})

    [answer] = stack.frames(phone)
    eta = answer["snapshot"]["eta"]
    assert answer == {
        "type": "subscribed",
        "orderId": "o-2",
        "snapshot": {
            "status": "RECEIVED",
            "seq": 1,
            "eta": eta,
            "courierPosition": None,
        },
    }
    assert eta.endswith("Z")


def test_a_frame_that_fails_on_our_side_is_answered_internal_error(
    stack: Stack,
) -> None:
    # given a follower whose subscribe meets a throttled DynamoDB
    stack.create("o-busy")
    phone = stack.follower("customer", "cu-1")
    since = {"action": "subscribe", "orderId": "o-busy", "since": 0}

    with failing(stack.services.store.client, "Query"):
        stack.send(phone, since)

    # then it hears so in the protocol's shape, and can go on
    [answer] = stack.frames(phone)
    assert (answer["type"], answer["code"]) == ("error", "internal_error")
    stack.send(phone, {"action": "ping"})
    assert [f["type"] for f in stack.frames(phone)] == ["error", "pong"]


def test_subscribe_with_since_replays_the_history_then_goes_live(stack: Stack) -> None:
    # given an order at seq 4 and a client that saw seq 1
    _delivered(stack, "o-3")
    phone = stack.follower("customer", "cu-1")

    # when it resumes
    stack.send(phone, {"action": "subscribe", "orderId": "o-3", "since": 1})
    stack.command("o-3", "start_delivery", "courier", "c-7")
    stack.settle("o-3", 5)

    # then seq 2, 3, 4 from the events table, then 5 live: each once, in order
    frames = stack.frames(phone)
    assert frames[0]["snapshot"]["seq"] == 4
    assert [f["seq"] for f in frames[1:]] == [2, 3, 4, 5]


def test_subscribe_refusals_come_back_as_error_frames(stack: Stack) -> None:
    stack.create("o-4", customer="cu-1")
    stranger = stack.follower("customer", "cu-2")

    stack.send(stranger, {"action": "subscribe", "orderId": "o-4"})
    stack.send(stranger, {"action": "subscribe", "orderId": "o-nope"})
    stack.send(stranger, {"action": "subscribe", "orderId": "*"})
    owner = stack.follower("customer", "cu-1")
    stack.send(owner, {"action": "subscribe", "orderId": "o-4", "since": 9})

    codes = [f["code"] for f in stack.frames(stranger)]
    assert codes == ["forbidden", "order_not_found", "forbidden"]
    assert stack.frames(owner)[0]["code"] == "invalid_frame"
    assert stack.services.connections.followers("o-4") == []


def test_ops_following_every_order_get_each_event_once(stack: Stack) -> None:
    ops = stack.follower("ops", "ops-1")
    stack.send(ops, {"action": "subscribe", "orderId": "*"})
    stack.create("o-5")
    stack.settle("o-5", 1)
    stack.send(ops, {"action": "subscribe", "orderId": "o-5"})

    stack.command("o-5", "accept", "restaurant", "r-1")
    stack.create("o-6")
    stack.settle("o-5", 2)
    stack.settle("o-6", 1)

    frames = stack.frames(ops)
    assert frames[0] == {"type": "subscribed", "orderId": "*", "snapshot": None}
    events = [(f["orderId"], f["seq"]) for f in frames if f["type"] == "order.event"]
    assert sorted(events) == [("o-5", 1), ("o-5", 2), ("o-6", 1)]


def test_unsubscribe_stops_the_events(stack: Stack) -> None:
    stack.create("o-7")
    stack.settle("o-7", 1)
    phone = stack.follower("customer", "cu-1")
    stack.send(phone, {"action": "subscribe", "orderId": "o-7"})

    stack.send(phone, {"action": "unsubscribe", "orderId": "o-7"})
    stack.command("o-7", "accept", "restaurant", "r-1")
    stack.settle("o-7", 2)

    assert _types(stack.frames(phone)) == ["subscribed", "unsubscribed"]


# other frames


def test_ping_and_bad_frames_are_answered_like_the_embedded_gateway(
    stack: Stack,
) -> None:
    phone = stack.follower("customer", "cu-1")

    stack.send(phone, {"action": "ping"})
    stack.send(phone, "{not json")
    stack.send(phone, {"action": "dance"})
    stack.send(phone, {"action": "subscribe"})
    stack.send(phone, "x" * (33 * 1024))

    frames = stack.frames(phone)
    assert frames[0] == {"type": "pong"}
    codes = [f["code"] for f in frames[1:]]
    assert codes == [
        "invalid_json",
        "unknown_action",
        "invalid_frame",
        "frame_too_large",
    ]


def test_courier_location_reaches_followers_and_the_snapshot(stack: Stack) -> None:
    _delivered(stack, "o-8")
    phone = stack.follower("customer", "cu-1")
    stack.send(phone, {"action": "subscribe", "orderId": "o-8"})
    courier = stack.follower("courier", "c-7")
    other = stack.follower("courier", "c-9")

    stack.send(
        courier, {"action": "location", "orderId": "o-8", "lat": 52.5, "lng": 13.4}
    )
    stack.send(other, {"action": "location", "orderId": "o-8", "lat": 1.0, "lng": 1.0})

    located = stack.frames(phone)[-1]
    assert (located["type"], located["lat"], located["lng"]) == (
        "courier.location",
        52.5,
        13.4,
    )
    assert stack.frames(other)[0]["code"] == "forbidden"
    late = stack.follower("customer", "cu-1")
    stack.send(late, {"action": "subscribe", "orderId": "o-8"})
    position = stack.frames(late)[0]["snapshot"]["courierPosition"]
    assert (position["lat"], position["lng"]) == (52.5, 13.4)


def test_the_key_is_read_from_secrets_manager_when_the_stack_names_one(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the stack's secret, which differs from the environment's key
    key = "a-key-from-secrets-manager-of-at-least-32-bytes"
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn = secrets.create_secret(Name=f"token-{uuid.uuid4().hex}", SecretString=key)
    monkeypatch.setenv("ORDERCAST_TOKEN_SECRET_ARN", arn["ARN"])
    services.cache_clear()

    def effect(signed_with: str) -> str:
        event = sample("ws_authorizer")
        signed = issue_token(signed_with, Role.OPS, "ops-1")
        event["queryStringParameters"] = {"token": signed}
        policy = websocket.authorize(event, Context())
        return str(policy["policyDocument"]["Statement"][0]["Effect"])

    # then tokens signed with it pass, and only those
    assert effect(key) == "Allow"
    assert effect(SECRET) == "Deny"
