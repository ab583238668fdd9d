"""Rules and targets declared in a file, for deployments that generate them.

The file holds what the HTTP API takes, checked the same way:

```json
{"targets": [{"targetId": "partner-a", "url": "https://partner.example/hooks"}],
 "rules": [{"ruleId": "outcomes", "pattern": {"status": ["DELIVERED"]},
            "targets": ["partner-a"]}]}
```

Secrets are not declared: the AWS webhook stack generates one per target.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ordercast.errors import InvalidRequest, UnknownTarget
from ordercast.routing.pattern import parse_pattern
from ordercast.routing.rules import Routing, Rule, Target
from ordercast.webhooks.api import CreateRule, CreateTarget


class Declared(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: list[CreateTarget] = Field(default_factory=list)
    rules: list[CreateRule] = Field(default_factory=list)


def load_declared(text: str | bytes) -> Routing:
    """Targets and rules from a declaration.

    Raises:
        InvalidRequest: not JSON, off the schema, an id given twice, or a
            target or rule without an id.
        InvalidPattern: a rule's pattern breaks the pattern language.
        UnknownTarget: a rule names a target the file does not declare.
    """
    try:
        declared = Declared.model_validate(orjson.loads(text))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise InvalidRequest(f"not a declaration of rules and targets: {exc}") from exc
    targets = tuple(_target(t) for t in declared.targets)
    rules = tuple(_rule(r) for r in declared.rules)
    _check_unique([t.target_id for t in targets], "target")
    _check_unique([r.rule_id for r in rules], "rule")
    known = {t.target_id for t in targets}
    for rule in rules:
        parse_pattern(rule.pattern)
        missing = [t for t in rule.target_ids if t not in known]
        if missing:
            raise UnknownTarget(missing)
    return Routing(targets, rules)


def routing_from_api(
    targets: list[dict[str, Any]], rules: list[dict[str, Any]]
) -> Routing:
    """Targets and rules as `GET /webhooks/targets` and `/rules` answer them."""
    return Routing(
        tuple(
            Target(
                t["targetId"],
                t["url"],
                "",
                t["description"],
                t["maxAttempts"],
                t["timeoutS"],
            )
            for t in targets
        ),
        tuple(
            Rule(
                r["ruleId"],
                r["pattern"],
                tuple(r["targets"]),
                r["description"],
                r["enabled"],
            )
            for r in rules
        ),
    )


def _target(body: CreateTarget) -> Target:
    if body.target_id is None or body.url is None:
        raise InvalidRequest("every declared target needs a targetId and a url")
    return Target(
        body.target_id,
        body.url,
        "",
        body.description or "",
        body.max_attempts,
        body.timeout_s,
    )


def _rule(body: CreateRule) -> Rule:
    if body.rule_id is None:
        raise InvalidRequest("every declared rule needs a ruleId")
    enabled = True if body.enabled is None else body.enabled
    targets = tuple(dict.fromkeys(body.targets))
    return Rule(body.rule_id, body.pattern, targets, body.description or "", enabled)


def _check_unique(ids: list[str], what: str) -> None:
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise InvalidRequest(f"{what} ids declared twice: {', '.join(twice)}")
