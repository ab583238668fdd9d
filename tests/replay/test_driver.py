"""The replay driver against real server processes over real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ordercast.lifecycle import Command, Status
from ordercast.replay.driver import (
    ReplaySummary,
    ServerUnavailable,
    summary_line,
    timeouts_hint,
)
from ordercast.replay.grubhub import Instance
from ordercast.replay.plan import Plan, PlanOptions, Shares, build_plan
from tests.replay.data import instance_dir
from tests.replay.replaying import (
    BUSY_MINUTE,
    SERVER_ENV,
    SPEED,
    plan_of,
    read_acks,
    replay,
    statuses_reached,
)
from tests.support import (
    SECRET,
    Server,
    create_order,
    events_of,
    free_port,
    order_of,
    running,
    unique_id,
    wait_until,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db_path = tmp_path_factory.mktemp("replay") / "ordercast.db"
    with running(db_path, **SERVER_ENV) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@dataclass
class Replayed:
    plan: Plan
    summary: ReplaySummary
    acks: Path


@pytest.fixture(scope="module")
def replayed(
    instance: Instance, server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Replayed:
    """30 orders of instance 0, a tenth of them on each detour, replayed once."""
    plan = plan_of(instance, limit=30)
    acks = tmp_path_factory.mktemp("acks") / "acks.jsonl"
    return Replayed(plan, replay(plan, server, acks), acks)


# a whole replay


def test_orders_reach_the_statuses_the_plan_intended(
    replayed: Replayed, client: httpx.Client
) -> None:
    # given every detour is in the plan
    assert set(replayed.plan.intended.values()) >= {
        Status.DELIVERED,
        Status.REJECTED,
        Status.CANCELLED,
        Status.FAILED,
    }

    # then the server ends each order where the plan meant it to
    # (silent restaurants are left to the server's deadline)
    wait_until(lambda: statuses_reached(client, replayed.plan))


def test_every_step_is_acknowledged_once(replayed: Replayed) -> None:
    summary = replayed.summary
    steps = len(replayed.plan.steps)
    assert (summary.sent, summary.acknowledged) == (steps, steps)
    assert (summary.refused, summary.failed, summary.abandoned) == (0, 0, [])
    assert summary.created == summary.finished == len(replayed.plan.intended)


def test_each_command_is_recorded_once_in_plan_order(
    replayed: Replayed, client: httpx.Client
) -> None:
    wait_until(lambda: statuses_reached(client, replayed.plan))
    for order_id in replayed.plan.intended:
        names = [e["event"] for e in events_of(client, order_id) if e["seq"] > 0]
        planned = [s.command for s in replayed.plan.steps_of(order_id)]
        assert len(names) == len(planned) + (planned == [Command.CREATE])


def test_a_second_replay_with_the_same_prefix_records_nothing_new(
    replayed: Replayed, server: Server, client: httpx.Client
) -> None:
    # given the replay done once, and its silent restaurants' deadlines fired
    wait_until(lambda: statuses_reached(client, replayed.plan))
    logs = {
        order_id: events_of(client, order_id) for order_id in replayed.plan.intended
    }

    # when the same plan is sent again
    again = replay(replayed.plan, server)

    # then every answer is the first one, and no log grew
    assert again.acknowledged == replayed.summary.acknowledged
    assert again.replayed == again.acknowledged
    assert "by earlier requests" in summary_line(again)
    assert logs == {order_id: events_of(client, order_id) for order_id in logs}


def test_acks_file_matches_the_store(replayed: Replayed, client: httpx.Client) -> None:
    acks = read_acks(replayed.acks)
    assert len(acks) == replayed.summary.acknowledged
    for ack in acks:
        stored = events_of(client, ack["orderId"])[ack["seq"] - 1]
        assert (stored["eventId"], stored["status"]) == (ack["eventId"], ack["status"])
    assert (acks[0]["command"], acks[0]["seq"]) == ("create", 1)


def test_summary_keeps_the_last_acknowledged_status(replayed: Replayed) -> None:
    counts = replayed.summary.status_counts()
    planned = replayed.plan.intended
    silent = sum(1 for s in replayed.plan.fates.values() if s.value == "no_answer")
    assert counts["RECEIVED"] == silent
    delivered = sum(1 for s in planned.values() if s is Status.DELIVERED)
    assert counts["DELIVERED"] == delivered


# refusals and failures


def test_command_that_does_not_fit_is_counted_and_its_order_given_up(
    instance: Instance, server: Server, client: httpx.Client
) -> None:
    # given the first order's id is already taken
    plan = plan_of(instance, limit=3, shares=Shares(0, 0, 0, 0))
    taken = plan.steps[0].order_id
    create_order(client, taken)

    # when the plan is replayed
    summary = replay(plan, server)

    # then its create is refused and nothing more is sent for it
    assert summary.refused == 1
    assert summary.abandoned == [taken]
    assert summary.acknowledged == len(plan.steps) - len(plan.steps_of(taken))
    names = [e["event"] for e in events_of(client, taken)]
    assert "order.accepted" not in names


def test_missing_server_is_reported_before_anything_is_sent(
    instance: Instance,
) -> None:
    nobody = Server(Path("unused.db"), port=free_port())
    with pytest.raises(ServerUnavailable, match=nobody.url):
        replay(plan_of(instance, limit=1), nobody)


def test_replay_survives_a_server_crash_and_every_ack_is_durable(
    instance: Instance, tmp_path: Path
) -> None:
    # given deadlines that cannot fire during the test, so retried commands
    # still fit when they arrive late
    env = {**SERVER_ENV, "ORDERCAST_RESTAURANT_TIMEOUT_S": "600"}
    plan = plan_of(instance, limit=30, shares=Shares(0.1, 0, 0.1, 0.1))
    acks = tmp_path / "acks.jsonl"
    with running(tmp_path / "crash.db", **env) as server:
        # when the server is killed mid-replay and started again
        result: list[ReplaySummary] = []
        options = {"retries": 40, "max_backoff_s": 0.5}
        thread = threading.Thread(
            target=lambda: result.append(replay(plan, server, acks, **options))
        )
        thread.start()
        wait_until(lambda: acks.exists() and len(read_acks(acks)) >= 40)
        server.kill()
        server.start()
        thread.join()

        # then every acknowledged command is in the store, none twice
        summary = result[0]
        assert summary.retried > 0
        assert (summary.refused, summary.failed) == (0, 0)
        with server.client() as client:
            wait_until(lambda: statuses_reached(client, plan))
            for ack in read_acks(acks):
                stored = events_of(client, ack["orderId"])[ack["seq"] - 1]
                assert stored["eventId"] == ack["eventId"]
            for order_id in plan.intended:
                assert len(events_of(client, order_id)) == len(plan.steps_of(order_id))


# the command line


def run_cli(*args: str, secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORDERCAST_TOKEN_SECRET": secret, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "ordercast", "replay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_replays_an_instance_and_prints_a_table(
    instance: Instance, server: Server, client: httpx.Client
) -> None:
    prefix = unique_id("cli")
    done = run_cli(
        *("--url", server.url, "--instance", str(instance_dir())),
        *("--limit", "5", "--speed", str(SPEED), "--prefix", prefix, "--quiet"),
    )
    assert done.returncode == 0, done.stderr
    assert "DELIVERED" in done.stdout
    assert "0 refused, 0 failed" in done.stdout
    first = instance.orders[0].order_id
    created = order_of(client, f"{prefix}-0-{first}")
    assert created["customerId"] == f"i0-cu-{first}"


def test_cli_names_the_expected_place_of_a_missing_instance(
    tmp_path: Path,
) -> None:
    done = run_cli("--instance", str(tmp_path / "nowhere"), "--no-gps")
    assert done.returncode == 2
    assert "no such instance folder" in done.stderr
    assert "../shared/data/grubhub-mdrp/<instance>" in done.stderr


def test_cli_exits_1_when_commands_failed(instance: Instance, server: Server) -> None:
    # given a replay signing with a secret the server does not know
    done = run_cli(
        *("--url", server.url, "--instance", str(instance_dir())),
        *("--limit", "3", "--speed", str(SPEED), "--no-gps", "--quiet"),
        secret="x" * 40,
    )

    # then every command fails, and the command says so
    assert done.returncode == 1
    assert "3 failed" in done.stdout
    assert "Were the servers up, with this token secret?" in done.stdout


def test_ctrl_c_stops_the_cli_with_what_it_did(
    instance: Instance, server: Server
) -> None:
    # given a replay of many orders at an unhurried speed
    command = [
        *(sys.executable, "-m", "ordercast", "replay", "--url", server.url),
        *("--instance", str(instance_dir()), "--limit", "40", "--speed", "60"),
        *("--prefix", unique_id("int"), "--no-gps", "--quiet"),
    ]
    env = {**os.environ, "ORDERCAST_TOKEN_SECRET": SECRET, "COLUMNS": "120"}
    running_replay = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    # when it is interrupted after a few seconds
    time.sleep(3)
    running_replay.send_signal(signal.SIGINT)
    out, err = running_replay.communicate(timeout=30)

    # then it says how far it got, and exits as an interrupted command does
    assert running_replay.returncode == 130, err
    [line] = [line for line in out.splitlines() if line.startswith("interrupted")]
    finished = int(line.split()[2])
    assert 0 <= finished < 40
    assert "of 40 orders finished" in line


def test_hint_names_the_server_deadlines_for_the_speed() -> None:
    assert timeouts_hint(60) == (
        "server deadlines matching --speed 60: "
        "ORDERCAST_RESTAURANT_TIMEOUT_S=5 ORDERCAST_DISPATCH_TIMEOUT_S=10"
    )


def test_wrong_secret_fails_every_order_without_retries(
    instance: Instance, server: Server
) -> None:
    plan = plan_of(instance, limit=3)
    summary = replay(plan, server, secret="another-secret-of-at-least-32-bytes")
    assert (summary.failed, summary.acknowledged, summary.retried) == (3, 0, 0)
    assert sorted(summary.abandoned) == sorted(plan.intended)


def test_couriers_report_positions_along_their_tracks(
    instance: Instance, server: Server
) -> None:
    from ordercast.replay.tracks import load_tracks

    tracks_dir = instance_dir().parent.parent / "gotrack-aracaju"
    if not tracks_dir.is_dir():
        pytest.skip("Go!Track data not found")
    options = PlanOptions(
        prefix=unique_id("g"),
        limit=6,
        start_minute=BUSY_MINUTE,
        shares=Shares(0, 0, 0, 0),
        tracks=tuple(load_tracks(tracks_dir)),
    )
    plan = build_plan(instance, options)

    summary = replay(plan, server, speed=600.0, fix_interval_s=0.05)

    assert summary.positions > 10
    assert summary.positions_refused == 0
    assert summary.acknowledged == len(plan.steps)
