"""Fan-out benchmark: idle memory, command-to-follower latency, durable throughput.

Starts its own `ordercast serve` process on a temporary SQLite file and prints
what it measured next to the targets:

1. RSS per idle connection: server RSS before and after opening N
   authenticated WebSocket connections that each subscribe to an order.
2. Latency at a fixed rate: followers on WebSockets, `assign_courier`
   commands sent over HTTP at a fixed open-loop rate; for every command, the
   time from just before the request to each follower's `order.event` frame.
3. Sustained durable throughput: closed loop with C commands in flight,
   with SQLite `synchronous=FULL` (the default) and, on a second server,
   `synchronous=NORMAL`.

The load generator runs in child processes (one follower process, and one or
more sender processes), so that receiving frames never delays sending. It is
a script that prints figures, not a test: nothing here fails on a slow run.

Run it from the repository root with the project's virtualenv:

    python bench/fanout.py            # full run, a minute or two
    python bench/fanout.py --quick    # smoke check, under 30 s
    python bench/fanout.py --json     # figures as JSON on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import math
import multiprocessing
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as PipeEnd
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ordercast.auth import issue_token
from ordercast.lifecycle import Role

try:
    import uvloop
except ImportError:  # the benchmark still runs, a little slower
    uvloop = None

TARGET_COMMANDS_PER_S = 1500.0
TARGET_P99_MS = 25.0
TARGET_RATE = 1000.0
TARGET_FOLLOWERS = 1000
TARGET_IDLE_KB = 50.0

OPS_SUBJECT = "ops-bench"
CONNECT_CONCURRENCY = 50
"""WebSocket handshakes in flight at once while opening connections."""
DRAIN_S = 1.0
"""How long followers keep listening after the last command was answered."""


# settings


@dataclass(frozen=True)
class BenchSettings:
    """What one run measures, from the command line."""

    idle_connections: int
    followers: int
    followers_per_order: int
    rate: float
    duration_s: float
    concurrency: int
    in_flight: int
    load_processes: int
    with_normal: bool
    quick: bool

    @property
    def orders(self) -> int:
        """Orders the followers are spread over (each has followers)."""
        return math.ceil(self.followers / self.followers_per_order)


def parse_args(argv: Sequence[str] | None = None) -> tuple[BenchSettings, bool]:
    """The run's settings and whether to print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-connections", type=int, default=1000)
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument(
        "--followers-per-order",
        type=int,
        default=1,
        help="followers of each order; orders = followers / this (default 1)",
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="commands/s")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per timed phase"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=96,
        help="commands in flight in the throughput phase",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=32,
        help="keep-alive HTTP connections of the fixed-rate sender",
    )
    parser.add_argument(
        "--load-processes",
        type=int,
        default=1,
        help="sender processes (the followers always get one of their own)",
    )
    parser.add_argument(
        "--no-normal",
        action="store_true",
        help="skip the second server with ORDERCAST_SQLITE_SYNCHRONOUS=NORMAL",
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.idle_connections = min(args.idle_connections, 200)
        args.followers = min(args.followers, 200)
        args.rate = min(args.rate, 300.0)
        args.duration = min(args.duration, 3.0)
        args.concurrency = min(args.concurrency, 32)
    settings = BenchSettings(
        idle_connections=args.idle_connections,
        followers=args.followers,
        followers_per_order=args.followers_per_order,
        rate=args.rate,
        duration_s=args.duration,
        concurrency=args.concurrency,
        in_flight=args.in_flight,
        load_processes=args.load_processes,
        with_normal=not args.no_normal,
        quick=args.quick,
    )
    return settings, args.json


def progress(message: str) -> None:
    """A line on stderr, so stdout holds only the figures."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# machine facts


def machine_facts(db_dir: Path) -> dict[str, Any]:
    """What the figures depend on: cores, Python, disk, event loops."""
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "db_filesystem": _filesystem_of(db_dir),
        "server_loop": "uvloop" if _installed("uvloop") else "asyncio",
        "server_http": "httptools" if _installed("httptools") else "h11",
        "client": f"aiohttp {aiohttp.__version__} on "
        + ("uvloop" if uvloop is not None else "asyncio"),
    }


def _installed(module: str) -> bool:
    # uvicorn's "auto" loop and http settings pick these when importable
    return importlib.util.find_spec(module) is not None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem_of(path: Path) -> str:
    """The type of the filesystem holding `path` (fsync cost depends on it)."""
    target = str(path.resolve())
    best, best_type = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best_type
    for line in mounts:
        parts = line.split()
        mount_point, fs_type = parts[1], parts[2]
        inside = target == mount_point or target.startswith(
            mount_point.rstrip("/") + "/"
        )
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


# the server process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """An `ordercast serve` process on a free port and its own SQLite file."""

    db_path: Path
    secret: str
    synchronous: str = "FULL"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    """Further settings; `bench/cluster.py` points the store and bus elsewhere."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def log_path(self) -> Path:
        return self.db_path.with_suffix(".log")

    @property
    def pid(self) -> int:
        assert self.process is not None, "start() first"
        return self.process.pid

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        """Start the server and wait until `/healthz` answers.

        Raises:
            RuntimeError: it exited or did not answer in time.
        """
        env = {
            **os.environ,
            "ORDERCAST_DATABASE_URL": f"sqlite:///{self.db_path}",
            "ORDERCAST_TOKEN_SECRET": self.secret,
            "ORDERCAST_SQLITE_SYNCHRONOUS": self.synchronous,
            **self.extra_env,
        }
        command = [sys.executable, "-m", "ordercast", "serve"]
        command += ["--port", str(self.port), "--log-level", "warning"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            if _answers(f"{self.url}/healthz"):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"server did not answer in {timeout_s} s:\n{self.log()}")

    def rss_kb(self) -> int:
        """VmRSS of the server process, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def settled_rss_kb(self, min_wait_s: float = 1.5, timeout_s: float = 10.0) -> int:
        """RSS once it has stopped moving (two readings 0.5 s apart agree)."""
        time.sleep(min_wait_s)
        last = self.rss_kb()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.rss_kb()
            if abs(now - last) <= max(64, last // 500):
                return now
            last = now
        return last

    def cpu_s(self) -> float:
        """CPU time (user + system, all threads) the server has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14, 15
        return ticks / os.sysconf("SC_CLK_TCK")

    def problems_logged(self) -> int:
        """Lines at WARNING or above in the server's log."""
        lines = self.log().splitlines()
        return sum(1 for line in lines if "WARNING" in line or "ERROR" in line)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# orders


@dataclass(frozen=True)
class Fixture:
    """Orders in status COURIER_ASSIGNED and the tokens that reach them."""

    order_ids: tuple[str, ...]
    customer_tokens: tuple[str, ...]
    """Token of each order's customer, who may follow it."""
    ops_token: str


def make_fixture(secret: str, orders: int) -> Fixture:
    order_ids = tuple(f"o-bench-{i:05d}" for i in range(orders))
    customers = tuple(
        issue_token(secret, Role.CUSTOMER, f"cu-bench-{i:05d}") for i in range(orders)
    )
    return Fixture(order_ids, customers, issue_token(secret, Role.OPS, OPS_SUBJECT))


async def prepare_orders(url: str, fixture: Fixture, concurrency: int = 32) -> None:
    """Create every order and move it to COURIER_ASSIGNED (create, accept, assign).

    From there `assign_courier` can be repeated without end: DESIGN.md allows
    a reassignment until pickup.

    Raises:
        RuntimeError: the server refused a step.
    """
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {fixture.ops_token}"}

    async def prepare(session: aiohttp.ClientSession, index: int) -> None:
        order_id = fixture.order_ids[index]
        create = {
            "orderId": order_id,
            "customerId": f"cu-bench-{index:05d}",
            "restaurantId": f"r-bench-{index % 50}",
        }
        steps: list[tuple[str, dict[str, Any]]] = [
            ("/orders", create),
            (f"/orders/{order_id}/commands", {"command": "accept"}),
            (
                f"/orders/{order_id}/commands",
                {"command": "assign_courier", "courierId": "c-start"},
            ),
        ]
        async with limit:
            for path, body in steps:
                async with session.post(path, json=body) as response:
                    if response.status not in (200, 201):
                        text = await response.text()
                        raise RuntimeError(f"{path}: {response.status} {text}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        url, connector=connector, headers=headers
    ) as session:
        await asyncio.gather(
            *(prepare(session, i) for i in range(len(fixture.order_ids)))
        )


# child processes and how they talk to the parent


class Channel:
    """The child's end of a pipe to the parent, usable from asyncio."""

    def __init__(self, end: PipeEnd) -> None:
        self._end = end

    def send(self, message: Any) -> None:
        self._end.send(message)

    async def receive(self) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._end.recv)


ChildMain = Callable[[Any, Channel], Coroutine[Any, Any, None]]


def _child_entry(main: ChildMain, plan: Any, end: PipeEnd) -> None:
    """Run `main(plan, channel)` on a fresh event loop (uvloop when installed)."""
    factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(plan, Channel(end)))


@dataclass
class Child:
    """A load-generator process and the parent's end of its pipe."""

    process: multiprocessing.process.BaseProcess
    end: PipeEnd

    @classmethod
    def spawn(cls, main: ChildMain, plan: Any) -> Child:
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=_child_entry, args=(main, plan, child_end), daemon=True
        )
        process.start()
        child_end.close()
        return cls(process, parent_end)

    def expect(self, timeout_s: float = 120.0) -> Any:
        """The child's next message.

        Raises:
            RuntimeError: the child died or stayed silent for `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.end.poll(0.1):
                return self.end.recv()
            if not self.process.is_alive():
                code = self.process.exitcode
                raise RuntimeError(f"load generator exited with {code}")
        raise RuntimeError(f"load generator silent for {timeout_s} s")

    def tell(self, message: Any) -> None:
        self.end.send(message)

    def join(self) -> None:
        self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


# followers


@dataclass(frozen=True)
class FollowerPlan:
    """WebSocket connections to open, each following one order."""

    ws_url: str
    subscriptions: tuple[tuple[str, str], ...]
    """(token, order_id) of each connection."""


Frame = tuple[int, str, int, int]
"""(connection index, orderId, seq, monotonic ns of arrival)."""


async def follow(plan: FollowerPlan, channel: Channel) -> None:
    """Child process: open the connections, record `order.event` frames.

    Talks to the parent: sends ("ready", n), waits for any message, sends
    ("frames", list of Frame, CPU seconds used since ready), then closes the
    connections.
    """
    frames: list[Frame] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
        sockets = await asyncio.gather(
            *(
                _open_follower(session, plan.ws_url, index, token, order_id, limit)
                for index, (token, order_id) in enumerate(plan.subscriptions)
            )
        )
        readers = [
            asyncio.create_task(_record_frames(index, ws, frames))
            for index, ws in enumerate(sockets)
        ]
        channel.send(("ready", len(sockets)))
        cpu_before_s = time.process_time()
        await channel.receive()
        channel.send(("frames", frames, time.process_time() - cpu_before_s))
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets))


async def _open_follower(
    session: aiohttp.ClientSession,
    ws_url: str,
    index: int,
    token: str,
    order_id: str,
    limit: asyncio.Semaphore,
) -> aiohttp.ClientWebSocketResponse:
    """Connect, subscribe to `order_id`, and wait for the `subscribed` answer."""
    async with limit:
        ws = await session.ws_connect(f"{ws_url}?token={token}", max_msg_size=0)
        await ws.send_str(
            orjson.dumps({"action": "subscribe", "orderId": order_id}).decode()
        )
        answer = orjson.loads((await ws.receive()).data)
        if answer.get("type") != "subscribed":
            raise RuntimeError(f"connection {index}: {answer}")
        return ws


async def _record_frames(
    index: int, ws: aiohttp.ClientWebSocketResponse, frames: list[Frame]
) -> None:
    async for message in ws:
        arrived_ns = time.monotonic_ns()
        if message.type is not aiohttp.WSMsgType.TEXT:
            continue
        frame = orjson.loads(message.data)
        if frame.get("type") == "order.event":
            frames.append((index, frame["orderId"], frame["seq"], arrived_ns))


# senders


@dataclass(frozen=True)
class SenderPlan:
    """`assign_courier` commands over HTTP, paced or closed-loop."""

    url: str
    ops_token: str
    order_ids: tuple[str, ...]
    """Commands go round-robin over these orders."""
    connections: int
    """Keep-alive connections in the pool (and workers, in a closed loop)."""
    duration_s: float
    rate: float | None = None
    """Commands per second, open loop; None for a closed loop."""


Sent = tuple[str, int, int, int, int, int]
"""(orderId, seq or -1, due ns, sent ns, answered ns, HTTP status or -1)."""


async def send_commands(plan: SenderPlan, channel: Channel) -> None:
    """Child process: warm the pool, wait for a start time, send, report.

    Talks to the parent: sends "ready", receives the start time (monotonic
    ns), sends ("sent", list of Sent, CPU seconds used while sending).
    """
    headers = {
        "Authorization": f"Bearer {plan.ops_token}",
        "Content-Type": "application/json",
    }
    connector = aiohttp.TCPConnector(limit=plan.connections, force_close=False)
    async with aiohttp.ClientSession(
        plan.url, connector=connector, headers=headers
    ) as session:
        await _warm_pool(session, plan.connections)
        channel.send("ready")
        start_ns = int(await channel.receive())
        await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
        sent: list[Sent] = []
        cpu_before_s = time.process_time()
        if plan.rate is None:
            await _closed_loop(session, plan, start_ns, sent)
        else:
            await _open_loop(session, plan, start_ns, sent)
        channel.send(("sent", sent, time.process_time() - cpu_before_s))


async def _warm_pool(session: aiohttp.ClientSession, connections: int) -> None:
    """Open every keep-alive connection now, so no handshake is timed."""

    async def touch() -> None:
        async with session.get("/healthz") as response:
            await response.read()

    await asyncio.gather(*(touch() for _ in range(connections)))


async def _open_loop(
    session: aiohttp.ClientSession, plan: SenderPlan, start_ns: int, sent: list[Sent]
) -> None:
    """Send at `plan.rate` whatever the answers do (no coordinated omission)."""
    assert plan.rate is not None, "an open loop has a rate"
    interval_ns = 1e9 / plan.rate
    total = int(plan.rate * plan.duration_s)
    pending: set[asyncio.Task[None]] = set()
    for i in range(total):
        due_ns = start_ns + int(i * interval_ns)
        delay_s = (due_ns - time.monotonic_ns()) / 1e9
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        task = asyncio.create_task(_send_one(session, plan, i, due_ns, sent))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def _closed_loop(
    session: aiohttp.ClientSession, plan: SenderPlan, start_ns: int, sent: list[Sent]
) -> None:
    """Keep `plan.connections` commands in flight until the duration is over."""
    end_ns = start_ns + int(plan.duration_s * 1e9)
    counter = itertools.count()

    async def worker() -> None:
        while (now_ns := time.monotonic_ns()) < end_ns:
            await _send_one(session, plan, next(counter), now_ns, sent)

    await asyncio.gather(*(worker() for _ in range(plan.connections)))


async def _send_one(
    session: aiohttp.ClientSession,
    plan: SenderPlan,
    index: int,
    due_ns: int,
    sent: list[Sent],
) -> None:
    """One `assign_courier`; the seq of its event comes from the answer."""
    round_, order = divmod(index, len(plan.order_ids))
    order_id = plan.order_ids[order]
    # each round names another courier: the one an order already has is refused
    body = orjson.dumps({"command": "assign_courier", "courierId": f"c-{round_ % 97}"})
    sent_ns = time.monotonic_ns()
    try:
        async with session.post(f"/orders/{order_id}/commands", data=body) as response:
            payload = await response.read()
            status = response.status
    except (aiohttp.ClientError, OSError):
        payload, status = b"", -1
    answered_ns = time.monotonic_ns()
    seq = orjson.loads(payload)["events"][0]["seq"] if status == 200 else -1
    sent.append((order_id, seq, due_ns, sent_ns, answered_ns, status))


@dataclass
class Sending:
    """What the senders did, and the CPU it took on each side."""

    sent: list[Sent]
    wall_s: float
    server_cpu_s: float
    sender_cpu_s: float


def run_senders(server: ServerProcess, plans: Sequence[SenderPlan]) -> Sending:
    """Run one sender process per plan, started together; all their commands."""
    children = [Child.spawn(send_commands, plan) for plan in plans]
    try:
        for child in children:
            child.expect()
        start_ns = time.monotonic_ns() + 300_000_000
        for child in children:
            child.tell(start_ns)
        time.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
        server_cpu_before_s = server.cpu_s()
        sending = Sending([], 0.0, 0.0, 0.0)
        for child in children:
            kind, records, cpu_s = child.expect()
            assert kind == "sent", "senders answer with what they sent"
            sending.sent.extend(records)
            sending.sender_cpu_s += cpu_s
        sending.wall_s = (time.monotonic_ns() - start_ns) / 1e9
        sending.server_cpu_s = server.cpu_s() - server_cpu_before_s
        return sending
    finally:
        for child in children:
            child.join()


def split(order_ids: Sequence[str], parts: int) -> list[tuple[str, ...]]:
    """Orders dealt out to `parts` senders, so no two send for one order."""
    return [tuple(order_ids[i::parts]) for i in range(parts)]


# statistics


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (q in 0..100); nan if empty."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def summary_ms(values_ns: list[int]) -> dict[str, float]:
    """p50, p99 and max of durations given in ns, in ms."""
    ordered = sorted(v / 1e6 for v in values_ns)
    return {
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1] if ordered else math.nan,
    }


# phase 1: memory per idle connection


def measure_idle_rss(
    server: ServerProcess, fixture: Fixture, connections: int
) -> dict[str, Any]:
    """Server RSS before and after `connections` subscribed, idle WebSockets."""
    progress(f"idle: warming up, then opening {connections} connections")
    asyncio.run(_warm_up_reads(server, fixture))
    before_kb = server.settled_rss_kb()

    orders = len(fixture.order_ids)
    subscriptions = tuple(
        (fixture.customer_tokens[i % orders], fixture.order_ids[i % orders])
        for i in range(connections)
    )
    child = Child.spawn(follow, FollowerPlan(server.ws_url, subscriptions))
    try:
        kind, opened = child.expect()
        assert kind == "ready", "followers report when every one is subscribed"
        after_kb = server.settled_rss_kb()
        child.tell("stop")
        child.expect()
    finally:
        child.join()
    return {
        "connections": opened,
        "rss_before_kb": before_kb,
        "rss_after_kb": after_kb,
        "kb_per_connection": (after_kb - before_kb) / opened,
    }


async def _warm_up_reads(server: ServerProcess, fixture: Fixture) -> None:
    """Exercise the paths a subscription takes, so their one-off costs are paid.

    Concurrent reads start the store's reader threads and connections; a few
    WebSocket subscriptions load the code of the WebSocket path. Few sockets
    are used, so little freed memory is left for the measured ones to reuse.
    """
    headers = {"Authorization": f"Bearer {fixture.ops_token}"}
    async with aiohttp.ClientSession(server.url, headers=headers) as session:

        async def read(order_id: str) -> None:
            async with session.get(f"/orders/{order_id}") as response:
                await response.read()

        for _ in range(3):
            await asyncio.gather(*(read(o) for o in fixture.order_ids[:64]))
        for index in range(5):
            ws = await _open_follower(
                session,
                server.ws_url,
                index,
                fixture.customer_tokens[index],
                fixture.order_ids[index],
                asyncio.Semaphore(1),
            )
            await ws.close()


# phase 2: latency at a fixed rate


def measure_fanout(
    server: ServerProcess, fixture: Fixture, settings: BenchSettings
) -> dict[str, Any]:
    """Followers on every order, commands at a fixed rate; frame latencies."""
    orders = len(fixture.order_ids)
    subscriptions = tuple(
        (fixture.customer_tokens[i % orders], fixture.order_ids[i % orders])
        for i in range(settings.followers)
    )
    followers_of: dict[str, list[int]] = {}
    for index, (_, order_id) in enumerate(subscriptions):
        followers_of.setdefault(order_id, []).append(index)

    progress(f"fan-out: opening {settings.followers} followers")
    child = Child.spawn(follow, FollowerPlan(server.ws_url, subscriptions))
    try:
        kind, _ = child.expect()
        assert kind == "ready", "followers report when every one is subscribed"
        progress(
            f"fan-out: {settings.rate:.0f} commands/s for {settings.duration_s:.0f} s"
        )
        plans = [
            SenderPlan(
                server.url,
                fixture.ops_token,
                part,
                max(1, settings.in_flight // settings.load_processes),
                settings.duration_s,
                rate=settings.rate / settings.load_processes,
            )
            for part in split(fixture.order_ids, settings.load_processes)
        ]
        ready_at = time.monotonic()
        sending = run_senders(server, plans)
        time.sleep(DRAIN_S)
        child.tell("stop")
        kind, frames, follower_cpu_s = child.expect()
        assert kind == "frames", "followers answer stop with their frames"
        follower_wall_s = time.monotonic() - ready_at
    finally:
        child.join()
    results = analyse_fanout(sending.sent, frames, followers_of)
    results["cpu_percent"] = {
        "server": 100 * sending.server_cpu_s / sending.wall_s,
        "senders": 100 * sending.sender_cpu_s / sending.wall_s,
        "followers": 100 * follower_cpu_s / follower_wall_s,
    }
    return results


def analyse_fanout(
    sent: list[Sent],
    frames: list[Frame],
    followers_of: dict[str, list[int]],
) -> dict[str, Any]:
    """Match each follower frame to its command by (orderId, seq)."""
    acknowledged = {(s[0], s[1]): s for s in sent if s[5] == 200}
    seen = Counter((index, order_id, seq) for index, order_id, seq, _ in frames)
    latencies_ns: list[int] = []
    unexpected = 0
    for index, order_id, seq, arrived_ns in frames:
        command = acknowledged.get((order_id, seq))
        if command is None:
            unexpected += 1
            continue
        if seen[(index, order_id, seq)] > 0:
            seen[(index, order_id, seq)] = 0  # count each follower's frame once
            latencies_ns.append(arrived_ns - command[3])
    expected = sum(len(followers_of[order_id]) for order_id, _ in acknowledged)
    first_sent_ns = min((s[3] for s in sent), default=0)
    last_sent_ns = max((s[3] for s in sent), default=0)
    send_span_s = max((last_sent_ns - first_sent_ns) / 1e9, 1e-9)
    return {
        "commands": len(sent),
        "commands_failed": len(sent) - len(acknowledged),
        "achieved_rate": (len(sent) - 1) / send_span_s if len(sent) > 1 else 0.0,
        "frames_expected": expected,
        "frames_received": len(frames),
        "frames_missing": expected - len(latencies_ns),
        "frames_duplicated": len(frames) - unexpected - len(latencies_ns),
        "frames_unexpected": unexpected,
        "frame_latency": summary_ms(latencies_ns),
        "answer_latency": summary_ms([s[4] - s[3] for s in sent if s[5] == 200]),
        "sender_lag": summary_ms([max(0, s[3] - s[2]) for s in sent]),
    }


# phase 3: sustained durable throughput


def measure_throughput(
    server: ServerProcess, fixture: Fixture, settings: BenchSettings
) -> dict[str, Any]:
    """Closed loop: `concurrency` commands in flight; acknowledged commands/s."""
    progress(
        f"throughput ({server.synchronous}): {settings.concurrency} in flight "
        f"for {settings.duration_s:.0f} s"
    )
    per_process = max(1, settings.concurrency // settings.load_processes)
    plans = [
        SenderPlan(
            server.url, fixture.ops_token, part, per_process, settings.duration_s
        )
        for part in split(fixture.order_ids, settings.load_processes)
    ]
    sending = run_senders(server, plans)
    sent = sending.sent
    ok = [s for s in sent if s[5] == 200]
    first_ns = min((s[3] for s in sent), default=0)
    last_ns = max((s[4] for s in ok), default=first_ns + 1)
    return {
        "cpu_percent": {
            "server": 100 * sending.server_cpu_s / sending.wall_s,
            "senders": 100 * sending.sender_cpu_s / sending.wall_s,
        },
        "synchronous": server.synchronous,
        "in_flight": per_process * len(plans),
        "acknowledged": len(ok),
        "failed": len(sent) - len(ok),
        "commands_per_s": len(ok) / ((last_ns - first_ns) / 1e9),
        "answer_latency": summary_ms([s[4] - s[3] for s in ok]),
    }


# the run


def run(settings: BenchSettings) -> dict[str, Any]:
    """Every phase, on a FULL server and (optionally) a NORMAL one."""
    secret = secrets.token_urlsafe(48)
    fixture = make_fixture(secret, settings.orders)
    results: dict[str, Any] = {
        "settings": settings.__dict__ | {"orders": settings.orders}
    }
    with tempfile.TemporaryDirectory(prefix="ordercast-bench-") as tmp:
        results["machine"] = machine_facts(Path(tmp))
        results["machine"]["load_processes"] = settings.load_processes + 1
        server = ServerProcess(Path(tmp) / "bench.db", secret).start()
        try:
            progress(f"preparing {settings.orders} orders (synchronous=FULL)")
            asyncio.run(prepare_orders(server.url, fixture))
            results["idle"] = measure_idle_rss(
                server, fixture, settings.idle_connections
            )
            results["fanout"] = measure_fanout(server, fixture, settings)
            results["throughput"] = [measure_throughput(server, fixture, settings)]
            results["server_problems_logged"] = server.problems_logged()
        finally:
            server.stop()

        if settings.with_normal:
            normal = ServerProcess(Path(tmp) / "normal.db", secret, "NORMAL").start()
            try:
                progress(f"preparing {settings.orders} orders (synchronous=NORMAL)")
                asyncio.run(prepare_orders(normal.url, fixture))
                results["throughput"].append(
                    measure_throughput(normal, fixture, settings)
                )
                results["server_problems_logged"] += normal.problems_logged()
            finally:
                normal.stop()
    results["verdicts"] = verdicts(results, settings)
    return results


def verdicts(results: dict[str, Any], settings: BenchSettings) -> dict[str, str]:
    """'met', 'MISSED', or why the target does not apply to these settings."""
    at_target_load = (
        settings.rate >= TARGET_RATE and settings.followers >= TARGET_FOLLOWERS
    )
    fanout = results["fanout"]
    p99 = fanout["frame_latency"]["p99_ms"]
    full = results["throughput"][0]["commands_per_s"]
    kb = results["idle"]["kb_per_connection"]
    complete = fanout["frames_missing"] == 0 and fanout["frames_duplicated"] == 0
    return {
        "kb_per_connection": _verdict(kb <= TARGET_IDLE_KB),
        "frame_p99": _verdict(p99 <= TARGET_P99_MS)
        if at_target_load
        else "n/a: below the target's load",
        "frames_complete": _verdict(complete),
        "commands_per_s": _verdict(full >= TARGET_COMMANDS_PER_S),
    }


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


# output


def render(results: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    s, m = results["settings"], results["machine"]
    idle, fan, v = results["idle"], results["fanout"], results["verdicts"]
    lines = [
        "ordercast fan-out benchmark"
        + (" (QUICK: smoke figures)" if s["quick"] else ""),
        f"machine : {m['cpus']} CPUs ({m['cpus_usable']} usable), {m['cpu_model']}, "
        f"Linux {m['kernel']}, {m['python']}",
        f"server  : uvicorn ({m['server_loop']}, {m['server_http']}), SQLite on "
        f"{m['db_filesystem']}, log level warning",
        f"load    : {m['client']}, {m['load_processes']} processes "
        f"({s['load_processes']} sender + 1 follower) beside the server",
        "",
    ]
    rows: list[tuple[str, str, str, str]] = [
        ("figure", "measured", "target", "verdict"),
        (
            f"RSS per idle connection (N={idle['connections']})",
            f"{idle['kb_per_connection']:.1f} KB",
            f"<= {TARGET_IDLE_KB:.0f} KB",
            v["kb_per_connection"],
        ),
        ("  server RSS before / after", _mb_pair(idle), "", ""),
    ]
    rows += _fanout_rows(fan, s, v)
    for t in results["throughput"]:
        durable = t["synchronous"] == "FULL"
        in_flight = f"{t['in_flight']} in flight"
        rows.append(
            (
                f"commands/s, {in_flight}, synchronous={t['synchronous']}",
                f"{t['commands_per_s']:,.0f}",
                f">= {TARGET_COMMANDS_PER_S:,.0f}" if durable else "(no target)",
                v["commands_per_s"] if durable else "",
            )
        )
        rows.append(
            (
                "  answer p50 / p99",
                _ms_pair(t["answer_latency"]),
                "",
                f"{t['failed']} failed" if t["failed"] else "",
            )
        )
        rows.append(("  CPU % server / senders", _cpu(t["cpu_percent"]), "", ""))
    lines += _table(rows)
    lines.append("")
    lines.append(
        f"server lines at WARNING or above: {results['server_problems_logged']}"
    )
    return "\n".join(lines)


def _fanout_rows(
    fan: dict[str, Any], s: dict[str, Any], v: dict[str, str]
) -> list[tuple[str, str, str, str]]:
    frame, answer, lag = fan["frame_latency"], fan["answer_latency"], fan["sender_lag"]
    load = (
        f"{s['followers']} followers on {s['orders']} orders, "
        f"{s['rate']:.0f} commands/s for {s['duration_s']:.0f} s"
    )
    return [
        (f"fan-out: {load}", "", "", ""),
        (
            "  command->follower frame p50",
            f"{frame['p50_ms']:.2f} ms",
            "",
            "",
        ),
        (
            "  command->follower frame p99",
            f"{frame['p99_ms']:.2f} ms",
            f"<= {TARGET_P99_MS:.0f} ms",
            v["frame_p99"],
        ),
        ("  command->follower frame max", f"{frame['max_ms']:.2f} ms", "", ""),
        ("  HTTP answer p50 / p99", _ms_pair(answer), "", ""),
        (
            "  frames missing / duplicated",
            f"{fan['frames_missing']} / {fan['frames_duplicated']}",
            "0 / 0",
            v["frames_complete"],
        ),
        (
            "  frames received / expected",
            f"{fan['frames_received']:,} / {fan['frames_expected']:,}",
            "",
            f"{fan['commands_failed']} commands failed"
            if fan["commands_failed"]
            else "",
        ),
        ("  CPU % server / senders / followers", _cpu(fan["cpu_percent"]), "", ""),
        (
            "  rate achieved; sender lag p99",
            f"{fan['achieved_rate']:,.0f}/s; {lag['p99_ms']:.2f} ms",
            "",
            "",
        ),
    ]


def _mb_pair(idle: dict[str, Any]) -> str:
    before_mb, after_mb = idle["rss_before_kb"] / 1024, idle["rss_after_kb"] / 1024
    return f"{before_mb:.1f} / {after_mb:.1f} MB"


def _cpu(percent: dict[str, float]) -> str:
    return " / ".join(f"{value:.0f}" for value in percent.values())


def _ms_pair(summary: dict[str, float]) -> str:
    return f"{summary['p50_ms']:.2f} / {summary['p99_ms']:.2f} ms"


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    out = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1])]
        cells += [row[2].ljust(widths[2]), row[3]]
        out.append("  ".join(cells).rstrip())
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    settings, as_json = parse_args(argv)
    started = time.monotonic()
    results = run(settings)
    results["wall_s"] = round(time.monotonic() - started, 1)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        print(render(results))
        print(f"wall time: {results['wall_s']} s")


if __name__ == "__main__":
    main()
