"""Rules and webhooks on AWS, offline: the generated SNS filter policies run
in moto against ordercast's own matcher, and the webhook function posts to a
real receiver from a real (moto) queue, tables and secret.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from ordercast.aws.handlers import webhook as webhook_handler
from ordercast.aws.items import event_item, event_to_json
from ordercast.aws.routing import filter_policy
from ordercast.aws.webhook_stack import render_stack, webhook_stack
from ordercast.aws.webhooks import (
    REPLAY_ATTRIBUTE,
    WebhookFunction,
    WebhookFunctionSettings,
)
from ordercast.lifecycle import Event, OrderState, Status
from ordercast.routing.pattern import parse_pattern
from ordercast.routing.rules import Routing, Rule, event_document
from ordercast.webhooks.declared import load_declared
from tests.aws.harness import REGION, ROOT, Context, sample, template
from tests.webhooks.receiver import Receiver, Request

EXAMPLE = ROOT / "deploy" / "aws" / "webhooks.example.json"
STACK = ROOT / "deploy" / "aws" / "webhooks.example.stack.json"
NOW = datetime.now(UTC).replace(microsecond=0)


# sample events, as the workflow announces them


def log_of(
    order_id: str, restaurant_id: str, *steps: tuple[str, Status, dict[str, Any]]
) -> list[tuple[Event, OrderState]]:
    """An order's events, each with the order once it is applied."""
    parties = {"customerId": "cu-1", "restaurantId": restaurant_id}
    first = ("order.received", Status.RECEIVED, parties)
    found = []
    courier_id = None
    for seq, (name, status, data) in enumerate([first, *steps], start=1):
        at = NOW + timedelta(seconds=seq)
        event = Event(order_id, seq, uuid.uuid4().hex[:26], name, status, at, data)
        courier_id = data.get("courierId", courier_id)
        found.append(
            (
                event,
                OrderState(order_id, status, seq, "cu-1", restaurant_id, courier_id),
            )
        )
    return found


SAMPLES = [
    *log_of(
        "o-1",
        "r-1",
        ("order.accepted", Status.ACCEPTED, {}),
        ("courier.assigned", Status.COURIER_ASSIGNED, {"courierId": "c-7"}),
        ("order.picked_up", Status.PICKED_UP, {}),
        ("delivery.started", Status.IN_DELIVERY, {}),
        ("order.delivered", Status.DELIVERED, {}),
    ),
    *log_of(
        "o-2",
        "r-2",
        ("order.rejected", Status.REJECTED, {"reason": "restaurant_timeout"}),
    ),
    *log_of(
        "o-3",
        "x-9",
        ("order.accepted", Status.ACCEPTED, {}),
        ("dispatch.overdue", Status.ACCEPTED, {}),
        ("order.cancelled", Status.CANCELLED, {"reason": "customer changed mind"}),
    ),
]

PATTERNS: list[dict[str, Any]] = [
    {"event": ["order.accepted"]},
    {"event": [{"prefix": "order."}]},
    {"event": [{"suffix": ".assigned"}, "order.picked_up"]},
    {"status": [{"anything-but": ["DELIVERED", "CANCELLED"]}]},
    {"event": [{"anything-but": {"prefix": "order."}}]},
    {"seq": [{"numeric": [">", 1, "<=", 3]}]},
    {"seq": [2, 4]},
    {"data": {"courierId": [{"exists": True}]}},
    {
        "data": {"reason": [{"exists": False}]},
        "status": ["REJECTED", "CANCELLED", "ACCEPTED"],
    },
    {"status": [{"equals-ignore-case": "delivered"}]},
    {"event": ["order.rejected"], "data": {"reason": ["restaurant_timeout"]}},
    {"orderId": [{"prefix": "o-2"}]},
    {"type": ["order.event"], "status": ["ACCEPTED"]},
    {"type": ["webhook.test"]},
    {"flag": [{"exists": False}]},
    {"order": {"restaurantId": [{"prefix": "r-"}]}},
    {"event": [{"prefix": "order."}], "order": {"courierId": [{"exists": True}]}},
    {"status": ["DELIVERED", True]},
]


def matched(pattern: dict[str, Any]) -> set[str]:
    compiled = parse_pattern(pattern)
    return {
        e.event_id for e, state in SAMPLES if compiled.matches(event_document(e, state))
    }


@dataclass
class Topic:
    sns: Any
    sqs: Any
    arn: str

    def queue_for(self, subscription: dict[str, Any] | None) -> str:
        """A queue subscribed with these subscription properties (None: not at all)."""
        name = f"q-{uuid.uuid4().hex[:10]}"
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        if subscription is None:
            return url
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        attributes = {"RawMessageDelivery": "true"}
        if "FilterPolicy" in subscription:
            attributes["FilterPolicyScope"] = subscription["FilterPolicyScope"]
            attributes["FilterPolicy"] = json.dumps(subscription["FilterPolicy"])
        self.sns.subscribe(
            TopicArn=self.arn, Protocol="sqs", Endpoint=arn, Attributes=attributes
        )
        return url

    def announce(self, event: Event) -> None:
        """Publish as the workflow's Announce step does (ordercast.aws.asl)."""
        self.sns.publish(
            TopicArn=self.arn,
            Message=json.dumps(event_to_json(event)),
            MessageAttributes={
                "orderId": {"DataType": "String", "StringValue": event.order_id},
                "event": {"DataType": "String", "StringValue": event.name},
            },
        )

    def received(self, url: str) -> list[dict[str, Any]]:
        found = []
        while batch := self.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages"):
            found += batch
            for message in batch:
                self.sqs.delete_message(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
                )
        return found


@pytest.fixture
def topic(moto: None, aws_env: None) -> Topic:
    sns = boto3.client("sns", region_name=REGION)
    arn = sns.create_topic(Name=f"events-{uuid.uuid4().hex[:8]}")["TopicArn"]
    return Topic(sns, boto3.client("sqs", region_name=REGION), arn)


def subscription_of(pattern: dict[str, Any]) -> dict[str, Any] | None:
    policy = filter_policy(pattern)
    if policy.never:
        return None
    if policy.policy is None:
        return {}
    return {"FilterPolicyScope": "MessageBody", "FilterPolicy": policy.policy}


# the filter policies


def test_sns_passes_what_the_matcher_matches_and_never_less(topic: Topic) -> None:
    # given a queue per pattern, subscribed with the generated policy
    queues = {i: topic.queue_for(subscription_of(p)) for i, p in enumerate(PATTERNS)}

    # when every sample event is announced
    for event, _ in SAMPLES:
        topic.announce(event)

    # then each queue holds what the matcher matches, exactly where SNS can say
    # the whole pattern, and at least that where it cannot
    exact_ones = 0
    for i, pattern in enumerate(PATTERNS):
        got = {json.loads(m["Body"])["eventId"] for m in topic.received(queues[i])}
        wanted = matched(pattern)
        if filter_policy(pattern).exact or filter_policy(pattern).never:
            exact_ones += 1
            assert got == wanted, pattern
        else:
            assert got >= wanted, pattern
    assert exact_ones >= 14


def test_the_example_stack_filters_as_its_rules_match(topic: Topic) -> None:
    # given the subscriptions of the committed example stack, per target
    stack = webhook_stack(load_declared(EXAMPLE.read_bytes()))
    routing = load_declared(EXAMPLE.read_bytes())
    queues: dict[str, list[str]] = {}
    for resource in stack["Resources"].values():
        if resource["Type"] == "AWS::SNS::Subscription":
            queue = resource["Properties"]["Endpoint"]["Fn::GetAtt"][0]
            queues.setdefault(queue, []).append(topic.queue_for(resource["Properties"]))

    # when the samples are announced
    for event, _ in SAMPLES:
        topic.announce(event)

    # then each target's queue got at least what its rules match
    for index, target in enumerate(routing.targets, start=1):
        queue_name = next(q for q in queues if q.startswith(f"WebhookQueue{index}"))
        got = {
            json.loads(m["Body"])["eventId"]
            for url in queues[queue_name]
            for m in topic.received(url)
        }
        wanted = set().union(
            *(
                matched(r.pattern)
                for r in routing.rules
                if target.target_id in r.target_ids
            )
        )
        assert got >= wanted
        assert wanted, "the samples exercise every target"


def test_the_committed_webhook_stack_is_generated_from_the_example() -> None:
    assert STACK.read_text() == render_stack(load_declared(EXAMPLE.read_bytes()))


def test_the_webhook_stack_grants_each_function_only_its_own_resources() -> None:
    stack = webhook_stack(load_declared(EXAMPLE.read_bytes()))
    functions = {
        name: r["Properties"]
        for name, r in stack["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert len(functions) == 2
    for name, function in functions.items():
        index = name.removeprefix("WebhookFunction")[0]
        statements = function["Policies"][0]["Statement"]
        for statement in statements:
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            assert not any(a.endswith("*") for a in actions)
            assert statement["Resource"] != "*"
        resources = json.dumps(statements)
        assert f"WebhookQueue{index}" in resources
        assert f"WebhookDeadLetters{index}" in resources
        assert f"WebhookSecret{index}" in resources
        other = "2" if index == "1" else "1"
        assert f"WebhookQueue{other}" not in resources
        assert function["Handler"] == "ordercast.aws.handlers.webhook.handler"
    # and the main stack says where the events are
    assert "EventsTableName" in template()["Outputs"]


def test_a_rule_the_function_environment_cannot_hold_is_refused() -> None:
    routing = load_declared(EXAMPLE.read_bytes())
    rules = tuple(
        Rule(
            f"big-{n}",
            {"orderId": [f"o-{n}-{i:04d}" for i in range(250)]},
            ("courier-ops",),
        )
        for n in range(2)
    )
    crowded = Routing(routing.targets, rules)
    with pytest.raises(ValueError, match="environment"):
        webhook_stack(crowded)


# the webhook function


@dataclass
class Deployment:
    """A target's queue, dead-letter queue, cursors and the events table."""

    topic: Topic
    dynamodb: Any
    events_table: str
    cursors_table: str
    queue_url: str
    queue_arn: str
    dead_url: str

    def record(self, event: Event) -> None:
        self.dynamodb.put_item(TableName=self.events_table, Item=event_item(event))

    def lambda_event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The SQS messages as Lambda hands them to the function."""
        shape = sample("sqs")["Records"][0]
        records = []
        for message in messages:
            attributes = {
                name: {
                    "stringValue": value["StringValue"],
                    "dataType": value["DataType"],
                }
                for name, value in message.get("MessageAttributes", {}).items()
            }
            records.append(
                {
                    **shape,
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": {**shape["attributes"], **message["Attributes"]},
                    "messageAttributes": attributes,
                    "eventSourceARN": self.queue_arn,
                }
            )
        return {"Records": records}

    def take(self, url: str | None = None) -> list[dict[str, Any]]:
        return self.topic.sqs.receive_message(
            QueueUrl=url or self.queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            VisibilityTimeout=30,
        ).get("Messages", [])


def create_table(dynamodb: Any, properties: dict[str, Any]) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@pytest.fixture
def deployment(topic: Topic) -> Deployment:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    events = create_table(
        dynamodb, template()["Resources"]["EventsTable"]["Properties"]
    )
    stack = webhook_stack(load_declared(EXAMPLE.read_bytes()))
    cursors = create_table(
        dynamodb, stack["Resources"]["WebhookCursorsTable"]["Properties"]
    )
    dead_url = topic.sqs.create_queue(QueueName=f"dead-{uuid.uuid4().hex[:8]}")[
        "QueueUrl"
    ]
    queue_url = topic.queue_for({})
    arn = topic.sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"]
    )
    return Deployment(
        topic,
        dynamodb,
        events,
        cursors,
        queue_url,
        arn["Attributes"]["QueueArn"],
        dead_url,
    )


SECRET = "generated-by-secrets-manager-0123456789"
PATTERN = {
    "event": [{"anything-but": "order.picked_up"}],
    "order": {"restaurantId": [{"prefix": "r-"}]},
}


def settings_for(
    deployment: Deployment, url: str, **more: Any
) -> WebhookFunctionSettings:
    return WebhookFunctionSettings(
        events_table=deployment.events_table,
        webhook_cursors_table=deployment.cursors_table,
        webhook_target_id="partner",
        webhook_url=url,
        webhook_patterns=json.dumps([PATTERN]),
        webhook_dead_letter_queue_url=deployment.dead_url,
        webhook_retry_base_s=0.01,
        webhook_retry_max_s=0.01,
        **more,
    )


@pytest.fixture
async def receiver(anyio_backend: str) -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def run(
    function: WebhookFunction, deployment: Deployment, messages: list[dict[str, Any]]
) -> list[str]:
    """Hand messages to the function on a thread (the receiver is on this loop)."""
    records = deployment.lambda_event(messages)["Records"]
    report = await asyncio.to_thread(function.handle, records, "fn-1")
    return report.waiting


def order_events(order_id: str, restaurant_id: str = "r-1") -> list[Event]:
    return [
        e
        for e, _ in log_of(
            order_id,
            restaurant_id,
            ("order.accepted", Status.ACCEPTED, {}),
            ("courier.assigned", Status.COURIER_ASSIGNED, {"courierId": "c-1"}),
            ("order.picked_up", Status.PICKED_UP, {}),
        )
    ]


@pytest.mark.anyio
async def test_the_function_posts_an_orders_events_in_order_signed_and_once(
    deployment: Deployment, receiver: Receiver
) -> None:
    # given an order's events, recorded and announced
    function = WebhookFunction(
        deployment.dynamodb,
        deployment.topic.sqs,
        settings_for(deployment, receiver.url),
        SECRET,
    )
    events = order_events("o-1")
    for event in events:
        deployment.record(event)
        deployment.topic.announce(event)
    messages = {json.loads(m["Body"])["seq"]: m for m in deployment.take()}
    assert sorted(messages) == [1, 2, 3, 4]

    # when seq 2 comes before seq 1
    waiting = await run(function, deployment, [messages[2]])
    assert waiting == [messages[2]["MessageId"]]
    assert receiver.requests == []

    # then it waits for seq 1, and seq 3 waits for it in turn
    waiting = await run(function, deployment, [messages[1], messages[3]])
    assert waiting == [messages[3]["MessageId"]]
    assert await run(function, deployment, [messages[2], messages[1]]) == []
    assert await run(function, deployment, [messages[3], messages[4]]) == []
    function.close()

    # and repeats and a pickup (no rule matches it) post nothing
    assert [r.document["seq"] for r in receiver.requests] == [1, 2, 3]
    assert all(r.signed_with(SECRET) for r in receiver.requests)
    assert receiver.requests[2].document == event_document(
        events[2], OrderState("o-1", Status.COURIER_ASSIGNED, 3, "cu-1", "r-1", "c-1")
    )


@pytest.mark.anyio
async def test_a_failing_target_backs_off_then_dead_letters_and_the_order_goes_on(
    deployment: Deployment,
) -> None:
    # given a target that refuses order.received, and two attempts at most
    async def refuses_first(request: Request) -> int:
        return 503 if request.document["seq"] == 1 else 200

    receiver = await Receiver(refuses_first).start()
    settings = settings_for(deployment, receiver.url, webhook_max_attempts=2)
    function = WebhookFunction(
        deployment.dynamodb, deployment.topic.sqs, settings, SECRET
    )
    events = order_events("o-2")[:2]
    for event in events:
        deployment.record(event)
        deployment.topic.announce(event)
    messages = {json.loads(m["Body"])["seq"]: m for m in deployment.take()}

    # when seq 1 fails once: it waits, and seq 2 waits behind it
    assert await run(function, deployment, [messages[1], messages[2]]) == [
        messages[1]["MessageId"],
        messages[2]["MessageId"],
    ]
    # when it fails again: it gives up, to the dead-letter queue, and seq 2 goes
    assert await run(function, deployment, [messages[1], messages[2]]) == []
    assert [(r.document["seq"], r.status) for r in receiver.requests] == [
        (1, 503),
        (1, 503),
        (2, 200),
    ]
    [dead] = deployment.take(deployment.dead_url)
    assert json.loads(dead["Body"])["seq"] == 1
    assert dead["MessageAttributes"][REPLAY_ATTRIBUTE]["StringValue"] == "true"
    assert dead["MessageAttributes"]["ordercast-error"]["StringValue"] == "answered 503"

    # then, replayed from the dead-letter queue, it is posted whatever the cursor says
    async def fixed(request: Request) -> int:
        return 200

    receiver.behave = fixed
    assert await run(function, deployment, [dead]) == []
    assert [r.document["seq"] for r in receiver.delivered()] == [2, 1]
    function.close()
    await receiver.stop()


@pytest.mark.anyio
async def test_an_earlier_event_no_message_announced_is_passed_over_in_time(
    deployment: Deployment, receiver: Receiver
) -> None:
    # given events recorded before the subscription existed (only seq 3 announced)
    settings = settings_for(deployment, receiver.url, webhook_orphan_after_s=0.5)
    function = WebhookFunction(
        deployment.dynamodb, deployment.topic.sqs, settings, SECRET
    )
    events = [replace(e, at=datetime.now(UTC)) for e in order_events("o-3")]
    for event in events:
        deployment.record(event)
    deployment.topic.announce(events[2])
    [message] = deployment.take()

    # then it waits while seq 1 and 2 may still come, and goes once they cannot
    assert await run(function, deployment, [message]) == [message["MessageId"]]
    await asyncio.sleep(0.6)
    assert await run(function, deployment, [message]) == []
    assert [r.document["seq"] for r in receiver.requests] == [3]
    function.close()


@pytest.mark.anyio
async def test_the_handler_reads_its_secret_and_reports_batch_failures(
    deployment: Deployment, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the function's settings as the stack sets them, secret in Secrets Manager
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn = secrets.create_secret(Name=f"s-{uuid.uuid4().hex[:8]}", SecretString=SECRET)[
        "ARN"
    ]
    settings = settings_for(deployment, receiver.url)
    for name, value in settings.model_dump().items():
        if name.startswith(("webhook_", "events_")):
            monkeypatch.setenv(f"ORDERCAST_{name.upper()}", str(value))
    monkeypatch.setenv("ORDERCAST_WEBHOOK_SECRET_ARN", arn)
    webhook_handler.function.cache_clear()
    events = order_events("o-4")[:2]
    for event in events:
        deployment.record(event)
        deployment.topic.announce(event)
    messages = sorted(deployment.take(), key=lambda m: json.loads(m["Body"])["seq"])

    # when Lambda hands it seq 2 alone, then both
    first = deployment.lambda_event(messages[1:])
    answer = await asyncio.to_thread(webhook_handler.handler, first, Context())
    both = deployment.lambda_event(messages)
    again = await asyncio.to_thread(webhook_handler.handler, both, Context())
    webhook_handler.function().close()
    webhook_handler.function.cache_clear()

    # then seq 2 is reported for a retry, then both go, signed with the secret
    assert answer == {
        "batchItemFailures": [{"itemIdentifier": messages[1]["MessageId"]}]
    }
    assert again == {"batchItemFailures": []}
    assert [r.document["seq"] for r in receiver.requests] == [1, 2]
    assert all(r.signed_with(SECRET) for r in receiver.requests)


def test_an_sqs_sample_event_reads_as_an_event() -> None:
    body = json.loads(sample("sqs")["Records"][0]["body"])
    assert body["name"] == "courier.assigned"


@pytest.mark.anyio
async def test_what_sns_let_through_but_the_rules_do_not_match_is_not_posted(
    deployment: Deployment, receiver: Receiver
) -> None:
    # given an order of restaurant x-1: SNS cannot see the restaurant, the rule can
    function = WebhookFunction(
        deployment.dynamodb,
        deployment.topic.sqs,
        settings_for(deployment, receiver.url),
        SECRET,
    )
    events = order_events("o-5", restaurant_id="x-1")[:2]
    for event in events:
        deployment.record(event)
        deployment.topic.announce(event)

    # when the function gets its messages, then it posts nothing and keeps none
    assert await run(function, deployment, deployment.take()) == []
    assert receiver.requests == []
    function.close()
