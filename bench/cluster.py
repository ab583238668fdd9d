"""Cluster benchmark: throughput and command-to-follower latency, one node and two.

Starts `ordercast serve` processes on a fresh PostgreSQL database and a Redis
key prefix of their own (dropped and deleted at the end) and measures, for
one node and then for two:

1. Latency at a fixed rate: followers spread over the nodes, each order's
   followers on another node than the one its commands go to (with one node,
   the same one); `assign_courier` at a fixed open-loop rate; the time from
   just before each request to each follower's `order.event` frame.
2. Sustained durable throughput: closed loop, commands spread over the nodes.

No load balancer: the load generator deals orders and connections out to
the nodes itself. It reuses the load generator of `fanout.py` and, like it,
prints figures and fails nothing.

    python bench/cluster.py            # full run, about two minutes
    python bench/cluster.py --quick    # smoke check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout import (  # noqa: E402  (a sibling script, not a package)
    Child,
    Fixture,
    FollowerPlan,
    SenderPlan,
    ServerProcess,
    analyse_fanout,
    follow,
    machine_facts,
    make_fixture,
    prepare_orders,
    progress,
    run_senders,
    summary_ms,
)

POSTGRES_URL = os.environ.get(
    "ORDERCAST_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ORDERCAST_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Nodes:
    """Several nodes seen as one server: their CPU time adds up."""

    nodes: list[ServerProcess]

    def cpu_s(self) -> float:
        return sum(node.cpu_s() for node in self.nodes)

    def problems_logged(self) -> int:
        return sum(node.problems_logged() for node in self.nodes)


# services


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database() -> tuple[str, str]:
    name = f"ordercast_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return name, f"{POSTGRES_URL.rpartition('/')[0]}/{name}"


def drop_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# phases


def measure_fanout(
    nodes: list[ServerProcess], fixture: Fixture, args: argparse.Namespace
) -> dict[str, Any]:
    """Followers of each order on the node after its sender's; frame latencies."""
    count = len(nodes)
    orders = fixture.order_ids
    home = {order_id: i % count for i, order_id in enumerate(orders)}
    per_node: list[list[tuple[str, str]]] = [[] for _ in nodes]
    for i in range(args.followers):
        order_index = i % len(orders)
        node = (home[orders[order_index]] + 1) % count
        per_node[node].append(
            (fixture.customer_tokens[order_index], orders[order_index])
        )

    followers_of: dict[str, list[int]] = {}
    children, offsets, offset = [], [], 0
    for node, subscriptions in zip(nodes, per_node, strict=True):
        for index, (_, order_id) in enumerate(subscriptions):
            followers_of.setdefault(order_id, []).append(offset + index)
        offsets.append(offset)
        offset += len(subscriptions)
        children.append(
            Child.spawn(follow, FollowerPlan(node.ws_url, tuple(subscriptions)))
        )
    try:
        for child in children:
            kind, _ = child.expect()
            assert kind == "ready", "followers report when every one is subscribed"
        progress(f"fan-out on {count} node(s): {args.rate:.0f} commands/s")
        plans = [
            SenderPlan(
                node.url,
                fixture.ops_token,
                tuple(o for o in orders if home[o] == n),
                args.in_flight,  # per node: each node has its own sender
                args.duration,
                rate=args.rate / count,
            )
            for n, node in enumerate(nodes)
        ]
        sending = run_senders(Nodes(nodes), plans)  # type: ignore[arg-type]
        time.sleep(1.0)
        frames = []
        for child, start in zip(children, offsets, strict=True):
            child.tell("stop")
            kind, received, _ = child.expect()
            assert kind == "frames", "followers answer stop with their frames"
            frames += [(start + i, o, s, t) for i, o, s, t in received]
    finally:
        for child in children:
            child.join()
    results = analyse_fanout(sending.sent, frames, followers_of)
    results["server_cpu_percent"] = 100 * sending.server_cpu_s / sending.wall_s
    return results


def measure_throughput(
    nodes: list[ServerProcess], fixture: Fixture, args: argparse.Namespace
) -> dict[str, Any]:
    """Closed loop, `concurrency` commands in flight spread over the nodes."""
    count = len(nodes)
    progress(f"throughput on {count} node(s): {args.concurrency} in flight")
    plans = [
        SenderPlan(
            node.url,
            fixture.ops_token,
            tuple(fixture.order_ids[n::count]),
            max(1, args.concurrency // count),
            args.duration,
        )
        for n, node in enumerate(nodes)
    ]
    sending = run_senders(Nodes(nodes), plans)  # type: ignore[arg-type]
    ok = [s for s in sending.sent if s[5] == 200]
    first_ns = min((s[3] for s in sending.sent), default=0)
    last_ns = max((s[4] for s in ok), default=first_ns + 1)
    return {
        "acknowledged": len(ok),
        "failed": len(sending.sent) - len(ok),
        "commands_per_s": len(ok) / ((last_ns - first_ns) / 1e9),
        "answer_latency": summary_ms([s[4] - s[3] for s in ok]),
        "server_cpu_percent": 100 * sending.server_cpu_s / sending.wall_s,
    }


def run_cluster(count: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Every phase on `count` fresh nodes sharing a fresh database and prefix."""
    secret = secrets.token_urlsafe(48)
    fixture = make_fixture(secret, args.orders)
    name, database_url = create_database()
    prefix = f"ordercast-bench-{uuid.uuid4().hex[:8]}:"
    env = {
        "ORDERCAST_DATABASE_URL": database_url,
        "ORDERCAST_BUS_URL": REDIS_URL,
        "ORDERCAST_BUS_PREFIX": prefix,
    }
    nodes = [
        ServerProcess(tmp / f"n{count}-{n}.db", secret, extra_env=env)
        for n in range(count)
    ]
    try:
        for node in nodes:
            node.start()
        progress(f"preparing {args.orders} orders on {count} node(s)")
        asyncio.run(prepare_orders(nodes[0].url, fixture))
        results = {
            "nodes": count,
            "fanout": measure_fanout(nodes, fixture, args),
            "throughput": measure_throughput(nodes, fixture, args),
            "problems_logged": Nodes(nodes).problems_logged(),
        }
    finally:
        for node in nodes:
            node.stop()
        drop_database(name)
        delete_prefix(prefix)
    return results


# output


def render(results: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    lines = [
        "ordercast cluster benchmark (PostgreSQL + Redis on this machine)",
        f"machine : {machine['cpus']} CPUs, {machine['cpu_model']}, "
        f"{machine['python']}",
        "",
        "nodes  commands/s  answer p99  frame p50 / p99 / max (ms)  missing/dup  CPU%",
    ]
    for r in results:
        t, f = r["throughput"], r["fanout"]
        frame = f["frame_latency"]
        lines.append(
            f"{r['nodes']:>5}  {t['commands_per_s']:>10,.0f}  "
            f"{t['answer_latency']['p99_ms']:>7.1f} ms  "
            f"{frame['p50_ms']:>7.2f} / {frame['p99_ms']:.2f} / {frame['max_ms']:.2f}"
            f"  {f['frames_missing']:>5} / {f['frames_duplicated']:<3}"
            f"  {t['server_cpu_percent']:>4.0f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=96)
    parser.add_argument(
        "--in-flight",
        type=int,
        default=32,
        help="keep-alive connections of each node's fixed-rate sender",
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.followers, args.orders = 200, 200
        args.rate, args.duration, args.concurrency = 300.0, 3.0, 32
    with tempfile.TemporaryDirectory(prefix="ordercast-cluster-bench-") as tmp:
        machine = machine_facts(Path(tmp))
        results = [run_cluster(count, args, Path(tmp)) for count in args.nodes]
    if args.json:
        print(json.dumps({"machine": machine, "results": results}, indent=2))
    else:
        print(render(results, machine))


if __name__ == "__main__":
    main()
