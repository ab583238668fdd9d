"""Replaying a real delivery day (Grubhub MDRP instances) against a server.

`grubhub` reads an instance, `plan` simulates it into timed commands (pure,
seeded), `driver` sends them over HTTP. `play` strings the three together for
the command line.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console

from ordercast.replay.driver import (
    DriverOptions,
    ReplaySummary,
    run_replay,
    summary_line,
    summary_table,
    timeouts_hint,
)
from ordercast.replay.grubhub import Instance, InstanceError, load_instance
from ordercast.replay.plan import Plan, PlanOptions, Shares, Step, build_plan

__all__ = [
    "DriverOptions",
    "Instance",
    "InstanceError",
    "Plan",
    "PlanOptions",
    "ReplaySummary",
    "Shares",
    "Step",
    "build_plan",
    "load_instance",
    "play",
    "run_replay",
]


def play(
    instance_dir: Path,
    plan_options: PlanOptions,
    driver_options: DriverOptions,
    console: Console,
) -> ReplaySummary:
    """Load, plan and send an instance, printing a hint first and a table last.

    Raises:
        InstanceError: the instance folder is missing or malformed.
        ValueError: the options select no order.
        ServerUnavailable: no server answers at the driver's URL.
    """
    plan = build_plan(load_instance(instance_dir), plan_options)
    if driver_options.show_progress:
        orders = len(plan.intended)
        console.print(
            f"replaying {orders} orders of {plan.instance} as {plan_options.prefix}-*"
        )
        console.print(timeouts_hint(driver_options.speed), soft_wrap=True)
    summary = asyncio.run(run_replay(plan, driver_options, console))
    console.print(summary_table(plan, summary))
    console.print(summary_line(summary), soft_wrap=True)
    return summary
