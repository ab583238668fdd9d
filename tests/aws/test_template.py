"""The SAM template and the Lambda package, read as data.

`make aws-checks` runs `sam validate --lint`, cfn-lint and asl-validator on
the same files; these tests hold what those tools cannot know about.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from typing import Any

import pytest

from ordercast.aws import asl
from tests.aws.harness import ROOT, template

FUNCTION_DIR = ROOT / "deploy" / "aws" / "function"


def _resources(kind: str) -> dict[str, Any]:
    return {
        name: resource["Properties"]
        for name, resource in template()["Resources"].items()
        if resource["Type"] == kind
    }


def _statements() -> list[dict[str, Any]]:
    found = []
    for kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
        for properties in _resources(kind).values():
            for policy in properties.get("Policies", []):
                found.extend(policy["Statement"])
    return found


def test_websocket_api_has_the_protocol_routes_and_a_token_authoriser() -> None:
    routes = {p["RouteKey"]: p for p in _resources("AWS::ApiGatewayV2::Route").values()}
    assert set(routes) == {
        "$connect",
        "$disconnect",
        "$default",
        "subscribe",
        "unsubscribe",
        "ping",
        "location",
    }
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    (authoriser,) = _resources("AWS::ApiGatewayV2::Authorizer").values()
    assert authoriser["AuthorizerType"] == "REQUEST"
    (api,) = _resources("AWS::ApiGatewayV2::Api").values()
    assert api["RouteSelectionExpression"] == "$request.body.action"


def test_http_api_serves_orders_and_commands() -> None:
    events = _resources("AWS::Serverless::Function")["HttpFunction"]["Events"]
    paths = {
        (e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values()
    }
    assert ("POST", "/orders") in paths
    assert ("POST", "/orders/{orderId}/commands") in paths
    assert ("GET", "/orders/{orderId}/events") in paths


def test_tables_are_keyed_as_the_store_reads_them() -> None:
    tables = _resources("AWS::DynamoDB::Table")
    keys = {
        name: [k["AttributeName"] for k in properties["KeySchema"]]
        for name, properties in tables.items()
    }
    assert keys == {
        "OrdersTable": ["orderId"],
        "EventsTable": ["orderId", "seq"],
        "TaskTokensTable": ["orderId"],
        "IdempotencyTable": ["subject", "key"],
        "ConnectionsTable": ["connectionId", "item"],
    }
    connections = tables["ConnectionsTable"]
    (index,) = connections["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "byOrder"
    assert [k["AttributeName"] for k in index["KeySchema"]] == [
        "orderId",
        "connectionId",
    ]
    assert connections["TimeToLiveSpecification"]["AttributeName"] == "expiresAt"


def test_state_machine_is_standard_and_gets_every_placeholder() -> None:
    machine = _resources("AWS::Serverless::StateMachine")["OrderWorkflow"]
    assert machine["Type"] == "STANDARD"
    assert machine["DefinitionUri"] == "statemachine.asl.json"
    assert set(machine["DefinitionSubstitutions"]) == set(asl.SUBSTITUTIONS)
    placeholders = set(re.findall(r"\$\{(\w+)\}", asl.render()))
    assert placeholders == set(asl.SUBSTITUTIONS)


def test_notifier_is_fed_by_the_topic_and_has_a_dead_letter_queue() -> None:
    notifier = _resources("AWS::Serverless::Function")["NotifierFunction"]
    (event,) = notifier["Events"].values()
    assert event["Type"] == "SNS"
    assert event["Properties"]["Topic"] == {"Ref": "OrderEventsTopic"}
    dlq = {"Fn::GetAtt": "NotifierDeadLetterQueue.Arn"}
    assert notifier["DeadLetterQueue"]["TargetArn"] == dlq
    assert event["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == dlq


def test_permissions_are_least_privilege() -> None:
    for statement in _statements():
        actions = statement["Action"]
        actions = actions if isinstance(actions, list) else [actions]
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement
        assert "dynamodb:Scan" not in actions, statement
        if statement["Resource"] == "*":
            # task tokens cannot be scoped, nor can log delivery and traces
            assert actions == ["states:SendTaskSuccess"] or all(
                a.startswith(("logs:", "xray:")) for a in actions
            ), statement


def test_lambda_package_lists_what_the_handlers_import() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(d) for d in project["dependencies"]}
    declared |= {_name(d) for d in project["optional-dependencies"]["aws"]}
    lines = (FUNCTION_DIR / "requirements.txt").read_text().splitlines()
    wanted = {_name(line) for line in lines if line and not line.startswith("#")}
    assert wanted <= declared
    assert (FUNCTION_DIR / "ordercast").resolve() == ROOT / "ordercast"


@pytest.mark.slow
def test_handlers_import_nothing_outside_the_lambda_package() -> None:
    code = (
        "import sys\n"
        "import ordercast.aws.handlers.http, ordercast.aws.handlers.websocket\n"
        "import ordercast.aws.handlers.notifier, ordercast.aws.handlers.webhook\n"
        "heavy = {'fastapi', 'starlette', 'sqlalchemy', 'alembic', 'uvicorn'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"


def _name(requirement: str) -> str:
    return re.split(r"[<>=\[ ;]", requirement.strip(), maxsplit=1)[0].lower()
