"""Starting and resuming an order's Step Functions execution."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ordercast.aws.asl import RECHECK_SETTING
from ordercast.aws.items import event_to_json
from ordercast.aws.store import DynamoStore
from ordercast.lifecycle import DEADLINES, Timeouts
from ordercast.store.base import Applied

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

logger = logging.getLogger(__name__)

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

_MOVED_ON = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")
"""SendTaskSuccess errors that mean the step ended without us (a deadline, a
resync): the execution reads the event from the store instead."""


def execution_name(order_id: str) -> str:
    """A valid, stable execution name for an order (80 characters at most).

    Order ids may hold characters execution names may not (`:`, `~`); the
    hash keeps two such ids apart. The same order always gets the same name,
    which makes StartExecution idempotent.
    """
    digest = hashlib.sha256(order_id.encode()).hexdigest()[:16]
    return f"{_NAME_UNSAFE.sub('-', order_id)[:60]}-{digest}"


def whole_seconds(seconds: float) -> int:
    """Step Functions timeouts are whole seconds, at least one."""
    return max(1, math.ceil(seconds))


class Workflow:
    """The state machine as the command handler sees it."""

    def __init__(
        self,
        client: SFNClient,
        state_machine_arn: str,
        timeouts: Timeouts,
        recheck_s: float,
    ) -> None:
        self.client = client
        self.state_machine_arn = state_machine_arn
        self.timeouts = timeouts
        self.recheck_s = recheck_s

    def start(self, applied: Applied) -> None:
        """Start the order's execution with its first event (idempotent)."""
        order_id = applied.order.state.order_id
        first = applied.events[0]
        assert first.seq == 1, "an execution starts with the order's first event"
        body = {
            "orderId": order_id,
            "event": event_to_json(first),
            "timeouts": self.execution_timeouts(),
        }
        try:
            self.client.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=execution_name(order_id),
                input=json.dumps(body),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            logger.info("execution already started", extra={"order_id": order_id})

    def execution_timeouts(self) -> dict[str, int]:
        """Deadline lengths for `TimeoutSecondsPath`, from the deadline settings."""
        timeouts = {
            deadline.timeout_setting: whole_seconds(
                getattr(self.timeouts, deadline.timeout_setting)
            )
            for deadline in DEADLINES
        }
        timeouts[RECHECK_SETTING] = whole_seconds(self.recheck_s)
        return timeouts

    def resume(self, store: DynamoStore, applied: Applied) -> bool:
        """Hand the command's event to the step waiting for it.

        The step waiting after seq N stored its token with N. If the token in
        store is older, the step is not waiting yet; it will find the order
        moved on and read the event from the store. Returns whether the
        execution was resumed here.
        """
        assert len(applied.events) == 1, "a command records one event"
        event = applied.events[0]
        token = store.task_token(event.order_id)
        if token is None or token.seq != event.seq - 1:
            return False
        try:
            self.client.send_task_success(
                taskToken=token.token, output=json.dumps(event_to_json(event))
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in _MOVED_ON:
                raise
            logger.info(
                "step ended before resume: %s",
                exc.response["Error"]["Code"],
                extra={"order_id": event.order_id, "seq": event.seq},
            )
            return False
        return True
