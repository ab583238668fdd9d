"""Connections and subscriptions in one DynamoDB table, found by order.

Items, keyed by (connectionId, item):

- `connection`: who holds it (role, subject), its language, when it opened.
- `sub#<orderId>`: one subscription, with `orderId` for the `byOrder` index
  and `lastSeq`, the seq of the last event passed to the connection.

Every item expires (`expiresAt`, the table's TTL attribute) a little after
API Gateway's 2-hour connection limit, so a connection whose `$disconnect`
never ran does not linger.

A subscription is also a lease: whoever posts events to it (the subscribe
handler catching up, or a notifier) first takes the lease, posts the events
after `lastSeq` in seq order, then moves `lastSeq` and gives the lease back
in one conditional write. Two notifiers that hear two events of one order at
once therefore post them one after the other, in seq order, each once.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ordercast.lifecycle import Actor, Role

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CONNECTION_LIMIT_S = 2 * 60 * 60
"""API Gateway closes every WebSocket connection after 2 hours."""

EXPIRY_MARGIN_S = 10 * 60
"""Items outlive the connection limit by this much before TTL removes them."""

LEASE_S = 10.0
"""How long a lease holds without being given back (a crashed holder)."""

INDEX = "byOrder"
"""The global secondary index: partition key orderId, sort key connectionId."""

_CONNECTION = "connection"
_SUBSCRIPTION = "sub#"


@dataclass(frozen=True)
class ConnectionInfo:
    """An open connection as stored at `$connect`."""

    connection_id: str
    actor: Actor
    lang: str
    connected_at: datetime


@dataclass(frozen=True)
class Follower:
    """One subscription of an order, as the `byOrder` index shows it."""

    connection_id: str
    order_id: str
    lang: str
    connected_at: datetime


class Connections:
    """The connections table of one deployment."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    # connections

    def open(self, info: ConnectionInfo) -> None:
        """Record a connection accepted at `$connect`."""
        item = {
            **_key(info.connection_id, _CONNECTION),
            "role": {"S": info.actor.role.value},
            "subject": {"S": info.actor.subject},
            **_common(info),
        }
        self.client.put_item(TableName=self.table, Item=item)

    def get(self, connection_id: str) -> ConnectionInfo | None:
        """The connection, or None if it closed (or never opened)."""
        found = self.client.get_item(
            TableName=self.table,
            Key=_key(connection_id, _CONNECTION),
            ConsistentRead=True,
        ).get("Item")
        if found is None:
            return None
        actor = Actor(Role(found["role"]["S"]), found["subject"]["S"])
        return ConnectionInfo(
            connection_id, actor, found["lang"]["S"], _from_ms(found["connectedAt"])
        )

    def close(self, connection_id: str) -> int:
        """Forget the connection and its subscriptions; return how many items."""
        keys = self._items_of(connection_id)
        for start in range(0, len(keys), 25):
            batch = keys[start : start + 25]
            requests = [{"DeleteRequest": {"Key": key}} for key in batch]
            pending: Any = {self.table: requests}
            for attempt in itertools.count():
                answer = self.client.batch_write_item(RequestItems=pending)
                pending = answer.get("UnprocessedItems")
                if not pending:
                    break
                # DynamoDB asks for exponential backoff before the rest
                time.sleep(min(1.0, 0.05 * 2**attempt))
        return len(keys)

    def _items_of(self, connection_id: str) -> list[dict[str, Any]]:
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "connectionId = :c",
            "ExpressionAttributeValues": {":c": {"S": connection_id}},
            "ProjectionExpression": "connectionId, #item",
            "ExpressionAttributeNames": {"#item": "item"},
            "ConsistentRead": True,
        }
        keys: list[dict[str, Any]] = []
        while True:
            page = self.client.query(**query)
            keys.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return keys
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # subscriptions

    def subscribe(
        self, info: ConnectionInfo, order_id: str, holder: str | None
    ) -> None:
        """Create (or replace) a subscription, leased to `holder` until released.

        Without a holder the subscription takes live events only, with no seq
        kept (the all-orders subscription of ops and dispatch).
        """
        item = {
            **_key(info.connection_id, _SUBSCRIPTION + order_id),
            "orderId": {"S": order_id},
            **_common(info),
        }
        if holder is not None:
            item["lastSeq"] = {"N": "0"}
            item["leaseHolder"] = {"S": holder}
            item["leaseUntil"] = {"N": str(_now_ms() + int(LEASE_S * 1000))}
        self.client.put_item(TableName=self.table, Item=item)

    def unsubscribe(self, connection_id: str, order_id: str) -> None:
        """Forget one subscription; nothing happens if there is none."""
        self.client.delete_item(
            TableName=self.table, Key=_key(connection_id, _SUBSCRIPTION + order_id)
        )

    def followers(self, order_id: str) -> list[Follower]:
        """Subscriptions of `order_id`, through the index (a Query, never a Scan)."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": INDEX,
            "KeyConditionExpression": "orderId = :o",
            "ExpressionAttributeValues": {":o": {"S": order_id}},
        }
        found: list[Follower] = []
        while True:
            page = self.client.query(**query)
            found.extend(_follower(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def is_indexed(self, order_id: str, connection_id: str) -> bool:
        """Whether the index already shows this subscription (it lags the table)."""
        page = self.client.query(
            TableName=self.table,
            IndexName=INDEX,
            KeyConditionExpression="orderId = :o AND connectionId = :c",
            ExpressionAttributeValues={
                ":o": {"S": order_id},
                ":c": {"S": connection_id},
            },
        )
        return bool(page.get("Items"))

    # leases

    def acquire(
        self, connection_id: str, order_id: str, holder: str, wait_s: float
    ) -> int | None:
        """Take the subscription's lease; return its `lastSeq`.

        Waits up to `wait_s` while another holder has it (a lease older than
        LEASE_S is taken over). Returns None if the subscription is gone, or
        still held after `wait_s`.
        """
        deadline = time.monotonic() + wait_s
        while True:
            now_ms = _now_ms()
            try:
                answer = self.client.update_item(
                    TableName=self.table,
                    Key=_key(connection_id, _SUBSCRIPTION + order_id),
                    UpdateExpression="SET leaseHolder = :h, leaseUntil = :u",
                    ConditionExpression=(
                        "attribute_exists(lastSeq) AND "
                        "(attribute_not_exists(leaseHolder) OR leaseUntil < :now)"
                    ),
                    ExpressionAttributeValues={
                        ":h": {"S": holder},
                        ":u": {"N": str(now_ms + int(LEASE_S * 1000))},
                        ":now": {"N": str(now_ms)},
                    },
                    ReturnValues="ALL_NEW",
                )
                return int(answer["Attributes"]["lastSeq"]["N"])
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
            if not self._exists(connection_id, order_id):
                return None
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def release(
        self, connection_id: str, order_id: str, holder: str, last_seq: int
    ) -> bool:
        """Record `last_seq` and give the lease back; False if it was lost."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(connection_id, _SUBSCRIPTION + order_id),
                UpdateExpression="SET lastSeq = :s REMOVE leaseHolder, leaseUntil",
                ConditionExpression="leaseHolder = :h",
                ExpressionAttributeValues={
                    ":s": {"N": str(last_seq)},
                    ":h": {"S": holder},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _exists(self, connection_id: str, order_id: str) -> bool:
        found = self.client.get_item(
            TableName=self.table,
            Key=_key(connection_id, _SUBSCRIPTION + order_id),
            ConsistentRead=True,
            ProjectionExpression="connectionId",
        )
        return "Item" in found


def _key(connection_id: str, item: str) -> dict[str, Any]:
    return {"connectionId": {"S": connection_id}, "item": {"S": item}}


def _common(info: ConnectionInfo) -> dict[str, Any]:
    connected_ms = int(info.connected_at.timestamp() * 1000)
    expires_s = connected_ms // 1000 + CONNECTION_LIMIT_S + EXPIRY_MARGIN_S
    return {
        "lang": {"S": info.lang},
        "connectedAt": {"N": str(connected_ms)},
        "expiresAt": {"N": str(expires_s)},
    }


def _follower(item: dict[str, Any]) -> Follower:
    return Follower(
        item["connectionId"]["S"],
        item["orderId"]["S"],
        item["lang"]["S"],
        _from_ms(item["connectedAt"]),
    )


def _from_ms(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value["N"]) / 1000, tz=UTC)


def _now_ms() -> int:
    return int(time.time() * 1000)
