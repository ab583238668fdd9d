"""Orders, their event logs and idempotency keys in DynamoDB.

The same unit of work as the SQL stores, one submission at a time: the
lifecycle decides (`decide`), then one `TransactWriteItems` writes the events,
the order's new status and seq, and the idempotency record, or none of them.
The order is written on the condition that its seq is still the one the
decision was made on, and each event on the condition that its (order, seq)
is new, so seq runs 1, 2, 3, … without a gap or a duplicate however many
handlers write at once. A handler that loses that race reads the order again
and decides again.

Deadlines are not kept here: on AWS the state machine times them (see
`ordercast.aws.asl`), and records their events with the same conditions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError
from ulid import ULID

from ordercast.aws.items import (
    Item,
    event_from_item,
    event_item,
    order_item,
    record_from_item,
    record_from_json,
)
from ordercast.errors import (
    IdempotencyKeyReused,
    Refusal,
    StoreError,
    refusal_from_wire,
)
from ordercast.lifecycle import Decision, Event, Timeouts, decide
from ordercast.store.base import Applied, OrderRecord, Outcome, Refused, Submission
from ordercast.wire.frames import format_at, order_view

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
"""Times a command is decided again after losing a race for the order's seq."""


@dataclass(frozen=True)
class Tables:
    """Names of the DynamoDB tables of one deployment."""

    orders: str
    events: str
    task_tokens: str
    idempotency_keys: str
    connections: str


@dataclass(frozen=True)
class TaskToken:
    """The token of the workflow step waiting after event `seq` of an order."""

    seq: int
    token: str


class DynamoStore:
    """The store of the AWS runtime, on a boto3 DynamoDB client."""

    def __init__(self, client: DynamoDBClient, tables: Tables) -> None:
        self.client = client
        self.tables = tables

    # commands

    def apply(
        self, submission: Submission, now: datetime, timeouts: Timeouts
    ) -> Outcome:
        """Decide and record one command; see `ordercast.store.base.Store.apply`.

        Raises:
            StoreError: DynamoDB failed, or the order kept changing under us;
                nothing was recorded and the caller may retry.
        """
        assert submission.request is not None, "deadlines are the state machine's"
        now = datetime.fromtimestamp(int(now.timestamp() * 1000) / 1000, tz=UTC)
        try:
            for _ in range(MAX_ATTEMPTS):
                outcome = self._attempt(submission, now, timeouts)
                if outcome is not None:
                    return outcome
        except ClientError as exc:
            raise StoreError(f"command on {submission.order_id} not recorded") from exc
        raise StoreError(
            f"order {submission.order_id} changed {MAX_ATTEMPTS} times while a "
            "command was being recorded"
        )

    def _attempt(
        self, submission: Submission, now: datetime, timeouts: Timeouts
    ) -> Outcome | None:
        """One try; None when a concurrent writer won and the try must be redone."""
        if submission.idempotency_key:
            seen = self._idempotency_record(submission)
            if seen is not None:
                return self._replay(submission, seen)

        assert submission.request is not None
        record = self.get_order(submission.order_id)
        try:
            decision = decide(
                record.state if record else None, submission.request, now, timeouts
            )
        except Refusal as refusal:
            return self._refuse(submission, refusal, now)

        applied = _applied(decision, record, now)
        items = [self._event_put(e, submission) for e in applied.events]
        items.append(self._order_write(applied.order, record))
        answer: dict[str, Any] = {"order": order_view(applied.order)}
        if applied.events:
            answer["seqs"] = [applied.events[0].seq, applied.events[-1].seq]
        if submission.idempotency_key:
            items.append(self._idempotency_put(submission, answer, now))
        return applied if self._transact(items) else None

    def _transact(self, items: list[Item]) -> bool:
        """Write all items or none; False when a condition failed."""
        try:
            # items are built as plain dicts; the stubs want TypedDicts
            self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                logger.debug("! transaction cancelled: %s", exc)
                return False
            raise
        return True

    def _refuse(
        self, submission: Submission, refusal: Refusal, now: datetime
    ) -> Outcome | None:
        if not submission.idempotency_key:
            return Refused(refusal)
        answer = {"error": refusal.to_wire()}
        put = self._idempotency_put(submission, answer, now)["Put"]
        try:
            self.client.put_item(**put)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None  # the same key was recorded meanwhile: replay it
            raise
        return Refused(refusal)

    # idempotency

    def _idempotency_record(self, submission: Submission) -> Item | None:
        found = self.client.get_item(
            TableName=self.tables.idempotency_keys,
            Key=self._idempotency_key(submission),
            ConsistentRead=True,
        )
        return found.get("Item")

    def _idempotency_key(self, submission: Submission) -> Item:
        subject = submission.request.actor.subject if submission.request else ""
        return {
            "subject": {"S": subject},
            "key": {"S": submission.idempotency_key or ""},
        }

    def _idempotency_put(
        self, submission: Submission, answer: dict[str, Any], now: datetime
    ) -> Item:
        item = {
            **self._idempotency_key(submission),
            "fingerprint": {"S": submission.fingerprint},
            "orderId": {"S": submission.order_id},
            "answer": {"S": orjson.dumps(answer).decode()},
            "createdAt": {"S": format_at(now)},
        }
        return {
            "Put": {
                "TableName": self.tables.idempotency_keys,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(#key)",
                "ExpressionAttributeNames": {"#key": "key"},
            }
        }

    def _replay(self, submission: Submission, seen: Item) -> Outcome:
        if seen["fingerprint"]["S"] != submission.fingerprint:
            return Refused(IdempotencyKeyReused(submission.idempotency_key or ""))
        answer = orjson.loads(seen["answer"]["S"])
        if "error" in answer:
            return Refused(refusal_from_wire(answer["error"]), replayed=True)
        record = record_from_json(answer["order"])
        events: tuple[Event, ...] = ()
        if "seqs" in answer:
            first, last = answer["seqs"]
            order_id = record.state.order_id
            events = tuple(self.read_events(order_id, first - 1, last - first + 1))
        return Applied(record, events, replayed=True)

    # queries

    def get_order(self, order_id: str) -> OrderRecord | None:
        """The order, read with strong consistency; None if there is none."""
        found = self.client.get_item(
            TableName=self.tables.orders,
            Key={"orderId": {"S": order_id}},
            ConsistentRead=True,
        )
        item = found.get("Item")
        return None if item is None else record_from_item(item)

    def read_events(
        self, order_id: str, since_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Events of one order with seq > since_seq, in seq order."""
        events: list[Event] = []
        query: dict[str, Any] = {
            "TableName": self.tables.events,
            "KeyConditionExpression": "orderId = :o AND seq > :s",
            "ExpressionAttributeValues": {
                ":o": {"S": order_id},
                ":s": {"N": str(since_seq)},
            },
            "ConsistentRead": True,
        }
        while limit is None or len(events) < limit:
            if limit is not None:
                query["Limit"] = limit - len(events)
            page = self.client.query(**query)
            events.extend(event_from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return events

    def task_token(self, order_id: str) -> TaskToken | None:
        """The token the order's workflow stored last, if any."""
        found = self.client.get_item(
            TableName=self.tables.task_tokens,
            Key={"orderId": {"S": order_id}},
            ConsistentRead=True,
        )
        item = found.get("Item")
        if item is None:
            return None
        return TaskToken(int(item["seq"]["N"]), item["taskToken"]["S"])

    # courier location

    def position(self, order_id: str) -> dict[str, Any] | None:
        """The latest courier position of the order, as the snapshot shows it."""
        found = self.client.get_item(
            TableName=self.tables.orders,
            Key={"orderId": {"S": order_id}},
            ProjectionExpression="#position",
            ExpressionAttributeNames={"#position": "position"},
        ).get("Item")
        if not found or "position" not in found:
            return None
        position: dict[str, Any] = orjson.loads(found["position"]["S"])
        return position

    def save_position(
        self, order_id: str, position: dict[str, Any], interval_s: float
    ) -> bool:
        """Keep the latest position; True if followers are due a frame now.

        Followers get at most one `courier.location` frame per order every
        `interval_s`: the first fix after the interval is sent, the ones
        inside it are kept for the snapshot only.
        """
        now_ms = int(time.time() * 1000)
        self.client.update_item(
            TableName=self.tables.orders,
            Key={"orderId": {"S": order_id}},
            UpdateExpression="SET #position = :p",
            ConditionExpression="attribute_exists(orderId)",
            ExpressionAttributeNames={"#position": "position"},
            ExpressionAttributeValues={":p": {"S": orjson.dumps(position).decode()}},
        )
        try:
            self.client.update_item(
                TableName=self.tables.orders,
                Key={"orderId": {"S": order_id}},
                UpdateExpression="SET locationSentAt = :now",
                ConditionExpression=(
                    "attribute_not_exists(locationSentAt) OR locationSentAt <= :due"
                ),
                ExpressionAttributeValues={
                    ":now": {"N": str(now_ms)},
                    ":due": {"N": str(now_ms - int(interval_s * 1000))},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # items

    def _event_put(self, event: Event, submission: Submission) -> Item:
        actor = submission.request.actor if submission.request else None
        item = event_item(event)
        if actor is not None:
            item["actorRole"] = {"S": actor.role.value}
            item["actorSubject"] = {"S": actor.subject}
        return {
            "Put": {
                "TableName": self.tables.events,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(seq)",
            }
        }

    def _order_write(self, record: OrderRecord, before: OrderRecord | None) -> Item:
        if before is None:
            return {
                "Put": {
                    "TableName": self.tables.orders,
                    "Item": order_item(record),
                    "ConditionExpression": "attribute_not_exists(orderId)",
                }
            }
        state = record.state
        values: Item = {
            ":status": {"S": state.status.value},
            ":seq": {"N": str(state.seq)},
            ":at": {"S": format_at(record.updated_at)},
            ":before": {"N": str(before.state.seq)},
        }
        update = "SET #status = :status, seq = :seq, updatedAt = :at"
        if state.courier_id:
            values[":courier"] = {"S": state.courier_id}
            update += ", courierId = :courier"
        return {
            "Update": {
                "TableName": self.tables.orders,
                "Key": {"orderId": {"S": state.order_id}},
                "UpdateExpression": update,
                "ConditionExpression": "seq = :before",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            }
        }


def _applied(decision: Decision, before: OrderRecord | None, now: datetime) -> Applied:
    order_id = decision.order.order_id
    first_seq = decision.order.seq - len(decision.events) + 1
    events = tuple(
        Event(order_id, first_seq + i, str(ULID()), e.name, e.status, now, e.data)
        for i, e in enumerate(decision.events)
    )
    created_at = before.created_at if before else now
    return Applied(OrderRecord(decision.order, created_at, now), events)
