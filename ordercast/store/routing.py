"""Rules, targets and the routing version in SQL (see `ordercast.store.outbox`).

Units of work on a connection, run in a transaction by the caller. Each
change bumps the routing version in its own transaction, so every process
sharing the database can tell that rules or targets changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ordercast.errors import (
    RuleExists,
    RuleNotFound,
    TargetExists,
    TargetInUse,
    TargetNotFound,
    UnknownTarget,
)
from ordercast.routing.rules import Routing, Rule, Target
from ordercast.store.schema import (
    routing_rules,
    routing_version as versions,
    webhook_attempts,
    webhook_deliveries,
    webhook_targets,
)
from ordercast.store.sql import to_ms


def routing_version(connection: Connection) -> int:
    query = sa.select(versions.c.version).where(versions.c.id == 1)
    return int(connection.execute(query).scalar_one())


def _bump_version(connection: Connection) -> int:
    connection.execute(
        versions.update()
        .where(versions.c.id == 1)
        .values(version=versions.c.version + 1)
    )
    return routing_version(connection)


def load_routing(connection: Connection) -> Routing:
    version = routing_version(connection)
    targets = connection.execute(
        sa.select(webhook_targets).order_by(webhook_targets.c.target_id)
    )
    rules = connection.execute(
        sa.select(routing_rules).order_by(routing_rules.c.rule_id)
    )
    return Routing(
        tuple(_target_from_row(row) for row in targets),
        tuple(_rule_from_row(row) for row in rules),
        version,
    )


def _target_row(target: Target) -> dict[str, Any]:
    timeout_ms = None if target.timeout_s is None else int(target.timeout_s * 1000)
    return {
        "target_id": target.target_id,
        "url": target.url,
        "secret": target.secret,
        "description": target.description,
        "max_attempts": target.max_attempts,
        "timeout_ms": timeout_ms,
    }


def _target_from_row(row: sa.Row[Any]) -> Target:
    timeout_s = None if row.timeout_ms is None else row.timeout_ms / 1000
    return Target(
        row.target_id, row.url, row.secret, row.description, row.max_attempts, timeout_s
    )


def _rule_from_row(row: sa.Row[Any]) -> Rule:
    return Rule(
        row.rule_id,
        row.pattern,
        tuple(row.target_ids),
        row.description,
        bool(row.enabled),
    )


def _exists(connection: Connection, column: sa.Column[Any], value: str) -> bool:
    query = sa.select(sa.literal(1)).where(column == value)
    return connection.execute(query).first() is not None


def create_target(connection: Connection, target: Target, now: datetime) -> int:
    if _exists(connection, webhook_targets.c.target_id, target.target_id):
        raise TargetExists(target.target_id)
    times = {"created_at_ms": to_ms(now), "updated_at_ms": to_ms(now)}
    connection.execute(webhook_targets.insert(), {**_target_row(target), **times})
    return _bump_version(connection)


def update_target(connection: Connection, target: Target, now: datetime) -> int:
    query = (
        webhook_targets.update()
        .where(webhook_targets.c.target_id == target.target_id)
        .values(**_target_row(target), updated_at_ms=to_ms(now))
    )
    if connection.execute(query).rowcount != 1:
        raise TargetNotFound(target.target_id)
    return _bump_version(connection)


def delete_target(connection: Connection, target_id: str) -> int:
    if not _exists(connection, webhook_targets.c.target_id, target_id):
        raise TargetNotFound(target_id)
    rules = connection.execute(
        sa.select(routing_rules.c.rule_id, routing_rules.c.target_ids)
    )
    naming = sorted(r.rule_id for r in rules if target_id in r.target_ids)
    if naming:
        raise TargetInUse(target_id, naming)
    connection.execute(
        webhook_deliveries.delete().where(webhook_deliveries.c.target_id == target_id)
    )
    connection.execute(
        webhook_attempts.delete().where(webhook_attempts.c.target_id == target_id)
    )
    connection.execute(
        webhook_targets.delete().where(webhook_targets.c.target_id == target_id)
    )
    return _bump_version(connection)


def save_rule(connection: Connection, rule: Rule, now: datetime, new: bool) -> int:
    exists = _exists(connection, routing_rules.c.rule_id, rule.rule_id)
    if new and exists:
        raise RuleExists(rule.rule_id)
    if not new and not exists:
        raise RuleNotFound(rule.rule_id)
    known = set(
        connection.execute(
            sa.select(webhook_targets.c.target_id).where(
                webhook_targets.c.target_id.in_(rule.target_ids)
            )
        ).scalars()
    )
    missing = [t for t in rule.target_ids if t not in known]
    if missing:
        raise UnknownTarget(missing)
    row = {
        "pattern": rule.pattern,
        "target_ids": list(rule.target_ids),
        "description": rule.description,
        "enabled": rule.enabled,
        "updated_at_ms": to_ms(now),
    }
    if new:
        row |= {"rule_id": rule.rule_id, "created_at_ms": to_ms(now)}
        connection.execute(routing_rules.insert(), row)
    else:
        connection.execute(
            routing_rules.update()
            .where(routing_rules.c.rule_id == rule.rule_id)
            .values(**row)
        )
    return _bump_version(connection)


def delete_rule(connection: Connection, rule_id: str) -> int:
    query = routing_rules.delete().where(routing_rules.c.rule_id == rule_id)
    if connection.execute(query).rowcount != 1:
        raise RuleNotFound(rule_id)
    return _bump_version(connection)
