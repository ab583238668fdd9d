"""The ops dashboard in a real browser, and the queries behind it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from ordercast.lifecycle import Status
from ordercast.web.graph import edges
from tests.support import (
    OPS,
    WAIT_S,
    Server,
    auth,
    command,
    running,
    token,
    unique_id,
    wait_until,
)
from tests.web.browser import chromium

SOON = {
    # the restaurant deadline falls inside the dashboard's five-minute window
    "ORDERCAST_RESTAURANT_TIMEOUT_S": "120",
    "ORDERCAST_DISPATCH_TIMEOUT_S": "600",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db_path = tmp_path_factory.mktemp("ops") / "ordercast.db"
    with running(db_path, **SOON) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_S * 1000)
    opened.goto(f"{server.url}/ops?token={token('ops', 'ops-1')}")
    expect(opened.locator("#link")).to_have_attribute("data-state", "live")
    yield opened
    context.close()


def create(client: httpx.Client) -> str:
    order_id = unique_id()
    body = {"orderId": order_id, "customerId": "cu-1", "restaurantId": "r-1"}
    assert client.post("/orders", json=body, headers=OPS).status_code == 201
    return order_id


def count(page: Page, status: str) -> int:
    return int(page.locator(f"#count-{status}").text_content() or "")


def test_the_graph_is_drawn_from_the_lifecycle_table(page: Page) -> None:
    for status in Status:
        expect(page.locator(f"#status-{status.value}")).to_be_visible()
    assert page.locator("#lifecycle g.edge").count() == len(edges())
    assert page.locator("#lifecycle g.edge.dashed").count() == 2


def test_counts_feed_and_risks_follow_new_orders_live(
    page: Page, client: httpx.Client
) -> None:
    # given the dashboard as it stands
    page.wait_for_function(
        "document.getElementById('count-RECEIVED').textContent !== '–'"
    )
    received = count(page, "RECEIVED")

    # when an order arrives
    order_id = create(client)

    # then it is counted, shown in the feed and at risk of its restaurant deadline
    expect(page.locator("#count-RECEIVED")).to_have_text(str(received + 1))
    row = page.locator(f'#feed li[data-order-id="{order_id}"]')
    expect(row).to_contain_text("order.received")
    risk = page.locator("#risk tr", has_text=order_id)
    expect(risk).to_contain_text("restaurant_answer")
    expect(risk).to_contain_text("in ")

    # and when the restaurant accepts it, the counts move and the risk goes
    assert command(client, order_id, "accept").status_code == 200
    expect(page.locator("#count-RECEIVED")).to_have_text(str(received))
    expect(page.locator("#risk tr", has_text=order_id)).to_have_count(0)


def test_any_orders_history_is_shown(page: Page, client: httpx.Client) -> None:
    order_id = create(client)
    assert command(client, order_id, "accept").status_code == 200

    page.fill("#history-id", order_id)
    page.click("#history-form button")

    expect(page.locator("#history li")).to_have_count(2)
    expect(page.locator("#history li").nth(1)).to_contain_text("order.accepted")

    # it stays current while the order moves on
    assert command(client, order_id, "reject").status_code == 409
    assert command(client, order_id, "cancel").status_code == 200
    expect(page.locator("#history li")).to_have_count(3)


def test_an_unknown_order_has_no_history(page: Page) -> None:
    page.fill("#history-id", "o-nobody")
    page.click("#history-form button")

    expect(page.locator("#history-note")).to_have_text("No order o-nobody")


def test_a_customer_token_does_not_open_the_dashboard(
    browser: Browser, server: Server
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/ops?token={token('customer', 'cu-1')}")

    expect(page.locator("#link")).to_have_attribute("data-state", "refused")
    context.close()


@pytest.mark.parametrize("link_token", ["not-a-token", token("customer", "cu-1")])
def test_a_refused_link_stops_trying_the_feed(
    browser: Browser, server: Server, link_token: str
) -> None:
    # given the dashboard opened with a token that is not an ops one
    context = browser.new_context()
    page = context.new_page()
    sockets: list[object] = []
    page.on("websocket", lambda socket: sockets.append(socket))
    page.goto(f"{server.url}/ops?token={link_token}")

    # when it has had time to retry several times
    expect(page.locator("#link")).to_have_attribute("data-state", "refused")
    page.wait_for_timeout(3000)

    # then it tried the feed once, and says why it stopped
    assert len(sockets) == 1
    expect(page.locator("#link")).to_have_attribute("data-state", "refused")
    context.close()


@pytest.mark.parametrize("path", ["/ops/counts", "/ops/at-risk"])
def test_ops_queries_are_for_ops_and_dispatch(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers=auth("customer", "cu-1")).status_code == 403
    assert client.get(path, headers=auth("courier", "c-1")).status_code == 403
    assert client.get(path, headers=auth("dispatch", "d-1")).status_code == 200
    assert client.get(path, headers=OPS).status_code == 200


def test_counts_cover_every_status(client: httpx.Client) -> None:
    counts = client.get("/ops/counts", headers=OPS).json()["counts"]

    assert set(counts) == {status.value for status in Status}
    assert all(isinstance(n, int) and n >= 0 for n in counts.values())


def test_a_bad_window_is_refused(client: httpx.Client) -> None:
    response = client.get("/ops/at-risk", params={"withinS": -1}, headers=OPS)

    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_a_fired_dispatch_deadline_leaves_the_order_overdue(tmp_path: Path) -> None:
    short = {
        "ORDERCAST_RESTAURANT_TIMEOUT_S": "600",
        "ORDERCAST_DISPATCH_TIMEOUT_S": "0.3",
    }
    with running(tmp_path / "ordercast.db", **short) as srv, srv.client() as http:
        order_id = create(http)
        assert command(http, order_id, "accept").status_code == 200

        def overdue() -> list[dict[str, object]]:
            risks = http.get("/ops/at-risk", headers=OPS).json()["orders"]
            return [r for r in risks if r["orderId"] == order_id and r["passed"]]

        [risk] = wait_until(lambda: overdue() or None)

    assert risk["deadline"] == "courier_assignment"
    assert risk["status"] == "ACCEPTED"
