from __future__ import annotations

from tests.support import Server, create_order


def test_server_creates_an_order_over_http(server: Server) -> None:
    with server.client() as client:
        created = create_order(client, "o-smoke")
    assert created["order"]["status"] == "RECEIVED"
    assert created["events"][0]["seq"] == 1
