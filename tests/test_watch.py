"""`ordercast watch` as a subprocess against real server processes."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from ordercast.watch import Watcher, describe, websocket_url
from tests.support import (
    LONG_DEADLINES,
    SECRET,
    WAIT_S,
    Server,
    command,
    create_order,
    events_of,
    free_port,
    running,
    token,
    unique_id,
)

RESTART_WAIT_S = 4 * WAIT_S
"""Longest wait for a line that needs the server restarted and a reconnect."""


class Output:
    """Lines a subprocess prints, read by a thread so a test never hangs."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next(self, timeout_s: float = WAIT_S) -> str:
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(
                f"no line in {timeout_s} s after {self.seen}"
            ) from None
        self.seen.append(line)
        return line

    def until(
        self, done: Callable[[dict[str, Any]], bool], timeout_s: float = WAIT_S
    ) -> list[str]:
        """Lines up to and including the first whose frame satisfies `done`."""
        lines = [self.next(timeout_s)]
        while not done(json.loads(lines[-1])):
            lines.append(self.next(timeout_s))
        return lines


def is_event(order_id: str, seq: int) -> Callable[[dict[str, Any]], bool]:
    def check(frame: dict[str, Any]) -> bool:
        return frame.get("orderId") == order_id and frame.get("seq") == seq

    return check


@contextmanager
def watching(server: Server, *args: str, stderr: Path) -> Iterator[Output]:
    """`ordercast watch` against `server`; stopped with Ctrl-C (SIGINT) at the end."""
    env = {**os.environ, "ORDERCAST_TOKEN_SECRET": SECRET, "COLUMNS": "200"}
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "ordercast", "watch", "--url", server.url, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    output = Output(process)
    try:
        yield output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.wait(10)
        output.reader.join(10)
        assert process.stdout is not None
        process.stdout.close()


def drive(client: httpx.Client, order_id: str, *names: str) -> None:
    for name in names:
        fields = {"courierId": "c-1"} if name == "assign_courier" else {}
        response = command(client, order_id, name, **fields)
        assert response.status_code == 200, response.text


def subscribe_frame(order_id: str, since: int = 0) -> str:
    return json.dumps({"action": "subscribe", "orderId": order_id, "since": since})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db_path = tmp_path_factory.mktemp("watch") / "ordercast.db"
    with running(db_path, **LONG_DEADLINES) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


# one order


def test_watch_prints_every_frame_exactly_as_a_client_receives_it(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    # given an order, watched and followed by a plain client, both from seq 0
    order_id = unique_id()
    create_order(client, order_id)
    with (
        watching(server, order_id, stderr=tmp_path / "err") as out,
        connect(server.ws_url()) as reference,
    ):
        reference.send(subscribe_frame(order_id))
        received = [str(reference.recv(WAIT_S)) for _ in range(2)]
        printed = out.until(is_event(order_id, 1))

        # when the order is delivered
        drive(client, order_id, "accept", "assign_courier", "pick_up")
        drive(client, order_id, "start_delivery", "deliver")
        printed += out.until(is_event(order_id, 6))
        received += [str(reference.recv(WAIT_S)) for _ in range(5)]

    # then watch printed the same text, frame for frame
    assert printed == received
    assert json.loads(printed[0])["type"] == "subscribed"
    assert [json.loads(line) for line in printed[1:]] == events_of(client, order_id)
    assert out.process.returncode == 0, "Ctrl-C is a normal way to stop"


def test_watch_starts_after_since(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    order_id = unique_id()
    create_order(client, order_id)
    drive(client, order_id, "accept", "assign_courier")
    with watching(server, order_id, "--since", "2", stderr=tmp_path / "err") as out:
        printed = out.until(is_event(order_id, 3))
    frames = [json.loads(line) for line in printed]
    assert [f["type"] for f in frames] == ["subscribed", "order.event"]
    assert frames[0]["snapshot"]["status"] == "COURIER_ASSIGNED"


def test_watch_resumes_after_the_server_restarts_without_gaps_or_repeats(
    tmp_path: Path,
) -> None:
    with running(tmp_path / "restart.db", **LONG_DEADLINES) as server:
        # given a watched order with two events
        order_id = unique_id()
        with server.client() as client:
            create_order(client, order_id)
            drive(client, order_id, "accept")
        with watching(server, order_id, stderr=tmp_path / "err") as out:
            printed = out.until(is_event(order_id, 2))

            # when the server is killed and comes back, and the order moves on
            server.kill()
            server.start()
            with server.client() as client:
                drive(client, order_id, "assign_courier", "pick_up")
                printed += out.until(is_event(order_id, 4), RESTART_WAIT_S)
                stored = events_of(client, order_id)

    # then every event was printed once, in order, across two connections
    frames = [json.loads(line) for line in printed]
    events = [f for f in frames if f["type"] == "order.event"]
    assert events == stored
    assert [f["type"] for f in frames].count("subscribed") == 2
    assert "reconnecting" in (tmp_path / "err").read_text()


def test_watch_of_an_unknown_order_prints_the_error_and_exits(
    server: Server, tmp_path: Path
) -> None:
    with watching(server, "o-nobody", stderr=tmp_path / "err") as out:
        line = out.next()
        assert out.process.wait(WAIT_S) == 1
    assert json.loads(line)["code"] == "order_not_found"
    assert "subscribe refused" in (tmp_path / "err").read_text()


def test_watch_with_a_bad_token_exits_with_an_error(
    server: Server, tmp_path: Path
) -> None:
    args = ("o-any", "--token", "not-a-token")
    with watching(server, *args, stderr=tmp_path / "err") as out:
        assert out.process.wait(WAIT_S) == 1
    assert "refused the handshake" in (tmp_path / "err").read_text()


def test_watch_as_the_customer_follows_their_own_order(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    order_id = unique_id()
    create_order(client, order_id, customer="cu-77")
    args = (order_id, "--token", token("customer", "cu-77"))
    with watching(server, *args, stderr=tmp_path / "err") as out:
        printed = out.until(is_event(order_id, 1))
    assert json.loads(printed[0])["snapshot"]["status"] == "RECEIVED"


# every order


def test_watch_all_follows_every_order_live(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    # given ops watching every order
    first, second = unique_id(), unique_id()
    with watching(server, "--all", stderr=tmp_path / "err") as out:
        subscribed = out.next()

        # when two orders are created and one is accepted
        create_order(client, first)
        create_order(client, second)
        drive(client, first, "accept")
        printed = out.until(is_event(first, 2))

    # then each order's events were printed live, as stored
    assert subscribed == '{"type":"subscribed","orderId":"*","snapshot":null}'
    frames = [json.loads(line) for line in printed]
    for order_id in (first, second):
        mine = [f for f in frames if f.get("orderId") == order_id]
        assert mine == events_of(client, order_id)


def test_watch_pretty_prints_a_readable_line_per_event(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    order_id = unique_id()
    create_order(client, order_id)
    drive(client, order_id, "accept")
    with watching(server, order_id, "--pretty", stderr=tmp_path / "err") as out:
        lines = [out.next() for _ in range(3)]
    assert lines[0].startswith(f"following {order_id} (ACCEPTED at seq 2)")
    assert f"{order_id} #1 RECEIVED" in lines[1]
    assert f"{order_id} #2 ACCEPTED" in lines[2]


def test_watch_with_no_server_there_says_so_and_exits() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    done = subprocess.run(
        [sys.executable, "-m", "ordercast", "watch", "o-1", "--url", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 1
    assert f"no server answers at {url.removeprefix('http://')}" in done.stderr


def test_watch_needs_an_order_or_all(server: Server) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ordercast", "watch", "--url", server.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "ORDER_ID or --all" in done.stderr


# the pure parts


def test_websocket_url_carries_the_token_and_language() -> None:
    url = websocket_url("https://example.test/base/", "t.k", "de")
    assert url == "wss://example.test/base/ws?token=t.k&lang=de"


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://example.test", "http://"])
def test_websocket_url_refuses_what_is_not_a_server_url(url: str) -> None:
    with pytest.raises(ValueError, match="is not a server URL"):
        websocket_url(url, "t.k")


def test_resubscribe_asks_for_events_after_the_last_seq_seen() -> None:
    watcher = Watcher("ws://unused", "o-1", lambda text: None, since_seq=0)
    watcher._note_seq({"type": "order.event", "orderId": "o-1", "seq": 4})
    watcher._note_seq({"type": "order.event", "orderId": "o-2", "seq": 9})
    watcher._note_seq({"type": "order.event", "orderId": "o-1", "seq": 3})
    assert json.loads(watcher.subscribe_frame()) == {
        "action": "subscribe",
        "orderId": "o-1",
        "since": 4,
    }


def test_following_every_order_resubscribes_without_since() -> None:
    watcher = Watcher("ws://unused", "*", lambda text: None, since_seq=0)
    watcher._note_seq({"type": "order.event", "orderId": "o-1", "seq": 4})
    assert json.loads(watcher.subscribe_frame()) == {
        "action": "subscribe",
        "orderId": "*",
    }


def test_describe_shows_time_order_seq_status_and_message() -> None:
    frame = {
        "type": "order.event",
        "orderId": "o-1",
        "seq": 3,
        "status": "COURIER_ASSIGNED",
        "at": "2026-12-03T12:00:05.120Z",
        "message": "Your courier is on the way",
    }
    line = describe(frame)
    assert line.startswith("[dim]12:00:05.120[/] o-1 #3 [bold]COURIER_ASSIGNED")
    assert line.endswith("Your courier is on the way")
