"""Rules on AWS: SNS subscription filter policies and the webhook stack.

On AWS the order workflow already announces every event on the SNS topic
(`ordercast.aws.asl`), so a rule becomes a subscription of its target's SQS
queue to that topic, with a filter policy on the message body; the target's
webhook function reads the queue and posts (`ordercast.aws.webhooks`).
docs/webhooks.md explains the choice over EventBridge.

SNS filter policies read almost the same language as our patterns, but not
quite: the message is the event as the workflow carries it (`name` where the
document has `event`, no `order`), and SNS caps a policy at five top-level
keys and 150 combinations. So a policy is a pre-filter: each part of a
pattern SNS can say is kept as it is, and each part it cannot is left out,
which only lets more through. The webhook function applies the whole
pattern, with ordercast's own matcher, before it posts. A policy that kept
every part (`exact`) passes exactly the events the pattern matches.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ordercast.routing.pattern import is_number, parse_pattern
from ordercast.routing.rules import Routing, Rule, Target

MESSAGE_FIELDS = {
    "event": "name",
    "orderId": "orderId",
    "seq": "seq",
    "eventId": "eventId",
    "status": "status",
    "at": "at",
}
"""Top-level document fields and their names in the SNS message body."""

CONSTANT_FIELDS = {"type": "order.event"}
"""Document fields with the same value in every event: decided when generating."""

KEEP_FIRST = ("name", "status", "data", "orderId", "seq", "eventId", "at")
"""Which keys a policy keeps when it must drop some, most selective first."""

MAX_KEYS = 5
"""SNS: at most five top-level keys in a filter policy."""

MAX_COMBINATIONS = 150
"""SNS: values multiplied by nesting depth, over every array, at most 150."""

MAX_NUMBER = 1_000_000_000
"""SNS compares numbers strictly between minus and plus this, to 5 decimals."""

MAX_ENVIRONMENT_BYTES = 4096
"""Lambda: every environment variable of a function together."""


@dataclass(frozen=True)
class FilterPolicy:
    """A pattern as an SNS filter policy on the message body."""

    policy: dict[str, Any] | None
    """The policy; None when the pattern needs none (it lets everything in)."""
    exact: bool
    """Whether SNS passes exactly what the pattern matches, no more."""
    never: bool = False
    """The pattern matches no event at all (it asks for a field events lack)."""


def filter_policy(pattern: dict[str, Any]) -> FilterPolicy:
    """The SNS filter policy closest to `pattern` that lets no match through.

    Raises:
        InvalidPattern: the pattern is not valid.
    """
    parse_pattern(pattern)
    leaves: list[tuple[tuple[str, ...], list[Any]]] = []
    exact = True
    for key, value in pattern.items():
        if key in CONSTANT_FIELDS:
            if not parse_pattern({key: value}).matches(CONSTANT_FIELDS):
                return FilterPolicy(None, False, never=True)
        elif key in MESSAGE_FIELDS and isinstance(value, list):
            leaves.append(((MESSAGE_FIELDS[key],), value))
        elif key == "data" and isinstance(value, dict):
            found, complete = _data_leaves(value)
            leaves += found
            exact = exact and complete
        elif key in ("order", "data") or key in MESSAGE_FIELDS:
            exact = False  # not in the message, or deeper than SNS can see
        elif not parse_pattern({key: value}).matches({}):
            return FilterPolicy(None, False, never=True)  # a field no event has
    sayable = [(path, m) for path, m in leaves if _can_say(m)]
    kept = _within_limits(sayable)
    exact = exact and len(kept) == len(leaves)
    if not kept:
        return FilterPolicy(None, exact)
    return FilterPolicy(_nest(kept), exact)


def _data_leaves(
    value: dict[str, Any],
) -> tuple[list[tuple[tuple[str, ...], list[Any]]], bool]:
    """Fields of `data` one level down; deeper ones are left to the function
    (`data.details` holds whatever the platform sent, arrays of objects
    included, where SNS and our matcher could disagree)."""
    found: list[tuple[tuple[str, ...], list[Any]]] = []
    complete = True
    for key, matchers in value.items():
        if isinstance(matchers, list):
            found.append((("data", key), matchers))
        else:
            complete = False
    return found, complete


def _can_say(matchers: list[Any]) -> bool:
    """Whether SNS reads every matcher of a field as our matcher does."""
    return all(_sayable(m) for m in matchers)


def _sayable(matcher: Any) -> bool:
    if isinstance(matcher, str):
        return True
    if isinstance(matcher, bool) or matcher is None:
        return False  # SNS does not match booleans or null in a body
    if is_number(matcher):
        return _small(matcher)
    ((operator, argument),) = matcher.items()
    if operator in ("prefix", "suffix", "exists"):
        return True
    if operator == "equals-ignore-case":
        return bool(argument) and argument == argument.lower()
    if operator == "numeric":
        return all(_small(n) for n in argument[1::2])
    if operator == "anything-but":
        values = argument if isinstance(argument, list) else [argument]
        if isinstance(argument, dict):
            return True
        return all(isinstance(v, str) for v in values) or all(
            is_number(v) and _small(v) for v in values
        )
    return False


def _small(number: float) -> bool:
    return abs(number) < MAX_NUMBER and math.isclose(number, round(number, 5))


def _within_limits(
    leaves: list[tuple[tuple[str, ...], list[Any]]],
) -> list[tuple[tuple[str, ...], list[Any]]]:
    """Leaves the most selective keys within SNS's limits, dropping the rest."""
    ranked = sorted(
        leaves, key=lambda leaf: (KEEP_FIRST.index(leaf[0][0]), len(leaf[1]))
    )
    kept: list[tuple[tuple[str, ...], list[Any]]] = []
    for leaf in ranked:
        trial = [*kept, leaf]
        if len({path[0] for path, _ in trial}) > MAX_KEYS:
            continue
        if _combinations(trial) > MAX_COMBINATIONS:
            continue
        kept = trial
    return kept


def _combinations(leaves: Iterable[tuple[tuple[str, ...], list[Any]]]) -> int:
    total = 1
    for path, matchers in leaves:
        total *= len(matchers) * len(path)
    return total


def _nest(leaves: list[tuple[tuple[str, ...], list[Any]]]) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    for path, matchers in leaves:
        node = policy
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = matchers
    return policy


# the webhook stack

FUNCTION_HANDLER = "ordercast.aws.handlers.webhook.handler"
QUEUE_VISIBILITY_S = 360
"""Six times the function's timeout, as AWS advises for SQS event sources."""
FUNCTION_TIMEOUT_S = 60
MAX_RECEIVES = 1000
"""Receives before SQS itself gives up on a message: a safety net only. The
function counts attempts and dead-letters a delivery itself."""


def logical_id(prefix: str, target_id: str, index: int) -> str:
    """A CloudFormation logical id for a target's resource, stable per id."""
    cleaned = "".join(
        part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", target_id)
    )
    return f"{prefix}{index}{cleaned}"[:200]


def webhook_stack(routing: Routing, max_attempts: int = 8) -> dict[str, Any]:
    """The SAM template of the webhook stack for these targets and rules.

    Raises:
        ValueError: a target's rules do not fit in its function's environment.
    """
    resources: dict[str, Any] = {"WebhookCursorsTable": _cursors_table()}
    outputs: dict[str, Any] = {}
    rules = [rule for rule in routing.rules if rule.enabled]
    for index, target in enumerate(routing.targets, start=1):
        mine = [rule for rule in rules if target.target_id in rule.target_ids]
        resources |= _target_resources(target, index, mine, max_attempts)
        outputs[logical_id("Secret", target.target_id, index)] = {
            "Description": f"signing secret of {target.target_id}",
            "Value": {"Ref": logical_id("WebhookSecret", target.target_id, index)},
        }
        outputs[logical_id("DeadLetters", target.target_id, index)] = {
            "Description": f"dead letters of {target.target_id}",
            "Value": {"Ref": logical_id("WebhookDeadLetters", target.target_id, index)},
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": (
            "ordercast webhooks, generated by `ordercast webhooks export-aws` from "
            "the rules and targets; do not edit by hand (docs/webhooks.md)"
        ),
        "Parameters": _parameters(),
        "Globals": _globals(),
        "Resources": resources,
        "Outputs": outputs,
    }


def render_stack(routing: Routing, max_attempts: int = 8) -> str:
    """The stack as the JSON text written to a file."""
    stack = webhook_stack(routing, max_attempts)
    return orjson.dumps(stack, option=orjson.OPT_INDENT_2).decode() + "\n"


def _parameters() -> dict[str, Any]:
    return {
        "OrderEventsTopicArn": {
            "Type": "String",
            "Description": "The main stack's OrderEventsTopicArn output.",
        },
        "EventsTableName": {
            "Type": "String",
            "Description": "The main stack's EventsTableName output.",
        },
        "LogLevel": {
            "Type": "String",
            "Default": "INFO",
            "AllowedValues": ["DEBUG", "INFO", "WARNING", "ERROR"],
        },
        "LogRetentionDays": {
            "Type": "Number",
            "Default": 30,
            "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 180, 365],
        },
    }


def _globals() -> dict[str, Any]:
    return {
        "Function": {
            "Runtime": "python3.11",
            "Architectures": ["arm64"],
            "CodeUri": "function/",
            "MemorySize": 256,
            "Timeout": FUNCTION_TIMEOUT_S,
            "Tracing": "Active",
            "Environment": {
                "Variables": {
                    "POWERTOOLS_SERVICE_NAME": "ordercast-webhooks",
                    "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
                    "ORDERCAST_EVENTS_TABLE": {"Ref": "EventsTableName"},
                    "ORDERCAST_WEBHOOK_CURSORS_TABLE": {"Ref": "WebhookCursorsTable"},
                }
            },
        }
    }


def _cursors_table() -> dict[str, Any]:
    return {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "targetId", "AttributeType": "S"},
                {"AttributeName": "orderId", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "targetId", "KeyType": "HASH"},
                {"AttributeName": "orderId", "KeyType": "RANGE"},
            ],
            "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    }


def _target_resources(
    target: Target, index: int, rules: list[Rule], max_attempts: int
) -> dict[str, Any]:
    def name(prefix: str) -> str:
        return logical_id(prefix, target.target_id, index)

    queue, dead, secret = (
        name("WebhookQueue"),
        name("WebhookDeadLetters"),
        name("WebhookSecret"),
    )
    function, logs = name("WebhookFunction"), name("WebhookFunctionLogs")
    patterns = orjson.dumps([rule.pattern for rule in rules]).decode()
    if len(patterns) + len(target.url) > MAX_ENVIRONMENT_BYTES - 512:
        raise ValueError(
            f"the rules of target {target.target_id!r} take {len(patterns)} bytes: "
            f"more than a Lambda function's environment holds ({MAX_ENVIRONMENT_BYTES})"
        )
    resources: dict[str, Any] = {
        queue: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "VisibilityTimeout": QUEUE_VISIBILITY_S,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [dead, "Arn"]},
                    "maxReceiveCount": MAX_RECEIVES,
                },
            },
        },
        dead: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "MessageRetentionPeriod": 1209600,
                "SqsManagedSseEnabled": True,
            },
        },
        name("WebhookQueuePolicy"): _queue_policy(queue),
        secret: {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "Description": f"signing secret of webhook target {target.target_id}",
                "GenerateSecretString": {
                    "PasswordLength": 48,
                    "ExcludePunctuation": True,
                },
            },
        },
        function: _function(target, queue, dead, secret, logs, patterns, max_attempts),
        logs: {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"RetentionInDays": {"Ref": "LogRetentionDays"}},
        },
    }
    for rule_index, rule in enumerate(rules, start=1):
        policy = filter_policy(rule.pattern)
        if policy.never:
            continue
        properties: dict[str, Any] = {
            "Protocol": "sqs",
            "TopicArn": {"Ref": "OrderEventsTopicArn"},
            "Endpoint": {"Fn::GetAtt": [queue, "Arn"]},
            "RawMessageDelivery": True,
        }
        if policy.policy is not None:
            properties["FilterPolicyScope"] = "MessageBody"
            properties["FilterPolicy"] = policy.policy
        resources[f"{name('WebhookSubscription')}Rule{rule_index}"] = {
            "Type": "AWS::SNS::Subscription",
            "Properties": properties,
        }
    return resources


def _queue_policy(queue: str) -> dict[str, Any]:
    return {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": queue}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TopicDelivers",
                        "Effect": "Allow",
                        "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": {"Fn::GetAtt": [queue, "Arn"]},
                        "Condition": {
                            "ArnEquals": {
                                "aws:SourceArn": {"Ref": "OrderEventsTopicArn"}
                            }
                        },
                    }
                ],
            },
        },
    }


def _function(
    target: Target,
    queue: str,
    dead: str,
    secret: str,
    logs: str,
    patterns: str,
    max_attempts: int,
) -> dict[str, Any]:
    events_table = {
        "Fn::Sub": (
            "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}"
            ":table/${EventsTableName}"
        )
    }
    environment = {
        "ORDERCAST_WEBHOOK_TARGET_ID": target.target_id,
        "ORDERCAST_WEBHOOK_URL": target.url,
        "ORDERCAST_WEBHOOK_SECRET_ARN": {"Ref": secret},
        "ORDERCAST_WEBHOOK_PATTERNS": patterns,
        "ORDERCAST_WEBHOOK_DEAD_LETTER_QUEUE_URL": {"Ref": dead},
        "ORDERCAST_WEBHOOK_MAX_ATTEMPTS": str(target.max_attempts or max_attempts),
    }
    if target.timeout_s is not None:
        environment["ORDERCAST_WEBHOOK_TIMEOUT_S"] = str(target.timeout_s)
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "Description": f"posts routed events to webhook target {target.target_id}",
            "Handler": FUNCTION_HANDLER,
            "LoggingConfig": {"LogGroup": {"Ref": logs}},
            "Environment": {"Variables": environment},
            "Events": {
                "Deliveries": {
                    "Type": "SQS",
                    "Properties": {
                        "Queue": {"Fn::GetAtt": [queue, "Arn"]},
                        "BatchSize": 10,
                        "FunctionResponseTypes": ["ReportBatchItemFailures"],
                        "ScalingConfig": {"MaximumConcurrency": 5},
                    },
                }
            },
            "Policies": [
                {
                    "Statement": [
                        {
                            "Sid": "EventLog",
                            "Effect": "Allow",
                            "Action": "dynamodb:Query",
                            "Resource": events_table,
                        },
                        {
                            "Sid": "Cursors",
                            "Effect": "Allow",
                            "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
                            "Resource": {"Fn::GetAtt": ["WebhookCursorsTable", "Arn"]},
                        },
                        {
                            "Sid": "Backoff",
                            "Effect": "Allow",
                            "Action": "sqs:ChangeMessageVisibility",
                            "Resource": {"Fn::GetAtt": [queue, "Arn"]},
                        },
                        {
                            "Sid": "DeadLetters",
                            "Effect": "Allow",
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": [dead, "Arn"]},
                        },
                        {
                            "Sid": "SigningSecret",
                            "Effect": "Allow",
                            "Action": "secretsmanager:GetSecretValue",
                            "Resource": {"Ref": secret},
                        },
                    ]
                }
            ],
        },
    }
