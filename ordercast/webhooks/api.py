"""The webhook API (ops only): targets, rules, dead letters, the delivery log.

Every change is stored, then the dispatcher reloads before the answer goes
out: the next event recorded after a `201` or `200` is routed by the new
rules. docs/webhooks.md describes each endpoint.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ulid import ULID

from ordercast.api import WRITE_ERRORS, call_of, errors
from ordercast.errors import Forbidden, InvalidRequest, RuleNotFound, TargetNotFound
from ordercast.lifecycle import Role
from ordercast.routing.pattern import parse_pattern
from ordercast.routing.rules import Routing, Rule, Target
from ordercast.webhooks.base import Attempt, Backlog, DeadLetter
from ordercast.webhooks.dispatcher import Dispatcher
from ordercast.webhooks.signing import new_secret
from ordercast.wire.frames import format_at

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_TARGETS_PER_RULE = 10
MAX_TIMEOUT_S = 60.0

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


# models


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TargetFields(_Body):
    """Settings of a target; in a PATCH, only the fields given change."""

    url: str | None = Field(None, max_length=2048)
    """Where deliveries are posted (http or https)."""
    secret: str | None = Field(None, min_length=16, max_length=255)
    """The signing key; generated when a target is created without one."""
    description: str | None = Field(None, max_length=500)
    max_attempts: int | None = Field(None, alias="maxAttempts", ge=1, le=100)
    """Attempts before a delivery is dead; null for the server's setting."""
    timeout_s: float | None = Field(None, alias="timeoutS", gt=0, le=MAX_TIMEOUT_S)
    """Seconds one attempt may take; null for the server's setting."""

    @field_validator("url")
    @classmethod
    def _is_http(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL with a host")
        return url


class CreateTarget(TargetFields):
    """Body of `POST /webhooks/targets`."""

    target_id: str | None = Field(None, alias="targetId", pattern=NAME_PATTERN)
    """Chosen by the caller, or generated when absent."""
    url: str | None = Field(max_length=2048)


class RuleFields(_Body):
    """Settings of a rule; in a PATCH, only the fields given change."""

    pattern: Any = None
    """An event pattern (docs/webhooks.md)."""
    targets: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = Field(
        None, min_length=1, max_length=MAX_TARGETS_PER_RULE
    )
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = None


class CreateRule(RuleFields):
    """Body of `POST /webhooks/rules`."""

    rule_id: str | None = Field(None, alias="ruleId", pattern=NAME_PATTERN)
    pattern: Any
    targets: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        min_length=1, max_length=MAX_TARGETS_PER_RULE
    )


class Replay(_Body):
    """Body of `POST /webhooks/dead-letters/replay`: which dead letters."""

    delivery_ids: list[int] | None = Field(
        None, alias="deliveryIds", min_length=1, max_length=1000
    )
    target_id: str | None = Field(None, alias="targetId", pattern=NAME_PATTERN)


# who may


def _dispatcher(request: Request) -> Dispatcher:
    """The dispatcher, if the caller is ops. Raises: Unauthorized, Forbidden."""
    call = call_of(request)
    if call.actor.role is not Role.OPS:
        raise Forbidden("only ops may manage webhooks")
    if call.runtime.webhooks is None:
        raise InvalidRequest("this runtime keeps no webhooks")
    return call.runtime.webhooks


# targets


@router.get("/targets", responses=errors())
async def list_targets(request: Request) -> dict[str, Any]:
    """Every target, with how many deliveries wait and how many are dead."""
    dispatcher = _dispatcher(request)
    routing = await dispatcher.store.load_routing()
    backlog = await dispatcher.store.backlog()
    return {"targets": [_target_view(t, backlog) for t in routing.targets]}


@router.post("/targets", status_code=201, responses=errors(409, *WRITE_ERRORS))
async def create_target(body: CreateTarget, request: Request) -> dict[str, Any]:
    """Add a target. The answer holds its secret: keep it, it is not shown again."""
    dispatcher = _dispatcher(request)
    assert body.url is not None, "required by CreateTarget"
    target = Target(
        body.target_id or f"t-{ULID()}",
        body.url,
        body.secret or new_secret(),
        body.description or "",
        body.max_attempts,
        body.timeout_s,
    )
    await dispatcher.store.create_target(target, dispatcher.clock())
    await dispatcher.reload()
    return _target_view(target, {}) | {"secret": target.secret}


@router.get("/targets/{target_id}", responses=errors(404))
async def get_target(target_id: str, request: Request) -> dict[str, Any]:
    """One target and its backlog."""
    dispatcher = _dispatcher(request)
    target = _find_target(await dispatcher.store.load_routing(), target_id)
    return _target_view(target, await dispatcher.store.backlog())


@router.patch("/targets/{target_id}", responses=errors(404, *WRITE_ERRORS))
async def update_target(
    target_id: str, body: TargetFields, request: Request
) -> dict[str, Any]:
    """Change a target's fields; a new `secret` is echoed back once."""
    dispatcher = _dispatcher(request)
    old = _find_target(await dispatcher.store.load_routing(), target_id)
    given = body.model_fields_set
    target = Target(
        target_id,
        body.url if body.url is not None else old.url,
        body.secret if body.secret is not None else old.secret,
        body.description if body.description is not None else old.description,
        body.max_attempts if "max_attempts" in given else old.max_attempts,
        body.timeout_s if "timeout_s" in given else old.timeout_s,
    )
    await dispatcher.store.update_target(target, dispatcher.clock())
    await dispatcher.reload()
    view = _target_view(target, await dispatcher.store.backlog())
    return view | {"secret": target.secret} if body.secret is not None else view


@router.delete("/targets/{target_id}", status_code=204, responses=errors(404, 409, 503))
async def delete_target(target_id: str, request: Request) -> Response:
    """Remove a target, its waiting and dead deliveries and its log (409 while a
    rule names it)."""
    dispatcher = _dispatcher(request)
    await dispatcher.store.delete_target(target_id)
    await dispatcher.reload()
    return Response(status_code=204)


@router.post("/targets/{target_id}/test", responses=errors(404))
async def test_target(target_id: str, request: Request) -> dict[str, Any]:
    """Post a signed `webhook.test` document to the target now; say how it went."""
    dispatcher = _dispatcher(request)
    target = _find_target(await dispatcher.store.load_routing(), target_id)
    attempt = await dispatcher.send_test(target)
    return {"delivered": attempt.error is None, **_attempt_view(attempt)}


@router.get("/targets/{target_id}/attempts", responses=errors(404))
async def list_attempts(
    target_id: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """The target's delivery log: its most recent attempts, newest first."""
    dispatcher = _dispatcher(request)
    _find_target(await dispatcher.store.load_routing(), target_id)
    attempts = await dispatcher.store.attempts(target_id, limit)
    return {"targetId": target_id, "attempts": [_attempt_view(a) for a in attempts]}


# rules


@router.get("/rules", responses=errors())
async def list_rules(request: Request) -> dict[str, Any]:
    """Every rule."""
    routing = await _dispatcher(request).store.load_routing()
    return {"rules": [_rule_view(rule) for rule in routing.rules]}


@router.post("/rules", status_code=201, responses=errors(409, *WRITE_ERRORS))
async def create_rule(body: CreateRule, request: Request) -> dict[str, Any]:
    """Add a rule; 422 `invalid_pattern` or `unknown_target` if it cannot work."""
    dispatcher = _dispatcher(request)
    parse_pattern(body.pattern)
    rule = Rule(
        body.rule_id or f"r-{ULID()}",
        body.pattern,
        tuple(dict.fromkeys(body.targets)),
        body.description or "",
        True if body.enabled is None else body.enabled,
    )
    await dispatcher.store.create_rule(rule, dispatcher.clock())
    await dispatcher.reload()
    return _rule_view(rule)


@router.get("/rules/{rule_id}", responses=errors(404))
async def get_rule(rule_id: str, request: Request) -> dict[str, Any]:
    """One rule."""
    routing = await _dispatcher(request).store.load_routing()
    return _rule_view(_find_rule(routing, rule_id))


@router.patch("/rules/{rule_id}", responses=errors(404, *WRITE_ERRORS))
async def update_rule(
    rule_id: str, body: RuleFields, request: Request
) -> dict[str, Any]:
    """Change a rule's fields."""
    dispatcher = _dispatcher(request)
    old = _find_rule(await dispatcher.store.load_routing(), rule_id)
    if "pattern" in body.model_fields_set:
        parse_pattern(body.pattern)
    rule = Rule(
        rule_id,
        body.pattern if "pattern" in body.model_fields_set else old.pattern,
        tuple(dict.fromkeys(body.targets)) if body.targets else old.target_ids,
        body.description if body.description is not None else old.description,
        body.enabled if body.enabled is not None else old.enabled,
    )
    await dispatcher.store.update_rule(rule, dispatcher.clock())
    await dispatcher.reload()
    return _rule_view(rule)


@router.delete("/rules/{rule_id}", status_code=204, responses=errors(404, 503))
async def delete_rule(rule_id: str, request: Request) -> Response:
    """Remove a rule; deliveries it already caused are still made."""
    dispatcher = _dispatcher(request)
    await dispatcher.store.delete_rule(rule_id)
    await dispatcher.reload()
    return Response(status_code=204)


# dead letters


@router.get("/dead-letters", responses=errors(404))
async def list_dead_letters(
    request: Request,
    target_id: Annotated[str | None, Query(alias="targetId")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Deliveries that gave up, oldest first, with the body they carried."""
    dispatcher = _dispatcher(request)
    if target_id is not None:
        _find_target(await dispatcher.store.load_routing(), target_id)
    dead = await dispatcher.store.dead_letters(target_id, limit)
    return {"deadLetters": [_dead_letter_view(d) for d in dead]}


@router.post("/dead-letters/replay", responses=errors(404, *WRITE_ERRORS))
async def replay_dead_letters(body: Replay, request: Request) -> dict[str, Any]:
    """Make dead letters due again: those named, those of a target, or all.

    A replayed delivery starts its attempts afresh; it goes out before any
    later event of its order that still waits for the same target.
    """
    dispatcher = _dispatcher(request)
    if body.target_id is not None:
        _find_target(await dispatcher.store.load_routing(), body.target_id)
    replayed = await dispatcher.store.replay(
        body.delivery_ids, body.target_id, dispatcher.clock()
    )
    dispatcher.wake_all()
    return {"replayed": replayed}


@router.delete(
    "/dead-letters/{delivery_id}", status_code=204, responses=errors(404, 503)
)
async def discard_dead_letter(delivery_id: int, request: Request) -> Response:
    """Forget a dead letter."""
    await _dispatcher(request).store.discard(delivery_id)
    return Response(status_code=204)


# views


def _find_target(routing: Routing, target_id: str) -> Target:
    for target in routing.targets:
        if target.target_id == target_id:
            return target
    raise TargetNotFound(target_id)


def _find_rule(routing: Routing, rule_id: str) -> Rule:
    for rule in routing.rules:
        if rule.rule_id == rule_id:
            return rule
    raise RuleNotFound(rule_id)


def _target_view(target: Target, backlog: dict[str, Backlog]) -> dict[str, Any]:
    counts = backlog.get(target.target_id, Backlog())
    return {
        "targetId": target.target_id,
        "url": target.url,
        "description": target.description,
        "maxAttempts": target.max_attempts,
        "timeoutS": target.timeout_s,
        "pending": counts.pending,
        "dead": counts.dead,
    }


def _rule_view(rule: Rule) -> dict[str, Any]:
    return {
        "ruleId": rule.rule_id,
        "pattern": rule.pattern,
        "targets": list(rule.target_ids),
        "description": rule.description,
        "enabled": rule.enabled,
    }


def _attempt_view(attempt: Attempt) -> dict[str, Any]:
    return {
        "at": format_at(attempt.at),
        "eventId": attempt.event_id,
        "orderId": attempt.order_id,
        "seq": attempt.seq,
        "deliveryId": attempt.delivery_id,
        "attempt": attempt.attempt,
        "outcome": attempt.outcome.value,
        "statusCode": attempt.status_code,
        "error": attempt.error,
        "latencyMs": attempt.latency_ms,
    }


def _dead_letter_view(dead: DeadLetter) -> dict[str, Any]:
    return {
        "deliveryId": dead.delivery_id,
        "targetId": dead.target_id,
        "orderId": dead.order_id,
        "seq": dead.seq,
        "eventId": dead.event_id,
        "ruleIds": list(dead.rule_ids),
        "attempts": dead.attempts,
        "lastStatus": dead.last_status,
        "lastError": dead.last_error,
        "diedAt": format_at(dead.died_at),
        "body": dead.body,
    }
