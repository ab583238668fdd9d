"""The AWS runtime's wiring: settings, clients and the parts built on them.

Lambda handlers call `services()`, which builds everything once per cold
start (boto3 clients are expensive to make and safe to reuse).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ordercast.auth import TokenVerifier
from ordercast.aws.connections import Connections
from ordercast.aws.fanout import Fanout, management_post
from ordercast.aws.store import DynamoStore, Tables
from ordercast.aws.workflow import Workflow
from ordercast.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient


class AwsSettings(Settings):
    """The embedded settings (deadlines, token secret) plus the AWS resources.

    The SAM template sets each of these on every function.
    """

    model_config = SettingsConfigDict(env_prefix="ORDERCAST_")

    orders_table: str = "ordercast-orders"
    events_table: str = "ordercast-events"
    task_tokens_table: str = "ordercast-task-tokens"
    idempotency_table: str = "ordercast-idempotency-keys"
    connections_table: str = "ordercast-connections"
    state_machine_arn: str = ""
    websocket_endpoint: str = ""
    """`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`."""
    token_secret_arn: str = ""
    """Secrets Manager secret holding the HS256 key; read once per cold start."""
    workflow_recheck_s: float = Field(900.0, gt=0)
    """A waiting step without a deadline checks the store this often."""

    @property
    def tables(self) -> Tables:
        """The table names, as the store takes them."""
        return Tables(
            self.orders_table,
            self.events_table,
            self.task_tokens_table,
            self.idempotency_table,
            self.connections_table,
        )


@dataclass
class Services:
    """Everything a handler needs, built from settings."""

    settings: AwsSettings
    session: boto3.session.Session
    management: ApiGatewayManagementApiClient
    store: DynamoStore
    connections: Connections
    fanout: Fanout
    workflow: Workflow

    @functools.cached_property
    def verifier(self) -> TokenVerifier:
        """Token checks, with the key read on first use (only the authoriser and
        the HTTP API need it, and only they may read the secret)."""
        secret = self.settings.token_secret
        if self.settings.token_secret_arn:
            secrets = self.session.client("secretsmanager")
            answer = secrets.get_secret_value(SecretId=self.settings.token_secret_arn)
            secret = answer["SecretString"]
        return TokenVerifier(secret)


def build_services(settings: AwsSettings) -> Services:
    """Clients and parts for `settings` (region and credentials from the
    environment, as Lambda provides them)."""
    session = boto3.session.Session()
    dynamodb = session.client("dynamodb")
    store = DynamoStore(dynamodb, settings.tables)
    connections = Connections(dynamodb, settings.connections_table)
    management = session.client(
        "apigatewaymanagementapi", endpoint_url=settings.websocket_endpoint or None
    )
    fanout = Fanout(store, connections, management_post(management))
    workflow = Workflow(
        session.client("stepfunctions"),
        settings.state_machine_arn,
        settings.timeouts,
        settings.workflow_recheck_s,
    )
    return Services(settings, session, management, store, connections, fanout, workflow)


@functools.cache
def services() -> Services:
    """The services of this Lambda container, built on first use."""
    return build_services(AwsSettings())
