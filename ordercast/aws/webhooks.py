"""Webhook deliveries on AWS: one function per target, reading its SQS queue.

The target's queue is subscribed to the order events topic with the filter
policies of its rules (`ordercast.aws.routing`), a pre-filter. For each
message the function:

1. reads the order's log up to the event from the events table and builds
   the event's document (`event_document`, the order's parties from the log);
2. applies the target's patterns in full with ordercast's matcher: SNS may
   have let through more than the rules match;
3. takes the (target, order) cursor's lease in DynamoDB. An event at or below
   the cursor's `lastSeq` was delivered already (SNS delivers at least once,
   and two rules may send one event twice) and is dropped. An earlier event
   of the order that the rules match and the cursor has not passed must go
   first: the message waits (a short visibility timeout), so a target gets
   an order's events in seq order;
4. posts it, signed by `ordercast.webhooks.signing` exactly as the embedded
   dispatcher signs, and moves the cursor on success. A failure waits
   (exponential backoff with full jitter, as a visibility timeout); after the
   last attempt the message goes to the target's dead-letter queue, marked
   as a replay, and the cursor moves past it so that the order goes on.

A message redriven from the dead-letter queue carries the replay mark and is
posted whatever the cursor says.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from botocore.exceptions import ClientError
from pydantic import Field

from ordercast.aws.items import event_from_item, event_from_json
from ordercast.lifecycle import Event
from ordercast.routing.pattern import Pattern, parse_pattern
from ordercast.routing.rules import event_document, order_after
from ordercast.settings import Settings
from ordercast.webhooks.attempts import (
    RetryPolicy,
    clip,
    is_success,
    request_headers,
    retry_after_s,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger(__name__)

REPLAY_ATTRIBUTE = "ordercast-replay"
"""Message attribute of a dead letter: post it again whatever the cursor says."""
ERROR_ATTRIBUTE = "ordercast-error"

LEASE_S = 90.0
"""How long a cursor's lease holds without being given back (a crashed function)."""

WAIT_S = 2.0
"""Visibility of a message that waits for its order's earlier event."""

ORPHAN_AFTER_S = 300.0
"""An earlier matching event no message has announced after this long never
will (it was recorded before the subscription existed): it is passed over."""

CURSOR_TTL_S = 30 * 24 * 3600
"""Cursors of orders with no event for this long expire."""

MAX_VISIBILITY_S = 12 * 3600
"""SQS: the longest visibility timeout."""


class WebhookFunctionSettings(Settings):
    """The target the function posts to, and its tables and queues.

    The webhook stack sets these on each target's function
    (`ordercast.aws.routing.webhook_stack`).
    """

    events_table: str = "ordercast-events"
    webhook_cursors_table: str = "ordercast-webhook-cursors"
    webhook_target_id: str = ""
    webhook_url: str = ""
    webhook_secret_arn: str = ""
    """Secrets Manager secret holding the signing secret."""
    webhook_secret: str = ""
    """The signing secret itself, when no ARN is given."""
    webhook_patterns: str = "[]"
    """JSON array of the patterns of the target's rules."""
    webhook_dead_letter_queue_url: str = ""
    webhook_orphan_after_s: float = Field(ORPHAN_AFTER_S, gt=0)


Send = Callable[[str, str, bytes, int], tuple[int | None, str | None, float | None]]
"""Posts (event id, secret, body, attempt): (status, error, Retry-After)."""


class HttpSender:
    """A `Send` that posts to one URL with httpx, signed as the embedded runtime."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False
        )

    def __call__(
        self, event_id: str, secret: str, body: bytes, attempt: int
    ) -> tuple[int | None, str | None, float | None]:
        headers = request_headers(secret, event_id, body, int(time.time()), attempt)
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return None, f"no answer within {self.timeout_s:g} s", None
        except httpx.ConnectError as exc:
            return None, clip(f"cannot connect: {exc}"), None
        except httpx.HTTPError as exc:
            return None, clip(f"{type(exc).__name__}: {exc}"), None
        status = response.status_code
        error = None if is_success(status) else f"answered {status}"
        return status, error, retry_after_s(response.headers.get("retry-after"))

    def close(self) -> None:
        self.client.close()


@dataclass
class Cursor:
    """Where a target stands with one order: delivered up to `last_seq`."""

    last_seq: int = 0
    head_seq: int = 0
    """The event being attempted, if attempts failed; 0 when none did."""
    head_attempts: int = 0


@dataclass
class Cursors:
    """(target, order) cursors in DynamoDB, each moved under a lease."""

    client: DynamoDBClient
    table: str
    target_id: str

    def lease(self, order_id: str, holder: str) -> Cursor | None:
        """Take the cursor's lease; None while someone else holds it."""
        now_ms = int(time.time() * 1000)
        try:
            found = self.client.update_item(
                TableName=self.table,
                Key=self._key(order_id),
                UpdateExpression=(
                    "SET leaseHolder = :h, leaseUntil = :u, expiresAt = :t"
                ),
                ConditionExpression=(
                    "attribute_not_exists(leaseHolder) OR leaseUntil < :now "
                    "OR leaseHolder = :h"
                ),
                ExpressionAttributeValues={
                    ":h": {"S": holder},
                    ":u": {"N": str(now_ms + int(LEASE_S * 1000))},
                    ":now": {"N": str(now_ms)},
                    ":t": {"N": str(now_ms // 1000 + CURSOR_TTL_S)},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        item = found["Attributes"]

        def number(name: str) -> int:
            return int(item[name]["N"]) if name in item else 0

        return Cursor(number("lastSeq"), number("headSeq"), number("headAttempts"))

    def release(self, order_id: str, holder: str, cursor: Cursor) -> None:
        """Store the cursor and give the lease back.

        Raises:
            ClientError: the lease was lost (it ran out); the message is then
                handled again, which at worst posts an event twice.
        """
        self.client.update_item(
            TableName=self.table,
            Key=self._key(order_id),
            UpdateExpression=(
                "SET lastSeq = :l, headSeq = :s, headAttempts = :a "
                "REMOVE leaseHolder, leaseUntil"
            ),
            ConditionExpression="leaseHolder = :h",
            ExpressionAttributeValues={
                ":l": {"N": str(cursor.last_seq)},
                ":s": {"N": str(cursor.head_seq)},
                ":a": {"N": str(cursor.head_attempts)},
                ":h": {"S": holder},
            },
        )

    def _key(self, order_id: str) -> dict[str, Any]:
        return {"targetId": {"S": self.target_id}, "orderId": {"S": order_id}}


@dataclass
class Report:
    """What one batch of messages came to."""

    posted: int = 0
    skipped: int = 0
    """Repeats, and events the full patterns do not match."""
    waiting: list[str] = field(default_factory=list)
    """Messages that wait for an earlier event or for a retry."""
    dead: int = 0


class WebhookFunction:
    """Posts one target's routed events in order, signed, at least once."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        sqs: SQSClient,
        settings: WebhookFunctionSettings,
        secret: str,
        send: Send | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.dynamodb = dynamodb
        self.sqs = sqs
        self.settings = settings
        self.secret = secret
        self.patterns: list[Pattern] = [
            parse_pattern(p) for p in orjson.loads(settings.webhook_patterns)
        ]
        self.policy = RetryPolicy(
            settings.webhook_max_attempts,
            settings.webhook_retry_base_s,
            settings.webhook_retry_max_s,
        )
        self._sender = HttpSender(settings.webhook_url, settings.webhook_timeout_s)
        self.send = send or self._sender
        self.draw = draw
        self.cursors = Cursors(
            dynamodb, settings.webhook_cursors_table, settings.webhook_target_id
        )
        self._queue_urls: dict[str, str] = {}

    def close(self) -> None:
        """Close the HTTP connections (a Lambda container keeps them for life)."""
        self._sender.close()

    def handle(self, records: list[dict[str, Any]], holder: str) -> Report:
        """Handle an SQS batch; `Report.waiting` names the messages to retry."""
        report = Report()
        parsed = [(event_from_json(orjson.loads(r["body"])), r) for r in records]
        for event, record in sorted(parsed, key=lambda p: (p[0].order_id, p[0].seq)):
            self._handle_one(event, record, holder, report)
        return report

    # one message

    def _handle_one(
        self, event: Event, record: dict[str, Any], holder: str, report: Report
    ) -> None:
        log = self._log(event.order_id, event.seq)
        if not log or log[-1].seq != event.seq:
            logger.warning("event not in the log yet", extra=_fields(event))
            self._later(record, WAIT_S, report)
            return
        body = orjson.dumps(event_document(event, order_after(log)))
        if not self._wanted(body):
            report.skipped += 1
            return
        if _is_replay(record):
            self._replay(event, body, record, report)
            return
        cursor = self.cursors.lease(event.order_id, holder)
        if cursor is None:
            self._later(record, WAIT_S, report)  # another function has the order
            return
        try:
            self._in_order(event, body, log, cursor, record, report)
        finally:
            self.cursors.release(event.order_id, holder, cursor)

    def _in_order(
        self,
        event: Event,
        body: bytes,
        log: list[Event],
        cursor: Cursor,
        record: dict[str, Any],
        report: Report,
    ) -> None:
        if event.seq <= cursor.last_seq:
            report.skipped += 1
            return
        earlier = self._first_waiting(log, cursor)
        if earlier is not None:
            self._later(record, WAIT_S, report)
            return
        attempt = cursor.head_attempts + 1 if cursor.head_seq == event.seq else 1
        status, error, wait_at_least_s = self.send(
            event.event_id, self.secret, body, attempt
        )
        if status is not None and is_success(status):
            report.posted += 1
            cursor.last_seq, cursor.head_seq, cursor.head_attempts = event.seq, 0, 0
        elif self.policy.gives_up(attempt):
            self._dead_letter(event, record, error, report)
            cursor.last_seq, cursor.head_seq, cursor.head_attempts = event.seq, 0, 0
        else:
            cursor.head_seq, cursor.head_attempts = event.seq, attempt
            delay_s = self.policy.delay_s(attempt, wait_at_least_s, self.draw)
            self._later(record, delay_s, report)

    def _first_waiting(self, log: list[Event], cursor: Cursor) -> Event | None:
        """The earliest event before the last that still has to go first."""
        for index, earlier in enumerate(log[:-1]):
            if earlier.seq <= cursor.last_seq:
                continue
            document = event_document(earlier, order_after(log[: index + 1]))
            if not self._wanted(orjson.dumps(document)):
                continue
            age_s = time.time() - earlier.at.timestamp()
            if (
                earlier.seq == cursor.head_seq
                or age_s < self.settings.webhook_orphan_after_s
            ):
                return earlier
            logger.warning(
                "passed over an event no message announced", extra=_fields(earlier)
            )
        return None

    def _replay(
        self, event: Event, body: bytes, record: dict[str, Any], report: Report
    ) -> None:
        attempt = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        status, error, wait_at_least_s = self.send(
            event.event_id, self.secret, body, attempt
        )
        if status is not None and is_success(status):
            report.posted += 1
        elif self.policy.gives_up(attempt):
            self._dead_letter(event, record, error, report)
        else:
            delay_s = self.policy.delay_s(attempt, wait_at_least_s, self.draw)
            self._later(record, delay_s, report)

    # AWS

    def _wanted(self, body: bytes) -> bool:
        document = orjson.loads(body)
        return any(pattern.matches(document) for pattern in self.patterns)

    def _log(self, order_id: str, seq: int) -> list[Event]:
        """The order's events 1..seq (consistent read)."""
        events: list[Event] = []
        query: dict[str, Any] = {
            "TableName": self.settings.events_table,
            "KeyConditionExpression": "orderId = :o AND seq <= :s",
            "ExpressionAttributeValues": {":o": {"S": order_id}, ":s": {"N": str(seq)}},
            "ConsistentRead": True,
        }
        while True:
            page = self.dynamodb.query(**query)
            events.extend(event_from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return events
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _later(self, record: dict[str, Any], delay_s: float, report: Report) -> None:
        """Have SQS hand the message back after `delay_s`."""
        visibility = max(0, min(MAX_VISIBILITY_S, round(delay_s)))
        self.sqs.change_message_visibility(
            QueueUrl=self._queue_url(record["eventSourceARN"]),
            ReceiptHandle=record["receiptHandle"],
            VisibilityTimeout=visibility,
        )
        report.waiting.append(record["messageId"])

    def _dead_letter(
        self, event: Event, record: dict[str, Any], error: str | None, report: Report
    ) -> None:
        self.sqs.send_message(
            QueueUrl=self.settings.webhook_dead_letter_queue_url,
            MessageBody=record["body"],
            MessageAttributes={
                REPLAY_ATTRIBUTE: {"DataType": "String", "StringValue": "true"},
                ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": error or "?"},
            },
        )
        report.dead += 1
        logger.warning(
            "webhook delivery to %s gave up",
            self.settings.webhook_target_id,
            extra=_fields(event),
        )

    def _queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            *_, account, name = arn.split(":")
            found = self.sqs.get_queue_url(
                QueueName=name, QueueOwnerAWSAccountId=account
            )
            self._queue_urls[arn] = found["QueueUrl"]
        return self._queue_urls[arn]


def _is_replay(record: dict[str, Any]) -> bool:
    attribute = record.get("messageAttributes", {}).get(REPLAY_ATTRIBUTE, {})
    return bool(attribute.get("stringValue") == "true")


def _fields(event: Event) -> dict[str, Any]:
    return {"order_id": event.order_id, "seq": event.seq}
