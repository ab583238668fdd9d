"""The HTTP API on Lambda: answers, refusals, idempotency, seq under races."""

from __future__ import annotations

from datetime import UTC, datetime

from ordercast.aws.store import DynamoStore
from ordercast.lifecycle import Actor, Command, Request, Role, Timeouts
from ordercast.store.base import Applied, OrderRecord, Submission
from ordercast.wire.messages import message_for
from tests.aws.harness import Stack, failing


def test_create_answers_201_with_the_order_and_its_first_event(stack: Stack) -> None:
    reply = stack.create("o-1")

    assert reply.body["order"]["status"] == "RECEIVED"
    assert reply.body["order"]["seq"] == 1
    (event,) = reply.body["events"]
    assert (event["type"], event["seq"], event["event"]) == (
        "order.event",
        1,
        "order.received",
    )


def test_messages_speak_the_callers_language_as_embedded(stack: Stack) -> None:
    # given a caller who asks for Portuguese by query over a Spanish header
    body = {"orderId": "o-lang", "customerId": "cu-1", "restaurantId": "r-1"}
    weighted = {"Accept-Language": "fr;q=1, es;q=0.8"}

    # when it creates an order, and reads it with only the header
    created = stack.http("POST", "/orders", body, query="lang=pt-BR", headers=weighted)
    read = stack.http("GET", "/orders/o-lang/events", headers=weighted)

    # then the query wins, and the header is read by its weights
    data = {"customerId": "cu-1", "restaurantId": "r-1"}
    assert created.body["events"][0]["message"] == message_for(
        "order.received", data, "pt"
    )
    assert read.body["events"][0]["message"] == message_for(
        "order.received", data, "es"
    )


def test_refusals_carry_the_embedded_codes(stack: Stack) -> None:
    stack.create("o-2")

    wrong_status = stack.command("o-2", "deliver", "ops", "ops-1")
    wrong_role = stack.command("o-2", "accept", "customer", "cu-1")
    unknown = stack.command("o-nope", "accept")
    taken = stack.http(
        "POST", "/orders", {"orderId": "o-2", "customerId": "c", "restaurantId": "r"}
    )
    malformed = stack.http("POST", "/orders/o-2/commands", {"command": "fly"})
    stack.command("o-2", "accept")
    no_courier = stack.command("o-2", "assign_courier")
    anonymous = stack.http(
        "GET", "/orders/o-2", headers={"Authorization": "Bearer nonsense"}
    )

    assert (wrong_status.status, wrong_status.body["code"]) == (
        409,
        "invalid_transition",
    )
    assert wrong_status.body["status"] == "RECEIVED"
    assert (wrong_role.status, wrong_role.body["code"]) == (403, "forbidden")
    assert (unknown.status, unknown.body["code"]) == (404, "order_not_found")
    assert (taken.status, taken.body["code"]) == (409, "order_exists")
    assert (malformed.status, malformed.body["code"]) == (422, "invalid_request")
    assert (no_courier.status, no_courier.body["code"]) == (422, "invalid_command")
    assert (anonymous.status, anonymous.body["code"]) == (401, "unauthorized")


def test_order_and_events_can_be_read_by_whoever_may_follow(stack: Stack) -> None:
    stack.create("o-3", customer="cu-1")
    stack.command("o-3", "accept", "restaurant", "r-1")

    order = stack.http("GET", "/orders/o-3", role="customer", subject="cu-1")
    events = stack.http("GET", "/orders/o-3/events", query="since=1")
    stranger = stack.http("GET", "/orders/o-3", role="customer", subject="cu-2")

    assert (order.status, order.body["status"], order.body["seq"]) == (
        200,
        "ACCEPTED",
        2,
    )
    assert [e["seq"] for e in events.body["events"]] == [2]
    assert stranger.status == 403


def test_repeated_idempotency_key_replays_the_first_answer(stack: Stack) -> None:
    stack.create("o-4")
    key = {"Idempotency-Key": "k-1"}
    body = {"command": "accept"}
    path = "/orders/o-4/commands"

    first = stack.http("POST", path, body, "restaurant", "r-1", headers=key)
    again = stack.http("POST", path, body, "restaurant", "r-1", headers=key)
    other = stack.http(
        "POST", path, {"command": "reject"}, "restaurant", "r-1", headers=key
    )

    assert first.status == again.status == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.body == first.body
    assert (other.status, other.body["code"]) == (422, "idempotency_key_reused")
    assert [e.seq for e in stack.services.store.read_events("o-4")] == [1, 2]


def test_a_refusal_is_replayed_for_its_key(stack: Stack) -> None:
    stack.create("o-5")
    key = {"Idempotency-Key": "k-2"}
    body = {"command": "deliver"}

    first = stack.http("POST", "/orders/o-5/commands", body, headers=key)
    again = stack.http("POST", "/orders/o-5/commands", body, headers=key)

    assert first.status == again.status == 409
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_same_key_from_two_subjects_is_two_requests(stack: Stack) -> None:
    body = {"orderId": "o-6", "customerId": "cu-1", "restaurantId": "r-1"}
    key = {"Idempotency-Key": "k-3"}

    first = stack.http("POST", "/orders", body, "ops", "ops-1", headers=key)
    second = stack.http("POST", "/orders", body, "ops", "ops-2", headers=key)

    assert first.status == 201
    assert (second.status, second.body["code"]) == (409, "order_exists")


class _Interleaved(DynamoStore):
    """A store that lets another writer in between its read and its write."""

    def __init__(self, store: DynamoStore, meanwhile: Submission) -> None:
        super().__init__(store.client, store.tables)
        self.other = DynamoStore(store.client, store.tables)
        self.meanwhile: Submission | None = meanwhile

    def get_order(self, order_id: str) -> OrderRecord | None:
        record = super().get_order(order_id)
        if self.meanwhile is not None:
            submission, self.meanwhile = self.meanwhile, None
            outcome = self.other.apply(submission, datetime.now(UTC), _timeouts())
            assert isinstance(outcome, Applied)
        return record


def _timeouts() -> Timeouts:
    return Timeouts()


def test_a_writer_that_loses_the_race_decides_again_on_the_new_seq(
    stack: Stack,
) -> None:
    # given an accepted order, and a courier assignment that lands between
    # our read of the order and our write
    stack.create("o-7")
    stack.command("o-7", "accept", "restaurant", "r-1")
    ops = Actor(Role.OPS, "ops-1")
    assign = Request(Command.ASSIGN_COURIER, "o-7", ops, courier_id="c-1")
    reassign = Request(Command.ASSIGN_COURIER, "o-7", ops, courier_id="c-2")
    store = _Interleaved(stack.services.store, Submission("o-7", request=assign))

    # when
    outcome = store.apply(
        Submission("o-7", request=reassign), datetime.now(UTC), _timeouts()
    )

    # then both are recorded, one after the other, without a gap or a duplicate
    assert isinstance(outcome, Applied)
    assert [e.seq for e in outcome.events] == [4]
    events = stack.services.store.read_events("o-7")
    assert [(e.seq, e.data.get("courierId")) for e in events][2:] == [
        (3, "c-1"),
        (4, "c-2"),
    ]
    assert stack.services.store.get_order("o-7").state.courier_id == "c-2"


def test_a_command_that_no_longer_fits_after_the_race_is_refused(
    stack: Stack,
) -> None:
    stack.create("o-8")
    restaurant = Actor(Role.RESTAURANT, "r-1")
    reject = Request(Command.REJECT, "o-8", restaurant)
    accept = Request(Command.ACCEPT, "o-8", restaurant)
    store = _Interleaved(stack.services.store, Submission("o-8", request=reject))

    outcome = store.apply(
        Submission("o-8", request=accept), datetime.now(UTC), _timeouts()
    )

    assert not isinstance(outcome, Applied)
    assert outcome.error.code == "invalid_transition"
    assert [e.name for e in stack.services.store.read_events("o-8")] == [
        "order.received",
        "order.rejected",
    ]


def test_a_replayed_create_starts_no_second_execution(stack: Stack) -> None:
    body = {"orderId": "o-9", "customerId": "cu-1", "restaurantId": "r-1"}
    key = {"Idempotency-Key": "k-4"}

    first = stack.http("POST", "/orders", body, headers=key)
    again = stack.http("POST", "/orders", body, headers=key)

    assert first.status == again.status == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    executions = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)
    assert len(executions["executions"]) == 1
    stack.settle("o-9", 1)
    assert [e["seq"] for e in stack.announced["o-9"]] == [1]


def test_a_create_whose_workflow_did_not_start_is_finished_by_its_retry(
    stack: Stack,
) -> None:
    # given a create that is recorded while Step Functions throttles
    body = {"orderId": "o-stall", "customerId": "cu-1", "restaurantId": "r-1"}
    key = {"Idempotency-Key": "k-stall"}
    with failing(stack.services.workflow.client, "StartExecution"):
        first = stack.http("POST", "/orders", body, headers=key)

    # then the answer says it was recorded, and how to finish it
    assert first.status == 503
    assert first.body["code"] == "store_unavailable"
    assert "recorded but its workflow did not move on" in first.body["message"]
    assert stack.http("GET", "/orders/o-stall").body["status"] == "RECEIVED"

    # and the retry with the same key starts the order's execution
    again = stack.http("POST", "/orders", body, headers=key)
    assert again.status == 201
    assert stack.execution_status("o-stall") == "RUNNING"


def test_a_failure_of_ours_or_of_aws_is_an_internal_error(stack: Stack) -> None:
    stack.create("o-read")

    with failing(stack.services.store.client, "Query"):
        answer = stack.http("GET", "/orders/o-read/events")

    assert answer.status == 500
    assert answer.body["type"] == "error"
    assert answer.body["code"] == "internal_error"


def test_a_route_that_does_not_exist_is_a_404_in_the_api_shape(stack: Stack) -> None:
    answer = stack.http("GET", "/nowhere")

    assert answer.status == 404
    assert (answer.body["type"], answer.body["code"]) == ("error", "not_found")
