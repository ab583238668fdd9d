"""The notifier: SNS-triggered, posts each announced event to its followers."""

from __future__ import annotations

from typing import Any

import orjson
from aws_lambda_powertools.utilities.typing import LambdaContext

from ordercast.aws.handlers.logs import SNS_MESSAGE_ID, configure, logger
from ordercast.aws.items import event_from_json
from ordercast.aws.runtime import services
from ordercast.errors import OrdercastError

configure()


class DeliveryIncomplete(OrdercastError):
    """Some posts failed for a reason other than a gone connection.

    Raised so that Lambda retries the delivery (and, when the retries are
    spent, sends it to the dead-letter queue). A retry posts only what each
    subscription has not had: `lastSeq` makes it idempotent.
    """


@logger.inject_lambda_context(correlation_id_path=SNS_MESSAGE_ID)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """Deliver every event of the SNS records to the connections that follow it."""
    fanout = services().fanout
    posted = gone = stale = 0
    failed: list[str] = []
    for record in event["Records"]:
        order_event = event_from_json(orjson.loads(record["Sns"]["Message"]))
        report = fanout.deliver(order_event, holder=context.aws_request_id)
        posted += report.posted
        gone += len(report.gone)
        stale += report.stale
        failed += report.failed
    logger.debug("> posted %d, gone %d, stale %d", posted, gone, stale)
    if failed:
        raise DeliveryIncomplete(f"posts failed on {len(failed)} connections")
    return {"posted": posted, "gone": gone, "stale": stale}
