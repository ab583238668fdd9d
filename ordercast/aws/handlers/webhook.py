"""A webhook target's function: posts the routed events its SQS queue holds."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from ordercast.aws.handlers.logs import SQS_MESSAGE_ID, configure, logger
from ordercast.aws.webhooks import WebhookFunction, WebhookFunctionSettings

configure()


@functools.cache
def function() -> WebhookFunction:
    """The target's function, built once per cold start."""
    settings = WebhookFunctionSettings()
    session = boto3.session.Session()
    secret = settings.webhook_secret
    if settings.webhook_secret_arn:
        secrets = session.client("secretsmanager")
        answer = secrets.get_secret_value(SecretId=settings.webhook_secret_arn)
        secret = answer["SecretString"]
    return WebhookFunction(
        session.client("dynamodb"), session.client("sqs"), settings, secret
    )


@logger.inject_lambda_context(correlation_id_path=SQS_MESSAGE_ID)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Post each message's event; report those to retry as batch item failures."""
    report = function().handle(event["Records"], holder=context.aws_request_id)
    logger.debug(
        "> posted %d, skipped %d, waiting %d, dead %d",
        report.posted,
        report.skipped,
        len(report.waiting),
        report.dead,
    )
    return {"batchItemFailures": [{"itemIdentifier": m} for m in report.waiting]}
