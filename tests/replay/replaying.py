"""Replaying a plan against a test server: shared by the replay tests."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from ordercast.replay.driver import DriverOptions, ReplaySummary, run_replay
from ordercast.replay.grubhub import Instance
from ordercast.replay.plan import Plan, PlanOptions, Shares, build_plan
from tests.support import SECRET, UNIT_S, Server, order_of, unique_id

SPEED = 3000.0
"""50 simulated minutes per wall second."""

BUSY_MINUTE = 600
"""Instance 0 is busy from here: 30 orders are placed and done within an hour
(about 1.2 s at SPEED)."""

EVERY_PATH = Shares(reject=0.1, no_answer=0.1, cancel=0.1, fail=0.1)
SERVER_ENV = {
    # far above the longest restaurant answer (3 simulated minutes = 0.06 s),
    # even when a loaded machine delays the replay's requests, and short
    # enough that silent restaurants are rejected within the test's waits
    "ORDERCAST_RESTAURANT_TIMEOUT_S": str(15 * UNIT_S),
    "ORDERCAST_DISPATCH_TIMEOUT_S": "600",
}


def replay(
    plan: Plan, server: Server, acks: Path | None = None, **options: Any
) -> ReplaySummary:
    """Replay `plan` to the end; returns the driver's summary."""
    return asyncio.run(replay_async(plan, server, acks, **options))


async def replay_async(
    plan: Plan, server: Server, acks: Path | None = None, **options: Any
) -> ReplaySummary:
    settings: dict[str, Any] = {"secret": SECRET, "speed": SPEED, **options}
    driver_options = DriverOptions(
        server.url, acks=acks, show_progress=False, **settings
    )
    console = Console(file=io.StringIO())
    return await run_replay(plan, driver_options, console)


def plan_of(instance: Instance, limit: int, shares: Shares = EVERY_PATH) -> Plan:
    options = PlanOptions(
        prefix=unique_id("r"),
        seed=7,
        limit=limit,
        start_minute=BUSY_MINUTE,
        shares=shares,
    )
    return build_plan(instance, options)


def read_acks(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def statuses_reached(client: httpx.Client, plan: Plan) -> bool:
    now = {order_id: order_of(client, order_id)["status"] for order_id in plan.intended}
    return now == {order_id: s.value for order_id, s in plan.intended.items()}
