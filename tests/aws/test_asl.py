"""The state machine definition, generated from the lifecycle table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from ordercast.aws import asl
from ordercast.cli import app
from ordercast.lifecycle import DEADLINES, TRANSITIONS, Status
from tests.aws.harness import ASL


def _states() -> dict[str, Any]:
    states: dict[str, Any] = asl.build_definition()["States"]
    return states


def _tasks() -> dict[str, Any]:
    return {name: s for name, s in _states().items() if s["Type"] == "Task"}


def test_committed_definition_is_the_generated_one() -> None:
    assert ASL.read_text() == asl.render(), "run `ordercast export-asl`"


def test_export_asl_check_fails_when_the_file_drifts(tmp_path: Path) -> None:
    # given a copy with one timeout path changed by hand
    drifted = tmp_path / "statemachine.asl.json"
    drifted.write_text(asl.render().replace("States.Timeout", "States.ALL", 1))

    # when / then
    runner = CliRunner()
    check = runner.invoke(app, ["export-asl", "--output", str(drifted), "--check"])
    assert check.exit_code == 1
    assert "out of date" in check.output
    assert runner.invoke(app, ["export-asl", "--output", str(drifted)]).exit_code == 0
    assert drifted.read_text() == asl.render()


def test_export_asl_check_says_when_the_file_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "statemachine.asl.json"

    check = CliRunner().invoke(app, ["export-asl", "--output", str(missing), "--check"])

    assert check.exit_code == 1
    assert "does not exist; run from the repository root" in check.output
    assert not missing.exists()


def test_every_status_a_command_leaves_has_a_waiting_step() -> None:
    sources = {s for row in TRANSITIONS for s in row.sources}
    waits = {
        name: state
        for name, state in _tasks().items()
        if state["Resource"].endswith(".waitForTaskToken")
    }
    for status in sources:
        assert asl.wait_state_name(status) in waits
    for status in Status:
        if status.is_terminal:
            assert asl.wait_state_name(status) not in _states()


def test_waiting_steps_time_out_after_their_deadline_setting() -> None:
    for deadline in DEADLINES:
        wait = _states()[asl.wait_state_name(deadline.status)]
        assert wait["TimeoutSecondsPath"] == f"$.timeouts.{deadline.timeout_setting}"
        on_timeout = [
            c for c in wait["Catch"] if c["ErrorEquals"] == ["States.Timeout"]
        ]
        assert on_timeout[0]["Next"] == f"Deadline {deadline.kind}"


def test_restaurant_timeout_records_a_rejection_with_its_reason() -> None:
    prepare = _states()["Deadline restaurant_answer"]["Parameters"]["next"]
    assert prepare["name"] == "order.rejected"
    assert prepare["status"] == "REJECTED"
    assert prepare["data"] == {"reason": "restaurant_timeout"}


def test_dispatch_timeout_keeps_the_order_accepted_and_fires_once() -> None:
    prepare = _states()["Deadline courier_assignment"]["Parameters"]["next"]
    assert (prepare["name"], prepare["status"]) == ("dispatch.overdue", "ACCEPTED")
    # after it fired, ACCEPTED waits without that deadline
    after = _states()["Await ACCEPTED after courier_assignment"]
    assert after["TimeoutSecondsPath"] == f"$.timeouts.{asl.RECHECK_SETTING}"
    assert all(c["Next"] != "Deadline courier_assignment" for c in after["Catch"])


def test_deadline_writes_are_conditional_on_the_seq_waited_at() -> None:
    for deadline in DEADLINES:
        write = _states()[f"Record {deadline.kind}"]["Parameters"]["TransactItems"]
        event, order = write[0]["Put"], write[1]["Update"]
        assert event["ConditionExpression"] == "attribute_not_exists(seq)"
        assert order["ConditionExpression"] == "seq = :seq AND #status = :from"


def test_every_event_is_announced_on_the_topic_and_no_state_posts_to_sockets() -> None:
    resources = {state["Resource"] for state in _tasks().values()}
    assert not any("execute-api" in r or "apigateway" in r for r in resources)
    announce = _states()["Announce"]
    assert announce["Resource"] == "arn:aws:states:::sns:publish"
    assert announce["Parameters"]["Message.$"] == "$.event"
    # every path that takes on a new event goes through Announce
    takers = [
        name
        for name, state in _states().items()
        if state.get("ResultPath") == "$.event"
        or "event" in state.get("Parameters", {})
        or state.get("Parameters", {}).get("event.$") == "$.next"
    ]
    waits = len(asl.waiting_statuses()) + 1  # and ACCEPTED after its deadline
    assert len(takers) == waits + len(DEADLINES) + 1, takers  # and the resync
    for name in takers:
        assert _states()[name]["Next"] == "Announce", name
