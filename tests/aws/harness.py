"""The AWS runtime offline: the template's tables, topic and state machine in
moto, and the Lambda handlers called as plain functions.

Lambda code cannot run inside moto without Docker, so the harness plays API
Gateway and the Lambda service: it builds the events each handler receives
(from the samples in tests/events/), and it passes what the state machine
publishes on the topic to the notifier, as SNS would. The state machine
itself is the committed ASL, run by moto.

moto runs each execution in a thread of its own, so the handlers and the state
machine reach moto's DynamoDB at the same time, as they reach DynamoDB on AWS.
DynamoDB applies each request at one instant (a transaction all or nothing,
serializable with every other write and with `GetItem`); moto does not, and
`atomic_dynamodb_requests` gives that guarantee back.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import boto3
import yaml
from botocore.exceptions import ClientError
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.responses import DynamoHandler

from ordercast.aws.handlers import http, notifier, websocket
from ordercast.aws.runtime import Services, services
from tests.support import SECRET, UNIT_S, token

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "aws" / "template.yaml"
ASL = ROOT / "deploy" / "aws" / "statemachine.asl.json"
EVENTS = ROOT / "tests" / "events"
REGION = "us-east-1"
WS_API = "abcdef1234"
STAGE = "live"


def sample(name: str) -> dict[str, Any]:
    """A sample AWS event from tests/events/, fresh for each use."""
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


@contextlib.contextmanager
def atomic_dynamodb_requests() -> Iterator[None]:
    """Let moto's DynamoDB handle one request at a time, whatever the thread.

    moto's `TransactWriteItems` checks and writes its items one after another
    and undoes a cancelled one by restoring whole tables from copies, with no
    lock: a request from another thread can land between a ConditionCheck and
    the Put it guards, or be wiped out by the restore (moto does not support
    concurrent access, getmoto/moto#7166). DynamoDB applies each request at
    one instant, and the workflow relies on exactly that (docs/aws.md, "The
    workflow"); requests still interleave freely between one another. Drop
    this when moto's DynamoDB applies each request atomically.
    """
    lock = threading.RLock()
    call_action = DynamoHandler.call_action

    def one_at_a_time(handler: DynamoHandler) -> Any:
        with lock:
            return call_action(handler)

    with mock.patch.object(DynamoHandler, "call_action", one_at_a_time):
        yield


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (`!Ref X`) as their long form."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    assert isinstance(node, yaml.MappingNode)
    return {name: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    """deploy/aws/template.yaml as data."""
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506
    return loaded


@dataclass
class Context:
    """The Lambda context object, as much of it as Powertools reads."""

    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "ordercast-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:ordercast-test"
    )

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@contextlib.contextmanager
def failing(client: Any, operation: str) -> Iterator[None]:
    """AWS answers `operation` (e.g. `StartExecution`) of `client` with throttling."""

    def throttle(**_: Any) -> None:
        error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
        raise ClientError(error, operation)  # type: ignore[arg-type]

    event = f"before-call.{client.meta.service_model.service_name}.{operation}"
    client.meta.events.register(event, throttle, unique_id="ordercast-failing")
    try:
        yield
    finally:
        client.meta.events.unregister(event, unique_id="ordercast-failing")


class Stack:
    """One deployment of the template in moto, with its handlers."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.announced: dict[str, list[dict[str, Any]]] = {}
        suffix = uuid.uuid4().hex[:8]
        self.names: dict[str, str] = {}
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        resources = template()["Resources"]
        for logical, resource in resources.items():
            if resource["Type"] == "AWS::DynamoDB::Table":
                self.names[logical] = f"{logical}-{suffix}"
                self._create_table(self.names[logical], resource["Properties"])

        sns = boto3.client("sns", region_name=REGION)
        self.topic_arn = sns.create_topic(Name=f"order-events-{suffix}")["TopicArn"]
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.tap = self.sqs.create_queue(QueueName=f"tap-{suffix}")["QueueUrl"]
        tap_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.tap, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=tap_arn)

        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        definition = ASL.read_text()
        substitutions = resources["OrderWorkflow"]["Properties"][
            "DefinitionSubstitutions"
        ]
        for placeholder, value in substitutions.items():
            target = value.get("Ref")
            physical = (
                self.topic_arn if target == "OrderEventsTopic" else self.names[target]
            )
            definition = definition.replace("${" + placeholder + "}", physical)
        self.state_machine_arn = self.sfn.create_state_machine(
            name=f"order-workflow-{suffix}",
            definition=definition,
            roleArn="arn:aws:iam::123456789012:role/order-workflow",
        )["stateMachineArn"]

        self.settings_env = {
            "ORDERCAST_ORDERS_TABLE": self.names["OrdersTable"],
            "ORDERCAST_EVENTS_TABLE": self.names["EventsTable"],
            "ORDERCAST_TASK_TOKENS_TABLE": self.names["TaskTokensTable"],
            "ORDERCAST_IDEMPOTENCY_TABLE": self.names["IdempotencyTable"],
            "ORDERCAST_CONNECTIONS_TABLE": self.names["ConnectionsTable"],
            "ORDERCAST_STATE_MACHINE_ARN": self.state_machine_arn,
            "ORDERCAST_WEBSOCKET_ENDPOINT": (
                f"https://{WS_API}.execute-api.{REGION}.amazonaws.com/{STAGE}"
            ),
            "ORDERCAST_TOKEN_SECRET": SECRET,
            **env,
        }

    def _create_table(self, name: str, properties: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {
            "TableName": name,
            "BillingMode": properties["BillingMode"],
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "KeySchema": properties["KeySchema"],
        }
        if "GlobalSecondaryIndexes" in properties:
            kwargs["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
        self.dynamodb.create_table(**kwargs)

    @property
    def services(self) -> Services:
        return services()

    def stop(self) -> None:
        """Fail the stored task tokens and stop running executions.

        A worker that misses both (its execution had not stored its token
        yet) waits out its timeout in the background; the session's one moto
        (tests/aws/conftest.py) keeps it off the network meanwhile.
        """
        tokens = self.dynamodb.scan(TableName=self.names["TaskTokensTable"])
        for item in tokens.get("Items", []):
            with contextlib.suppress(ClientError):
                self.sfn.send_task_failure(taskToken=item["taskToken"]["S"])
        pages = self.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=self.state_machine_arn, statusFilter="RUNNING"
        )
        for page in pages:
            for execution in page["executions"]:
                # moto may not have set up a just-started execution yet
                with contextlib.suppress(ClientError, AttributeError):
                    self.sfn.stop_execution(executionArn=execution["executionArn"])

    @contextlib.contextmanager
    def around_token_write(
        self,
        seq: int,
        before: Callable[[], object] | None = None,
        after: Callable[[], object] | None = None,
    ) -> Iterator[None]:
        """Run `before` just before the state machine's request that stores the
        token of the step waiting after event `seq`, and `after` just after it.

        Both run once, in the execution's thread, between whole requests: the
        interleavings a handler and the state machine can have on AWS.
        """
        session = boto3.DEFAULT_SESSION
        assert session is not None, "the stack made its clients: boto3 has a session"
        tokens = self.names["TaskTokensTable"]
        fired: set[str] = set()

        def stores_token(params: dict[str, Any]) -> bool:
            puts = [item["Put"] for item in params["TransactItems"] if "Put" in item]
            return any(
                put["TableName"] == tokens and put["Item"]["seq"] == {"N": str(seq)}
                for put in puts
            )

        def on_request(
            params: dict[str, Any], context: dict[str, Any], **_: Any
        ) -> None:
            if "before" not in fired and stores_token(params):
                fired.add("before")
                context["ordercast_token_write"] = True
                if before is not None:
                    before()

        def on_answer(context: dict[str, Any], **_: Any) -> None:
            if context.get("ordercast_token_write") and "after" not in fired:
                fired.add("after")
                if after is not None:
                    after()

        request = "before-parameter-build.dynamodb.TransactWriteItems"
        answer = "after-call.dynamodb.TransactWriteItems"
        session.events.register(request, on_request, unique_id="ordercast-before")
        session.events.register(answer, on_answer, unique_id="ordercast-after")
        try:
            yield
        finally:
            session.events.unregister(request, unique_id="ordercast-before")
            session.events.unregister(answer, unique_id="ordercast-after")

    # HTTP API

    def http(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        role: str = "ops",
        subject: str = "ops-1",
        headers: dict[str, str] | None = None,
        query: str = "",
    ) -> Reply:
        event = sample("http_api")
        event["rawPath"] = path
        event["rawQueryString"] = query
        event["requestContext"]["http"]["method"] = method
        event["requestContext"]["http"]["path"] = path
        event["requestContext"]["requestId"] = uuid.uuid4().hex
        event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
        event["headers"] = {
            "authorization": f"Bearer {token(role, subject)}",
            "content-type": "application/json",
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        if query:
            pairs = (part.split("=", 1) for part in query.split("&"))
            event["queryStringParameters"] = dict(pairs)
        event.pop("pathParameters", None)
        event["body"] = None if body is None else json.dumps(body)
        answer = http.handler(event, Context())
        text = answer.get("body") or "null"
        if answer.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        return Reply(answer["statusCode"], json.loads(text), answer.get("headers", {}))

    def create(
        self, order_id: str, customer: str = "cu-1", restaurant: str = "r-1"
    ) -> Reply:
        body = {"orderId": order_id, "customerId": customer, "restaurantId": restaurant}
        reply = self.http("POST", "/orders", body)
        assert reply.status == 201, reply.body
        return reply

    def command(
        self,
        order_id: str,
        name: str,
        role: str = "ops",
        subject: str = "ops-1",
        **fields: Any,
    ) -> Reply:
        body = {"command": name, **fields}
        return self.http("POST", f"/orders/{order_id}/commands", body, role, subject)

    # WebSocket API

    def connect(
        self, role: str, subject: str, lang: str | None = None
    ) -> str | dict[str, Any]:
        """Run the authoriser and `$connect`; the connection id, or the denial."""
        connection_id = base64.b64encode(uuid.uuid4().bytes[:10]).decode()
        query = {"token": token(role, subject)}
        if lang:
            query["lang"] = lang
        check = sample("ws_authorizer")
        check["queryStringParameters"] = query
        check["requestContext"]["connectionId"] = connection_id
        policy = websocket.authorize(check, Context())
        if policy["policyDocument"]["Statement"][0]["Effect"] != "Allow":
            return dict(policy)
        event = sample("ws_connect")
        event["queryStringParameters"] = query
        event["requestContext"]["connectionId"] = connection_id
        event["requestContext"]["authorizer"] = {
            "principalId": policy["principalId"],
            **policy["context"],
        }
        assert websocket.connect(event, Context())["statusCode"] == 200
        return connection_id

    def follower(self, role: str, subject: str, lang: str | None = None) -> str:
        connection_id = self.connect(role, subject, lang)
        assert isinstance(connection_id, str), connection_id
        return connection_id

    def send(self, connection_id: str, frame: dict[str, Any] | str) -> None:
        event = sample("ws_message")
        event["requestContext"]["connectionId"] = connection_id
        event["requestContext"]["requestId"] = uuid.uuid4().hex
        event["body"] = frame if isinstance(frame, str) else json.dumps(frame)
        if isinstance(frame, dict) and "action" in frame:
            event["requestContext"]["routeKey"] = frame["action"]
        else:
            event["requestContext"]["routeKey"] = "$default"
        assert websocket.message(event, Context())["statusCode"] == 200

    def disconnect(self, connection_id: str) -> None:
        event = sample("ws_disconnect")
        event["requestContext"]["connectionId"] = connection_id
        websocket.disconnect(event, Context())

    def frames(self, connection_id: str) -> list[dict[str, Any]]:
        """Every frame posted to the connection so far, in order."""
        backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION]
        # moto keys connections by their id as it appears in the URL
        connection = backend.connections.get(quote(connection_id, safe=""))
        text = connection.data.decode() if connection else ""
        decoder, found, at = json.JSONDecoder(), [], 0
        while at < len(text):
            frame, at = decoder.raw_decode(text, at)
            found.append(frame)
        return found

    # SNS to the notifier

    def pump(self) -> int:
        """Hand every message the topic got to the notifier; return how many."""
        delivered = 0
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.tap, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return delivered
            for message in messages:
                notification = json.loads(message["Body"])
                notifier.handler(self.sns_event(notification), Context())
                self.sqs.delete_message(
                    QueueUrl=self.tap, ReceiptHandle=message["ReceiptHandle"]
                )
                announced = json.loads(notification["Message"])
                self.announced.setdefault(announced["orderId"], []).append(announced)
                delivered += 1

    def sns_event(self, notification: dict[str, Any]) -> dict[str, Any]:
        event = sample("sns")
        record = event["Records"][0]["Sns"]
        record["MessageId"] = notification["MessageId"]
        record["TopicArn"] = self.topic_arn
        record["Message"] = notification["Message"]
        return event

    def settle(self, order_id: str, seq: int, timeout_s: float = 40 * UNIT_S) -> None:
        """Pump the topic until the state machine has announced event `seq`.

        The state machine announces asynchronously; this waits for its
        announcement of `seq` and delivers everything announced until then.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.pump()
            seqs = [e["seq"] for e in self.announced.get(order_id, [])]
            if seqs and max(seqs) >= seq:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"seq {seq} of {order_id} was not announced")
            time.sleep(UNIT_S / 4)

    def execution_status(self, order_id: str) -> str:
        from ordercast.aws.workflow import execution_name

        arn = self.state_machine_arn.replace(":stateMachine:", ":execution:")
        answer = self.sfn.describe_execution(
            executionArn=f"{arn}:{execution_name(order_id)}"
        )
        return str(answer["status"])
