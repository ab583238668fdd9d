"""The tracking page in a real browser against a real server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support import (
    LONG_DEADLINES,
    OPS,
    WAIT_S,
    Server,
    auth,
    command,
    running,
    token,
    unique_id,
)
from tests.web.browser import chromium

RESTAURANT = {"lat": -10.93, "lng": -37.06}
CUSTOMER = {"lat": -10.95, "lng": -37.04}
FAST_LOCATIONS = {"ORDERCAST_LOCATION_INTERVAL_S": "0.1"}
TIMEOUT_MS = WAIT_S * 1000

STEPS = [
    (
        "accept",
        {},
        "ACCEPTED",
        "The restaurant accepted your order and is preparing it",
    ),
    (
        "assign_courier",
        {"courierId": "c-1"},
        "COURIER_ASSIGNED",
        "Your courier is on the way to the restaurant",
    ),
    ("pick_up", {}, "PICKED_UP", "Your courier has picked up your order"),
    ("start_delivery", {}, "IN_DELIVERY", "Your order is on its way to you"),
    ("deliver", {}, "DELIVERED", "Your order was delivered. Enjoy your meal"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db_path = tmp_path_factory.mktemp("web") / "ordercast.db"
    with running(db_path, **LONG_DEADLINES, **FAST_LOCATIONS) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 400, "height": 860}, locale="en-US"
    )
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == []


def new_order(client: httpx.Client, customer: str = "cu-1") -> str:
    order_id = unique_id()
    body = {
        "orderId": order_id,
        "customerId": customer,
        "restaurantId": "r-1",
        "details": {"pickup": RESTAURANT, "dropoff": CUSTOMER},
    }
    assert client.post("/orders", json=body, headers=OPS).status_code == 201
    return order_id


def open_tracking(page: Page, server: Server, order_id: str, **query: str) -> None:
    customer = query.pop("customer", "cu-1")
    params = "".join(f"&{k}={v}" for k, v in query.items())
    page.goto(
        f"{server.url}/track/{order_id}?token={token('customer', customer)}{params}"
    )
    expect(page.locator("#link")).to_have_attribute("data-state", "live")


def step(page: Page, status: str) -> Any:
    return page.locator(f'#steps li[data-status="{status}"]')


def send(client: httpx.Client, order_id: str, name: str, **fields: Any) -> None:
    response = command(client, order_id, name, **fields)
    assert response.status_code == 200, response.text


def report_position(
    client: httpx.Client, order_id: str, lat: float, lng: float
) -> None:
    response = client.post(
        f"/orders/{order_id}/location",
        json={"lat": lat, "lng": lng},
        headers=auth("courier", "c-1"),
    )
    assert response.status_code == 202, response.text


def test_the_page_follows_every_status_without_a_reload(
    page: Page, server: Server, client: httpx.Client
) -> None:
    # given a customer looking at their new order
    order_id = new_order(client)
    open_tracking(page, server, order_id)
    expect(step(page, "RECEIVED")).to_have_attribute("data-state", "current")
    expect(page.locator("#message")).to_have_text(
        "We have your order and sent it to the restaurant"
    )
    expect(page.locator("#eta")).to_contain_text("around")
    page.evaluate("window.sameDocument = true")

    # when the order goes through every status, with the courier moving
    for name, fields, status, message in STEPS:
        send(client, order_id, name, **fields)

        # then the timeline, the message and the map follow, live
        expect(page.locator("#message")).to_have_text(message)
        state = "done" if status == "DELIVERED" else "current"
        expect(step(page, status)).to_have_attribute("data-state", state)
        if status in ("PICKED_UP", "IN_DELIVERY"):
            lat = -10.935 if status == "PICKED_UP" else -10.945
            report_position(client, order_id, lat, -37.05)
            expect(page.locator("#courier")).to_have_attribute("data-lat", str(lat))
            expect(page.locator("#courier")).to_have_attribute("visibility", "visible")

    expect(page.locator("#steps li[data-state=done]")).to_have_count(6)
    expect(page.locator("#eta")).to_contain_text("Delivered at")
    assert page.evaluate("window.sameDocument") is True
    assert page.locator("body").get_attribute("data-seqs") == "1,2,3,4,5,6"


def test_the_page_shows_the_status_as_an_accessible_live_region(
    page: Page, server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)
    open_tracking(page, server, order_id)

    message = page.locator("#message")
    assert message.get_attribute("role") == "status"
    assert message.get_attribute("aria-live") == "polite"
    assert page.locator("#link").get_attribute("role") == "status"
    expect(step(page, "RECEIVED")).to_have_attribute("aria-current", "step")
    assert page.locator("html").get_attribute("lang") == "en"


def test_the_page_speaks_the_viewers_language(
    browser: Browser, server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)

    open_tracking(page, server, order_id)
    send(client, order_id, "accept")

    expect(page.locator("#message")).to_have_text("餐厅已接单，正在为您准备")
    expect(page.locator("h1")).to_have_text("追踪您的订单")
    expect(step(page, "ACCEPTED")).to_contain_text("备餐中")
    context.close()


def test_the_lang_parameter_wins_over_the_browser_language(
    page: Page, server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)
    open_tracking(page, server, order_id, lang="es")

    expect(page.locator("#message")).to_have_text(
        "Hemos recibido tu pedido y lo hemos enviado al restaurante"
    )
    expect(page.locator("#link")).to_have_text("En directo")


def test_a_final_alternative_stops_the_timeline(
    page: Page, server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)
    open_tracking(page, server, order_id)

    send(client, order_id, "reject")

    expect(page.locator("#final")).to_have_text("Not accepted by the restaurant")
    expect(step(page, "RECEIVED")).to_have_attribute("data-state", "stopped")
    expect(page.locator("#eta")).to_have_text("–")


WATCH_STEPS = """
document.addEventListener("DOMContentLoaded", () => {
  window.doneCounts = [];
  const steps = document.getElementById("steps");
  new MutationObserver(() => {
    window.doneCounts.push(steps.querySelectorAll('li[data-state="done"]').length);
  }).observe(steps, { subtree: true, attributes: true });
});
"""
"""Records, after each change to the timeline, how many steps show as done."""


def test_the_timeline_never_goes_back_while_history_arrives(
    page: Page, server: Server, client: httpx.Client
) -> None:
    # given an order delivered before its page is opened
    order_id = new_order(client)
    for name, fields, _, _ in STEPS:
        send(client, order_id, name, **fields)

    # when the page opens (snapshot first, then the whole history)
    page.add_init_script(WATCH_STEPS)
    open_tracking(page, server, order_id)
    expect(page.locator("#message")).to_have_text(STEPS[-1][3])

    # then the timeline only ever moved forward, to every step done
    done = page.evaluate("window.doneCounts")
    assert done == sorted(done)
    assert done[-1] == len(STEPS) + 1


def test_a_link_with_a_bad_token_says_so_and_stops(
    page: Page, server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)

    page.goto(f"{server.url}/track/{order_id}?token=not-a-token")

    expect(page.locator("#link")).to_have_attribute("data-state", "refused")
    expect(page.locator("#link")).to_have_text(
        "This tracking link is not valid any more"
    )


def test_another_customers_order_is_refused(
    page: Page, server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client, customer="cu-2")

    page.goto(f"{server.url}/track/{order_id}?token={token('customer', 'cu-1')}")

    expect(page.locator("#link")).to_have_attribute("data-state", "refused")
    expect(page.locator("#message")).to_have_text("")


def test_the_token_leaves_the_address_bar(
    page: Page, server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)

    open_tracking(page, server, order_id)

    assert "token" not in page.url
    page.reload()
    expect(page.locator("#link")).to_have_attribute("data-state", "live")


def test_the_page_loads_nothing_from_elsewhere(
    page: Page, server: Server, client: httpx.Client
) -> None:
    order_id = new_order(client)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    open_tracking(page, server, order_id)

    assert requested
    assert all(
        url.startswith((server.url, server.url.replace("http", "ws")))
        for url in requested
    ), requested


def connection_of(client: httpx.Client, subject: str) -> str:
    listed = client.get("/@connections", headers=OPS).json()["connections"]
    [mine] = [c for c in listed if c["identity"]["subject"] == subject]
    return str(mine["connectionId"])


def watch_link_states(page: Page) -> None:
    page.evaluate(
        """() => {
          window.linkStates = [];
          new MutationObserver(() => window.linkStates.push(
            document.getElementById("link").dataset.state)
          ).observe(document.getElementById("link"), {attributes: true});
        }"""
    )


def test_the_page_resumes_after_the_connection_is_cut(
    page: Page, tmp_path: Path
) -> None:
    with (
        running(tmp_path / "ordercast.db", **LONG_DEADLINES) as server,
        server.client() as client,
    ):
        # given a page following an accepted order
        customer = unique_id("cu")
        order_id = new_order(client, customer=customer)
        open_tracking(page, server, order_id, customer=customer)
        send(client, order_id, "accept")
        expect(step(page, "ACCEPTED")).to_have_attribute("data-state", "current")
        watch_link_states(page)

        # when ops closes its connection and the order moves on meanwhile
        connection_id = connection_of(client, customer)
        closed = client.delete(f"/@connections/{connection_id}", headers=OPS)
        assert closed.status_code == 204
        send(client, order_id, "assign_courier", courierId="c-1")
        send(client, order_id, "pick_up")

        # then it says so, reconnects by itself and catches up, once
        expect(step(page, "PICKED_UP")).to_have_attribute("data-state", "current")
        expect(page.locator("#link")).to_have_attribute("data-state", "live")
        assert "lost" in page.evaluate("window.linkStates")
        assert connection_of(client, customer) != connection_id

        # and when the server process itself restarts
        server.stop()
        expect(page.locator("#link")).to_have_attribute("data-state", "lost")
        expect(page.locator("#link")).to_have_text("Connection lost. Reconnecting…")
        server.start()
        send(client, order_id, "start_delivery")
        send(client, order_id, "deliver")

        # then it resumes again with nothing missed and nothing twice
        expect(step(page, "DELIVERED")).to_have_attribute("data-state", "done")
        expect(page.locator("#link")).to_have_attribute("data-state", "live")
        expect(page.locator("#message")).to_have_text(
            "Your order was delivered. Enjoy your meal"
        )
        assert page.locator("body").get_attribute("data-seqs") == "1,2,3,4,5,6"
