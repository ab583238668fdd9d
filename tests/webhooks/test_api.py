"""The webhook API over HTTP: who may use it, what it refuses, and that rule
changes take effect at once, against a real server and a real receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support import (
    LONG_DEADLINES,
    OPS,
    UNIT_S,
    WAIT_S,
    Server,
    auth,
    free_port,
    running,
    unique_id,
)
from tests.webhooks.receiver import Receiver, Request, eventually, wait_for

pytestmark = pytest.mark.anyio

SETTINGS = {
    **LONG_DEADLINES,
    "ORDERCAST_WEBHOOK_RETRY_BASE_S": "0.05",
    "ORDERCAST_WEBHOOK_RETRY_MAX_S": "0.1",
    "ORDERCAST_WEBHOOK_POLL_S": "0.2",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db_path = tmp_path_factory.mktemp("webhooks") / "ordercast.db"
    with running(db_path, **SETTINGS) as srv:
        yield srv


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


async def create_order(client: httpx.AsyncClient, restaurant_id: str = "r-1") -> str:
    order_id = unique_id()
    body = {"orderId": order_id, "customerId": "cu-1", "restaurantId": restaurant_id}
    response = await client.post("/orders", json=body, headers=OPS)
    assert response.status_code == 201, response.text
    return order_id


async def target_for(
    client: httpx.AsyncClient, receiver: Receiver, **fields: object
) -> str:
    target_id = unique_id("t")
    body = {"targetId": target_id, "url": receiver.url, **fields}
    response = await client.post("/webhooks/targets", json=body, headers=OPS)
    assert response.status_code == 201, response.text
    return target_id


async def rule_for(
    client: httpx.AsyncClient, target_id: str, pattern: dict[str, object]
) -> str:
    rule_id = unique_id("r")
    body = {"ruleId": rule_id, "pattern": pattern, "targets": [target_id]}
    response = await client.post("/webhooks/rules", json=body, headers=OPS)
    assert response.status_code == 201, response.text
    return rule_id


def orders_received(receiver: Receiver) -> list[str]:
    return [r.document["orderId"] for r in receiver.delivered()]


# who may


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/webhooks/targets", None),
        ("POST", "/webhooks/targets", {"url": "http://example.org/"}),
        ("PATCH", "/webhooks/targets/t", {}),
        ("DELETE", "/webhooks/targets/t", None),
        ("POST", "/webhooks/targets/t/test", None),
        ("GET", "/webhooks/targets/t/attempts", None),
        ("GET", "/webhooks/rules", None),
        ("POST", "/webhooks/rules", {"pattern": {}, "targets": ["t"]}),
        ("DELETE", "/webhooks/rules/r", None),
        ("GET", "/webhooks/dead-letters", None),
        ("POST", "/webhooks/dead-letters/replay", {}),
    ],
)
async def test_only_ops_may_manage_webhooks(
    client: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    anonymous = await client.request(method, path, json=body)
    dispatch = await client.request(
        method, path, json=body, headers=auth("dispatch", "d-1")
    )
    assert anonymous.status_code == 401
    assert (dispatch.status_code, dispatch.json()["code"]) == (403, "forbidden")


# targets


async def test_a_target_is_created_with_a_secret_shown_once(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # when a target is created without a secret
    body = {"url": receiver.url, "description": "partner", "maxAttempts": 3}
    created = await client.post("/webhooks/targets", json=body, headers=OPS)

    # then it gets an id and a generated secret, which reads never show
    assert created.status_code == 201, created.text
    target = created.json()
    assert target["secret"].startswith("whsec_")
    assert len(target["secret"]) > 40
    target_id = target["targetId"]
    shown = (await client.get(f"/webhooks/targets/{target_id}", headers=OPS)).json()
    assert shown == {k: v for k, v in target.items() if k != "secret"}
    listed = (await client.get("/webhooks/targets", headers=OPS)).json()["targets"]
    assert shown in listed
    assert {"pending": 0, "dead": 0}.items() <= shown.items()


async def test_a_target_is_updated_field_by_field_and_deleted(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    target_id = await target_for(client, receiver, timeoutS=2)
    path = f"/webhooks/targets/{target_id}"

    moved = await client.patch(path, json={"url": "https://example.org/h"}, headers=OPS)
    assert moved.status_code == 200, moved.text
    assert (moved.json()["url"], moved.json()["timeoutS"]) == (
        "https://example.org/h",
        2,
    )
    assert "secret" not in moved.json()
    rekeyed = await client.patch(
        path, json={"secret": "k" * 20, "timeoutS": None}, headers=OPS
    )
    assert rekeyed.json()["secret"] == "k" * 20
    assert rekeyed.json()["timeoutS"] is None

    assert (await client.delete(path, headers=OPS)).status_code == 204
    gone = await client.get(path, headers=OPS)
    assert (gone.status_code, gone.json()["code"]) == (404, "target_not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.org/hook"},
        {"url": "http:///nohost"},
        {"url": "http://example.org/", "timeoutS": 0},
        {"url": "http://example.org/", "timeoutS": 61},
        {"url": "http://example.org/", "secret": "short"},
        {"url": "http://example.org/", "targetId": "has space"},
        {"url": "http://example.org/", "colour": "red"},
        {},
    ],
)
async def test_a_bad_target_is_refused(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/webhooks/targets", json=body, headers=OPS)
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")


# rules


async def test_refused_rules_say_why(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    target_id = await target_for(client, receiver)
    rule_id = await rule_for(client, target_id, {"status": ["DELIVERED"]})

    async def create(body: dict[str, object]) -> tuple[int, dict[str, object]]:
        response = await client.post("/webhooks/rules", json=body, headers=OPS)
        return response.status_code, response.json()

    status, bad = await create(
        {"pattern": {"seq": [{"numeric": [">", "1"]}]}, "targets": [target_id]}
    )
    assert (status, bad["code"], bad["path"]) == (
        422,
        "invalid_pattern",
        "seq[0].numeric",
    )
    status, bad = await create({"pattern": ["x"], "targets": [target_id]})
    assert (status, bad["code"]) == (422, "invalid_pattern")
    status, bad = await create({"pattern": {}, "targets": [target_id, "t-none"]})
    assert (status, bad["code"], bad["targetIds"]) == (
        422,
        "unknown_target",
        ["t-none"],
    )
    status, bad = await create(
        {"ruleId": rule_id, "pattern": {}, "targets": [target_id]}
    )
    assert (status, bad["code"]) == (409, "rule_exists")
    status, bad = await create({"pattern": {}, "targets": []})
    assert (status, bad["code"]) == (422, "invalid_request")

    in_use = await client.delete(f"/webhooks/targets/{target_id}", headers=OPS)
    assert (in_use.status_code, in_use.json()["code"]) == (409, "target_in_use")
    missing = await client.patch("/webhooks/rules/r-none", json={}, headers=OPS)
    assert (missing.status_code, missing.json()["code"]) == (404, "rule_not_found")


async def test_rule_changes_take_effect_for_the_next_event(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # given a rule for restaurant r-a
    target_id = await target_for(client, receiver)
    rule_id = await rule_for(client, target_id, {"order": {"restaurantId": ["r-a"]}})
    path = f"/webhooks/rules/{rule_id}"
    first = await create_order(client, "r-a")
    await wait_for(lambda: orders_received(receiver) == [first], WAIT_S, "first")

    # when it is disabled, then an order of r-a is not sent
    off = await client.patch(path, json={"enabled": False}, headers=OPS)
    assert off.json()["enabled"] is False
    await create_order(client, "r-a")

    # when it is enabled for r-b instead, then r-b's order is
    on = {"enabled": True, "pattern": {"order": {"restaurantId": ["r-b"]}}}
    assert (await client.patch(path, json=on, headers=OPS)).status_code == 200
    await create_order(client, "r-a")
    second = await create_order(client, "r-b")
    await wait_for(lambda: len(orders_received(receiver)) == 2, WAIT_S, "second")

    # when it is deleted, then nothing more is sent
    assert (await client.delete(path, headers=OPS)).status_code == 204
    await create_order(client, "r-b")
    await asyncio.sleep(5 * UNIT_S)
    assert orders_received(receiver) == [first, second]
    rules = (await client.get("/webhooks/rules", headers=OPS)).json()["rules"]
    assert rule_id not in {r["ruleId"] for r in rules}


# test deliveries, the log, dead letters


async def test_a_test_delivery_is_signed_answered_and_logged(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    target_id = await target_for(client, receiver, secret="s" * 24)

    answer = await client.post(f"/webhooks/targets/{target_id}/test", headers=OPS)

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["delivered"], result["statusCode"]) == (True, 200)
    [request] = receiver.requests
    assert request.document["type"] == "webhook.test"
    assert request.document["targetId"] == target_id
    assert request.signed_with("s" * 24)
    assert not request.signed_with("t" * 24)
    log = await client.get(f"/webhooks/targets/{target_id}/attempts", headers=OPS)
    [logged] = log.json()["attempts"]
    assert (logged["outcome"], logged["eventId"]) == ("test", result["eventId"])


async def test_a_test_delivery_to_a_closed_port_says_why(
    client: httpx.AsyncClient,
) -> None:
    body = {"url": f"http://127.0.0.1:{free_port()}/hook"}
    created = await client.post("/webhooks/targets", json=body, headers=OPS)
    target_id = created.json()["targetId"]

    result = (
        await client.post(f"/webhooks/targets/{target_id}/test", headers=OPS)
    ).json()

    assert (result["delivered"], result["statusCode"]) == (False, None)
    assert result["error"].startswith("cannot connect")


async def test_dead_letters_are_listed_replayed_and_discarded(
    client: httpx.AsyncClient,
) -> None:
    # given a receiver that refuses until told otherwise, and two tries at most
    refusing = [True]

    async def until_fixed(request: Request) -> int:
        return 503 if refusing[0] else 200

    receiver = await Receiver(until_fixed).start()
    target_id = await target_for(client, receiver, maxAttempts=2)
    await rule_for(client, target_id, {"event": ["order.received"]})
    first, second = await create_order(client), await create_order(client)

    # when both give up
    async def dead() -> list[dict[str, object]]:
        params = {"targetId": target_id}
        answer = await client.get("/webhooks/dead-letters", params=params, headers=OPS)
        return list(answer.json()["deadLetters"])

    listed = await eventually(dead, lambda found: len(found) == 2, WAIT_S)
    assert {d["orderId"] for d in listed} == {first, second}
    assert {(d["attempts"], d["lastStatus"]) for d in listed} == {(2, 503)}
    by_order = {d["orderId"]: d["deliveryId"] for d in listed}

    # then one is replayed once the receiver is fixed, the other discarded
    refusing[0] = False
    replay = {"deliveryIds": [by_order[first]]}
    answer = await client.post(
        "/webhooks/dead-letters/replay", json=replay, headers=OPS
    )
    assert answer.json() == {"replayed": 1}
    await wait_for(lambda: orders_received(receiver) == [first], WAIT_S, "replayed")
    gone = await client.delete(
        f"/webhooks/dead-letters/{by_order[second]}", headers=OPS
    )
    assert gone.status_code == 204
    assert await dead() == []
    again = await client.post("/webhooks/dead-letters/replay", json=replay, headers=OPS)
    assert (again.status_code, again.json()["code"]) == (404, "delivery_not_found")
    await receiver.stop()


async def test_dead_letters_of_a_target_that_is_not_there_are_a_404(
    client: httpx.AsyncClient,
) -> None:
    listed = await client.get(
        "/webhooks/dead-letters", params={"targetId": "t-nobody"}, headers=OPS
    )
    replayed = await client.post(
        "/webhooks/dead-letters/replay", json={"targetId": "t-nobody"}, headers=OPS
    )

    for answer in (listed, replayed):
        assert (answer.status_code, answer.json()["code"]) == (404, "target_not_found")


async def test_the_webhook_endpoints_are_in_the_openapi_schema(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {
        "/webhooks/targets",
        "/webhooks/targets/{target_id}",
        "/webhooks/targets/{target_id}/test",
        "/webhooks/targets/{target_id}/attempts",
        "/webhooks/rules",
        "/webhooks/rules/{rule_id}",
        "/webhooks/dead-letters",
        "/webhooks/dead-letters/replay",
        "/webhooks/dead-letters/{delivery_id}",
    } <= set(paths)
