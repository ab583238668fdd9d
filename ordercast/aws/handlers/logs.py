"""Structured JSON logs for every Lambda, with the request id as correlation id.

Powertools' `Logger` formats the lines; its handler is copied to the
`ordercast` loggers, so core modules keep `logging.getLogger(__name__)`
and still log JSON with the correlation id and their `extra` fields.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

logger = Logger(service="ordercast")

REQUEST_ID = "requestContext.requestId"
"""Correlation id of API Gateway events (HTTP and WebSocket)."""

SNS_MESSAGE_ID = "Records[0].Sns.MessageId"
"""Correlation id of an SNS delivery: the topic's message id."""

SQS_MESSAGE_ID = "Records[0].messageId"
"""Correlation id of an SQS batch: its first message's id."""


def configure() -> None:
    """Route the `ordercast.*` loggers through the Powertools handler."""
    copy_config_to_registered_loggers(source_logger=logger, include={"ordercast"})
