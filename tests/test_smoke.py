from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import OPS, Server, create_order, running


def test_server_creates_an_order_over_http(server: Server) -> None:
    with server.client() as client:
        created = create_order(client, "o-smoke")
    assert created["order"]["status"] == "RECEIVED"
    assert created["events"][0]["seq"] == 1


def test_a_second_server_on_the_same_file_is_refused(tmp_path: Path) -> None:
    # given a server on a file
    db_path = tmp_path / "ordercast.db"
    with running(db_path) as first:
        # when a second one starts on it
        second = Server(db_path)
        try:
            with pytest.raises(RuntimeError) as refused:
                second.start()
        finally:
            second.stop()

        # then it says why in a line, and the first serves on
        log = str(refused.value)
        assert "error: cannot start: another ordercast server is serving" in log
        assert "Traceback" not in log
        with first.client() as client:
            create_order(client, "o-after")


def test_a_killed_server_leaves_the_file_to_the_next(tmp_path: Path) -> None:
    # given a server that stored an order and was killed with no chance to
    # clean up
    db_path = tmp_path / "ordercast.db"
    first = Server(db_path).start()
    with first.client() as client:
        create_order(client, "o-before-kill")
    first.kill()

    # then the next server on the file starts and has the order
    with running(db_path) as second, second.client() as client:
        response = client.get("/orders/o-before-kill", headers=OPS)
    assert response.status_code == 200
    assert response.json()["status"] == "RECEIVED"


def test_the_app_factory_serves_under_plain_uvicorn(tmp_path: Path) -> None:
    # given the app built by uvicorn from the factory, not by `ordercast serve`
    factory = ("-m", "uvicorn", "--factory", "ordercast.app:create_app")
    server = Server(tmp_path / "ordercast.db", program=factory)
    try:
        server.start()
        # then it opens its own runtime and serves
        with server.client() as client:
            created = create_order(client, "o-factory")
    finally:
        server.stop()
    assert created["events"][0]["seq"] == 1
