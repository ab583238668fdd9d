"""The replay plan: a deterministic simulation of a Grubhub delivery day."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ordercast.lifecycle import (
    Actor,
    Command,
    OrderState,
    Request,
    Status,
    Timeouts,
    decide,
    fire_deadline,
)
from ordercast.replay.grubhub import Courier, GrubhubOrder, Instance, load_instance
from ordercast.replay.plan import (
    ACCEPT_DELAY_MINUTES,
    RESTAURANT_DEADLINE_MINUTES,
    Fate,
    Ids,
    Plan,
    PlanOptions,
    Shares,
    Step,
    build_plan,
    travel_minutes,
)
from tests.replay.data import write_instance

EVERY_PATH = Shares(reject=0.1, no_answer=0.1, cancel=0.1, fail=0.1)
NO_DETOURS = Shares(reject=0, no_answer=0, cancel=0, fail=0)
NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def plan(instance: Instance) -> Plan:
    """A whole day of instance 0 with the default shares."""
    return build_plan(instance, PlanOptions(prefix="t", seed=7))


def by_order(plan: Plan) -> dict[str, list[Step]]:
    steps: dict[str, list[Step]] = {}
    for step in plan.steps:
        steps.setdefault(step.order_id, []).append(step)
    return steps


def source_orders(instance: Instance, plan: Plan) -> dict[str, GrubhubOrder]:
    ids = Ids("t", instance.number)
    wanted = set(plan.intended)
    return {ids.order(o): o for o in instance.orders if ids.order(o) in wanted}


def shifts(instance: Instance) -> dict[str, Courier]:
    ids = Ids("t", instance.number)
    return {ids.courier(c): c for c in instance.couriers}


def lifecycle_status(steps: list[Step]) -> Status:
    """Run an order's steps through the server's own lifecycle rules."""
    state: OrderState | None = None
    for step in steps:
        request = Request(
            step.command,
            step.order_id,
            Actor(step.role, step.subject),
            courier_id=step.fields.get("courierId"),
            customer_id=step.fields.get("customerId"),
            restaurant_id=step.fields.get("restaurantId"),
            reason=step.fields.get("reason"),
            details=dict(step.fields.get("details", {})),
        )
        state = decide(state, request, NOW, Timeouts()).order
    assert state is not None
    if state.status is Status.RECEIVED:
        state = fire_deadline(state, "restaurant_answer", NOW, Timeouts()).order
    return state.status


@dataclass
class Job:
    courier_id: str
    order_id: str
    assigned_at: float
    released_at: float | None
    """When the courier is free again; None if it still carries the order."""


def jobs(plan: Plan) -> list[Job]:
    found = []
    for order_id, steps in by_order(plan).items():
        assigns = [s for s in steps if s.command is Command.ASSIGN_COURIER]
        if assigns:
            released = steps[-1].at_minute if steps[-1] is not assigns[-1] else None
            courier_id = assigns[0].fields["courierId"]
            found.append(Job(courier_id, order_id, assigns[0].at_minute, released))
    return sorted(found, key=lambda job: job.assigned_at)


# determinism


def test_same_seed_gives_the_same_plan(instance: Instance, plan: Plan) -> None:
    again = build_plan(instance, PlanOptions(prefix="t", seed=7))
    assert again == plan


def test_another_seed_gives_another_plan(instance: Instance, plan: Plan) -> None:
    other = build_plan(instance, PlanOptions(prefix="t", seed=8))
    assert other.steps != plan.steps


def test_steps_are_sorted_by_minute(plan: Plan) -> None:
    minutes = [step.at_minute for step in plan.steps]
    assert minutes == sorted(minutes)


# the lifecycle


def test_every_order_is_accepted_by_the_lifecycle_and_ends_as_intended(
    plan: Plan,
) -> None:
    for order_id, steps in by_order(plan).items():
        assert steps[0].command is Command.CREATE
        assert lifecycle_status(steps) is plan.intended[order_id], steps


def test_every_terminal_path_appears_with_default_shares(plan: Plan) -> None:
    assert set(Counter(plan.fates.values())) == set(Fate)
    ends = set(plan.intended.values())
    assert {Status.DELIVERED, Status.REJECTED, Status.CANCELLED, Status.FAILED} <= ends


def test_shares_set_how_many_orders_leave_the_happy_path(
    instance: Instance,
) -> None:
    plan = build_plan(instance, PlanOptions(prefix="t", shares=EVERY_PATH))
    counts = Counter(plan.fates.values())
    for fate in (Fate.REJECT, Fate.NO_ANSWER, Fate.CANCEL, Fate.FAIL):
        assert 0.05 < counts[fate] / len(plan.fates) < 0.15, counts


def test_silent_restaurant_gets_no_step_after_create(plan: Plan) -> None:
    steps = by_order(plan)
    silent = [o for o, fate in plan.fates.items() if fate is Fate.NO_ANSWER]
    assert silent
    for order_id in silent:
        assert [s.command for s in steps[order_id]] == [Command.CREATE]
        assert plan.intended[order_id] is Status.REJECTED


def test_restaurant_answers_before_the_server_deadline(plan: Plan) -> None:
    low, high = ACCEPT_DELAY_MINUTES
    assert high < RESTAURANT_DEADLINE_MINUTES
    for steps in by_order(plan).values():
        if len(steps) > 1:
            delay = steps[1].at_minute - steps[0].at_minute
            assert low <= delay <= high
            assert steps[1].command in (Command.ACCEPT, Command.REJECT)


def test_customer_cancels_after_acceptance_and_before_pickup(plan: Plan) -> None:
    for order_id, steps in by_order(plan).items():
        if plan.fates[order_id] is not Fate.CANCEL:
            continue
        commands = [s.command for s in steps]
        assert commands[-1] is Command.CANCEL
        assert Command.PICK_UP not in commands
        assert steps[-1].at_minute > steps[1].at_minute
        assert steps[-1].subject == steps[0].fields["customerId"]


def test_create_records_where_the_order_comes_from(plan: Plan) -> None:
    create = plan.steps[0]
    details = create.fields["details"]
    assert details["source"] == "grubhub-mdrp/0o100t100s1p100"
    assert details["order"] == create.order_id.removeprefix("t-0-")
    assert set(details["pickup"]) == set(details["dropoff"]) == {"lat", "lng"}


# couriers


def test_courier_never_carries_two_orders_at_once(plan: Plan) -> None:
    busy_until: dict[str, float | None] = {}
    for job in jobs(plan):
        if job.courier_id in busy_until:
            free_at = busy_until[job.courier_id]
            assert free_at is not None, f"{job.courier_id} never came back"
            assert job.assigned_at >= free_at
        busy_until[job.courier_id] = job.released_at


def test_courier_is_never_assigned_off_duty(instance: Instance, plan: Plan) -> None:
    on_duty = shifts(instance)
    assigned = jobs(plan)
    assert assigned
    for job in assigned:
        assert on_duty[job.courier_id].is_on_duty(job.assigned_at), job


def test_travel_times_follow_distance_speed_and_service_minutes(
    instance: Instance, plan: Plan
) -> None:
    params = instance.parameters
    speed = params.meters_per_minute
    orders = source_orders(instance, plan)
    position = {cid: shift.at for cid, shift in shifts(instance).items()}
    checked = 0
    for job in jobs(plan):
        steps = {s.command: s for s in plan.steps_of(job.order_id)}
        order = orders[job.order_id]
        restaurant = instance.restaurant_of(order).at
        if Command.PICK_UP not in steps:
            position.pop(job.courier_id, None)  # somewhere on the way
            continue
        if job.courier_id in position:
            arrival = job.assigned_at + travel_minutes(
                position[job.courier_id], restaurant, speed
            )
            ready = max(arrival, order.ready_minute)
            expected = ready + params.pickup_service_minutes
            assert steps[Command.PICK_UP].at_minute == pytest.approx(expected)
            checked += 1
        start = steps[Command.START_DELIVERY].at_minute
        assert start == steps[Command.PICK_UP].at_minute
        ride = travel_minutes(restaurant, order.at, speed)
        if Command.DELIVER in steps:
            expected = start + ride + params.dropoff_service_minutes
            assert steps[Command.DELIVER].at_minute == pytest.approx(expected)
            position[job.courier_id] = order.at
        else:
            assert steps[Command.FAIL].at_minute == pytest.approx(start + ride / 2)
            position.pop(job.courier_id, None)
    assert checked > len(plan.intended) / 2


def test_each_step_is_sent_by_the_right_actor(plan: Plan) -> None:
    for steps in by_order(plan).values():
        create = steps[0]
        for step in steps[1:]:
            if step.command in (Command.ACCEPT, Command.REJECT):
                assert step.subject == create.fields["restaurantId"]
            if step.command is Command.ASSIGN_COURIER:
                assert (step.role.value, step.subject) == ("dispatch", "dispatcher")
            if step.command in (Command.PICK_UP, Command.DELIVER, Command.FAIL):
                assigned = next(s for s in steps if s.fields.get("courierId"))
                assert step.subject == assigned.fields["courierId"]


# small instances


def small_instance(tmp_path: Path, couriers: list[str]) -> Instance:
    # two orders at the same restaurant, 3200 m (10 minutes) from each customer
    folder = write_instance(
        tmp_path / "4tiny",
        orders=["o1\t3200\t0\t10\tr1\t20", "o2\t0\t3200\t12\tr1\t14"],
        couriers=couriers,
        restaurants=["r1\t0\t0"],
    )
    return load_instance(folder)


def commands_of(plan: Plan, order_id: str) -> list[tuple[str, float]]:
    return [(s.command.value, round(s.at_minute, 6)) for s in plan.steps_of(order_id)]


def test_single_courier_takes_the_next_order_after_delivering(
    tmp_path: Path,
) -> None:
    # given one courier on duty at the restaurant
    instance = small_instance(tmp_path, ["c1\t0\t0\t0\t600"])

    # when the day is planned without detours
    plan = build_plan(instance, PlanOptions(prefix="t", shares=NO_DETOURS))

    # then o1 is delivered first: ready at 20, +4 pickup, +10 ride, +4 drop-off
    first = commands_of(plan, "t-4-o1")
    assert first[2:] == [
        ("assign_courier", first[1][1]),
        ("pick_up", 24.0),
        ("start_delivery", 24.0),
        ("deliver", 38.0),
    ]
    # and o2 waits for the courier, who rides 10 minutes back to the restaurant
    assert commands_of(plan, "t-4-o2")[2:] == [
        ("assign_courier", 38.0),
        ("pick_up", 52.0),
        ("start_delivery", 52.0),
        ("deliver", 66.0),
    ]


def test_waiting_order_is_assigned_when_a_shift_starts(tmp_path: Path) -> None:
    instance = small_instance(tmp_path, ["c1\t0\t0\t30\t600", "c2\t0\t0\t31\t600"])
    plan = build_plan(instance, PlanOptions(prefix="t", shares=NO_DETOURS))
    assigns = [s for s in plan.steps if s.command is Command.ASSIGN_COURIER]
    assert [(s.at_minute, s.fields["courierId"]) for s in assigns] == [
        (30.0, "i4-c1"),
        (31.0, "i4-c2"),
    ]


def test_order_waits_accepted_when_no_courier_comes(tmp_path: Path) -> None:
    instance = small_instance(tmp_path, ["c1\t0\t0\t0\t5"])
    plan = build_plan(instance, PlanOptions(prefix="t", shares=NO_DETOURS))
    assert dict(plan.intended) == {
        "t-4-o1": Status.ACCEPTED,
        "t-4-o2": Status.ACCEPTED,
    }
    assert {s.command for s in plan.steps} == {Command.CREATE, Command.ACCEPT}


# options


def test_ids_carry_the_prefix_and_the_instance_number(plan: Plan) -> None:
    creates = [s for s in plan.steps if s.command is Command.CREATE]
    create = next(s for s in creates if s.fields["details"]["order"] == "o17")
    assert create.order_id == "t-0-o17"
    assert create.fields["customerId"] == "i0-cu-o17"
    assert create.fields["restaurantId"].startswith("i0-r")


def test_limit_takes_the_first_orders_by_placement(instance: Instance) -> None:
    plan = build_plan(instance, PlanOptions(prefix="t", limit=30))
    first_30 = {f"t-0-{o.order_id}" for o in instance.orders[:30]}
    assert set(plan.intended) == first_30
    assert plan.start_minute == instance.orders[0].placement_minute


def test_start_minute_skips_orders_placed_before_it(instance: Instance) -> None:
    plan = build_plan(instance, PlanOptions(prefix="t", start_minute=600, limit=20))
    creates = [s for s in plan.steps if s.command is Command.CREATE]
    assert len(creates) == 20
    assert min(s.at_minute for s in creates) >= 600
    assert plan.start_minute == min(s.at_minute for s in creates)


@pytest.mark.parametrize("start_minute", [0.0, float("-inf")])
def test_the_clock_starts_with_the_first_order_not_before(
    instance: Instance, start_minute: float
) -> None:
    options = PlanOptions(prefix="t", start_minute=start_minute, limit=5)

    plan = build_plan(instance, options)

    assert plan.start_minute == instance.orders[0].placement_minute > 0


def test_options_that_select_nothing_are_refused(instance: Instance) -> None:
    with pytest.raises(ValueError, match="no order"):
        build_plan(instance, PlanOptions(prefix="t", start_minute=10_000))


@pytest.mark.parametrize("prefix", ["", "a b", "x" * 33, "é"])
def test_prefix_must_be_a_valid_id(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        PlanOptions(prefix=prefix)


def test_shares_over_one_are_refused() -> None:
    with pytest.raises(ValueError, match="shares"):
        Shares(reject=0.5, no_answer=0.3, cancel=0.3, fail=0)


def test_default_prefixes_differ_between_runs() -> None:
    assert len({PlanOptions().prefix for _ in range(20)}) > 1
