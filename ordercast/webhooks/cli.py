"""`ordercast webhooks …`: targets, rules and dead letters over the HTTP API.

Every command talks to a running server as ops (a token minted with
ORDERCAST_TOKEN_SECRET unless `--token` is given), so it works the same
against a laptop and against a cluster behind a load balancer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from ordercast import logs
from ordercast.auth import issue_token
from ordercast.lifecycle import Role
from ordercast.logs import LogLevel
from ordercast.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8000"

app = typer.Typer(
    help="Event routing and webhooks: targets, rules, dead letters.",
    no_args_is_help=True,
)
targets_app = typer.Typer(help="Webhook targets: where events are posted.")
rules_app = typer.Typer(help="Rules: which events go to which targets.")
dead_app = typer.Typer(help="Deliveries that gave up.")
app.add_typer(targets_app, name="targets", no_args_is_help=True)
app.add_typer(rules_app, name="rules", no_args_is_help=True)
app.add_typer(dead_app, name="dead-letters", no_args_is_help=True)


@dataclass
class Api:
    """The server, as the commands call it."""

    url: str
    token: str

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded answer; exits with the error's code on a refusal."""
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = httpx.request(
                method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs
            )
        except httpx.HTTPError as exc:
            fail(f"cannot reach {self.url}: {exc}", 2)
        if response.status_code >= 400:
            try:
                body = response.json()
                fail(f"{body['code']}: {body['message']}")
            except (ValueError, KeyError):
                fail(f"HTTP {response.status_code}: {response.text[:200]}")
        return response.json() if response.content else None


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def check_generated(output: Path, text: str, regenerate: str) -> None:
    """`--check` of a generated file: fail unless `output` holds `text`."""
    if not output.exists():
        fail(
            f"{output} does not exist; run from the repository root, or "
            "name the file with --output"
        )
    if output.read_text() != text:
        fail(f"{output} is out of date; {regenerate}")


@app.callback()
def connect(
    context: typer.Context,
    url: Annotated[
        str, typer.Option(help="The server's HTTP URL.", envvar="ORDERCAST_URL")
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(
            help="An ops token (default: minted with ORDERCAST_TOKEN_SECRET).",
            envvar="ORDERCAST_TOKEN",
        ),
    ] = None,
) -> None:
    """Manage webhooks on a running server, as ops."""
    minted = token or issue_token(Settings().token_secret, Role.OPS, "ordercast-cli")
    context.obj = Api(url.rstrip("/"), minted)


def show(body: Any) -> None:
    typer.echo(json.dumps(body, indent=2, ensure_ascii=False))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    grid = Table(title=title)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    console = Console()
    if not console.is_terminal:
        # Rich assumes 80 columns when piped; a pipe has no width to fit
        unbounded = console.options.update_width(100_000)
        console.width = max(console.measure(grid, options=unbounded).maximum, 80)
    console.print(grid)


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


# targets


@targets_app.command("list")
def list_targets(context: typer.Context, as_json: JsonOption = False) -> None:
    """Every target, with its waiting and dead deliveries."""
    body = context.obj.call("GET", "/webhooks/targets")
    if as_json:
        show(body)
        return
    rows = [
        [t["targetId"], t["url"], t["pending"], t["dead"], t["description"]]
        for t in body["targets"]
    ]
    table("targets", ["id", "url", "pending", "dead", "description"], rows)


@targets_app.command("create")
def create_target(
    context: typer.Context,
    url: Annotated[str, typer.Argument(help="Where to post (http or https).")],
    target_id: Annotated[str | None, typer.Option("--id", help="Its id.")] = None,
    secret: Annotated[
        str | None, typer.Option(help="Signing secret (default: generated).")
    ] = None,
    description: Annotated[str, typer.Option(help="Who it is.")] = "",
    max_attempts: Annotated[
        int | None, typer.Option(help="Before it gives up.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
) -> None:
    """Add a target; prints its secret, which is not shown again."""
    body: dict[str, Any] = {"url": url, "description": description}
    optional = {
        "targetId": target_id,
        "secret": secret,
        "maxAttempts": max_attempts,
        "timeoutS": timeout,
    }
    body |= {k: v for k, v in optional.items() if v is not None}
    show(context.obj.call("POST", "/webhooks/targets", json=body))


@targets_app.command("show")
def show_target(context: typer.Context, target_id: str) -> None:
    """One target."""
    show(context.obj.call("GET", f"/webhooks/targets/{target_id}"))


@targets_app.command("update")
def update_target(
    context: typer.Context,
    target_id: str,
    url: Annotated[str | None, typer.Option(help="New URL.")] = None,
    secret: Annotated[str | None, typer.Option(help="New signing secret.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    max_attempts: Annotated[
        int | None, typer.Option(help="Before it gives up.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
) -> None:
    """Change some of a target's fields."""
    given = {
        "url": url,
        "secret": secret,
        "description": description,
        "maxAttempts": max_attempts,
        "timeoutS": timeout,
    }
    body = {k: v for k, v in given.items() if v is not None}
    show(context.obj.call("PATCH", f"/webhooks/targets/{target_id}", json=body))


@targets_app.command("delete")
def delete_target(context: typer.Context, target_id: str) -> None:
    """Remove a target (refused while a rule names it)."""
    context.obj.call("DELETE", f"/webhooks/targets/{target_id}")
    typer.echo(f"deleted {target_id}")


@targets_app.command("test")
def test_target(context: typer.Context, target_id: str) -> None:
    """Post a signed `webhook.test` document now; exit 1 unless it got a 2xx."""
    body = context.obj.call("POST", f"/webhooks/targets/{target_id}/test")
    show(body)
    if not body["delivered"]:
        raise typer.Exit(1)


@targets_app.command("log")
def target_log(
    context: typer.Context,
    target_id: str,
    limit: Annotated[int, typer.Option(help="How many attempts.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The target's recent attempts, newest first."""
    path = f"/webhooks/targets/{target_id}/attempts"
    body = context.obj.call("GET", path, params={"limit": limit})
    if as_json:
        show(body)
        return
    rows = [
        [
            a["at"],
            a["orderId"],
            a["seq"],
            a["attempt"],
            a["outcome"],
            a["statusCode"],
            a["latencyMs"],
            a["error"],
        ]
        for a in body["attempts"]
    ]
    columns = ["at", "order", "seq", "try", "outcome", "status", "ms", "error"]
    table(f"attempts to {target_id}", columns, rows)


# rules


def read_pattern(pattern: str) -> Any:
    """A pattern given as JSON text, or as @file holding it."""
    text = Path(pattern[1:]).read_text() if pattern.startswith("@") else pattern
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"the pattern is not JSON: {exc}")


PatternOption = Annotated[
    str | None,
    typer.Option(help='Event pattern as JSON, or @file ({"status": ["DELIVERED"]}).'),
]
TargetsOption = Annotated[
    list[str] | None, typer.Option("--target", help="A target id (repeatable).")
]


@rules_app.command("list")
def list_rules(context: typer.Context, as_json: JsonOption = False) -> None:
    """Every rule."""
    body = context.obj.call("GET", "/webhooks/rules")
    if as_json:
        show(body)
        return
    rows = [
        [
            r["ruleId"],
            "yes" if r["enabled"] else "no",
            ", ".join(r["targets"]),
            json.dumps(r["pattern"]),
        ]
        for r in body["rules"]
    ]
    table("rules", ["id", "enabled", "targets", "pattern"], rows)


@rules_app.command("create")
def create_rule(
    context: typer.Context,
    pattern: PatternOption = None,
    target: TargetsOption = None,
    rule_id: Annotated[str | None, typer.Option("--id", help="Its id.")] = None,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    enabled: Annotated[bool, typer.Option(help="Route events from now on.")] = True,
) -> None:
    """Add a rule: events matching PATTERN go to each --target."""
    if pattern is None or not target:
        fail("give --pattern and at least one --target")
    body: dict[str, Any] = {
        "pattern": read_pattern(pattern),
        "targets": target,
        "description": description,
        "enabled": enabled,
    }
    if rule_id is not None:
        body["ruleId"] = rule_id
    show(context.obj.call("POST", "/webhooks/rules", json=body))


@rules_app.command("show")
def show_rule(context: typer.Context, rule_id: str) -> None:
    """One rule."""
    show(context.obj.call("GET", f"/webhooks/rules/{rule_id}"))


@rules_app.command("update")
def update_rule(
    context: typer.Context,
    rule_id: str,
    pattern: PatternOption = None,
    target: TargetsOption = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    enabled: Annotated[
        bool | None, typer.Option(help="Route events, or stop.", show_default=False)
    ] = None,
) -> None:
    """Change some of a rule's fields (--target replaces the list)."""
    body: dict[str, Any] = {}
    if pattern is not None:
        body["pattern"] = read_pattern(pattern)
    if target:
        body["targets"] = target
    if description is not None:
        body["description"] = description
    if enabled is not None:
        body["enabled"] = enabled
    show(context.obj.call("PATCH", f"/webhooks/rules/{rule_id}", json=body))


@rules_app.command("delete")
def delete_rule(context: typer.Context, rule_id: str) -> None:
    """Remove a rule (deliveries it caused are still made)."""
    context.obj.call("DELETE", f"/webhooks/rules/{rule_id}")
    typer.echo(f"deleted {rule_id}")


# dead letters


@dead_app.command("list")
def list_dead_letters(
    context: typer.Context,
    target: Annotated[str | None, typer.Option(help="Only this target's.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Deliveries that gave up, oldest first."""
    params: dict[str, Any] = {"limit": limit}
    if target is not None:
        params["targetId"] = target
    body = context.obj.call("GET", "/webhooks/dead-letters", params=params)
    if as_json:
        show(body)
        return
    rows = [
        [
            d["deliveryId"],
            d["targetId"],
            d["orderId"],
            d["seq"],
            d["body"].get("event"),
            d["attempts"],
            d["lastError"],
            d["diedAt"],
        ]
        for d in body["deadLetters"]
    ]
    columns = ["id", "target", "order", "seq", "event", "tries", "last error", "died"]
    table("dead letters", columns, rows)


@dead_app.command("replay")
def replay_dead_letters(
    context: typer.Context,
    delivery_ids: Annotated[
        list[int] | None, typer.Argument(help="Dead letters to replay.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="All of this target's.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every one.")] = False,
) -> None:
    """Send dead letters again, with fresh attempts."""
    if not delivery_ids and target is None and not everything:
        fail("name dead letters, or give --target or --all")
    body: dict[str, Any] = {}
    if delivery_ids:
        body["deliveryIds"] = delivery_ids
    if target is not None:
        body["targetId"] = target
    show(context.obj.call("POST", "/webhooks/dead-letters/replay", json=body))


@dead_app.command("discard")
def discard_dead_letter(context: typer.Context, delivery_id: int) -> None:
    """Forget a dead letter."""
    context.obj.call("DELETE", f"/webhooks/dead-letters/{delivery_id}")
    typer.echo(f"discarded {delivery_id}")


# delivering for servers


@app.command("deliver")
def deliver(
    poll: Annotated[
        float, typer.Option(help="Seconds between looks for new deliveries.", min=0.01)
    ] = 0.1,
    log_level: Annotated[LogLevel, typer.Option(help="Least level logged.")] = (
        LogLevel.INFO
    ),
) -> None:
    """Send the webhooks that servers record, from this process, until stopped.

    For servers run with ORDERCAST_WEBHOOK_DELIVERY=external, on the same
    database (ORDERCAST_DATABASE_URL): they record deliveries and leave the
    sending, and its CPU, to this process. Run as many as you like.
    """
    import asyncio

    logs.configure(log_level.value)
    asyncio.run(_deliver(Settings(), poll))


async def _deliver(settings: Settings, poll_s: float) -> None:
    import asyncio
    import signal

    from ordercast.runtime import build_store, build_webhooks

    store = build_store(settings)
    await store.open()
    dispatcher = build_webhooks(settings, store, idle_poll_s=poll_s)
    if dispatcher is None:
        fail(f"{settings.database_url} keeps no webhook outbox", 2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    await dispatcher.start()
    try:
        await stop.wait()
    finally:
        await dispatcher.stop()
        await store.close()


# AWS

DEFAULT_STACK = Path("deploy/aws/webhooks.json")
"""Where the webhook stack is written, relative to the repository."""


@app.command("export-aws")
def export_aws(
    context: typer.Context,
    rules: Annotated[
        Path | None,
        typer.Option(help="A declaration file (default: the server's stored rules)."),
    ] = None,
    output: Annotated[
        Path, typer.Option(help="File to write; '-' prints to stdout.")
    ] = DEFAULT_STACK,
    check: Annotated[
        bool, typer.Option(help="Write nothing; fail if the file differs.")
    ] = False,
    policies: Annotated[
        bool,
        typer.Option(help="Print each rule's SNS filter policy instead of a stack."),
    ] = False,
) -> None:
    """Generate the AWS webhook stack (SNS filter policies, queues, functions)."""
    from ordercast.aws.routing import filter_policy
    from ordercast.aws.webhook_stack import render_stack
    from ordercast.errors import Refusal
    from ordercast.webhooks.declared import load_declared, routing_from_api

    try:
        if rules is not None:
            routing = load_declared(rules.read_bytes())
        else:
            targets = context.obj.call("GET", "/webhooks/targets")["targets"]
            stored = context.obj.call("GET", "/webhooks/rules")["rules"]
            routing = routing_from_api(targets, stored)
        if policies:
            text = (
                json.dumps(
                    {
                        rule.rule_id: _policy_view(filter_policy(rule.pattern))
                        for rule in routing.rules
                    },
                    indent=2,
                )
                + "\n"
            )
        else:
            text = render_stack(routing)
    except (Refusal, ValueError, OSError) as exc:
        fail(str(exc))
    if str(output) == "-" or policies:
        typer.echo(text, nl=False)
    elif check:
        check_generated(output, text, "run the same command without --check")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        typer.echo(f"wrote {output}")


def _policy_view(policy: Any) -> dict[str, Any]:
    return {"filterPolicy": policy.policy, "exact": policy.exact, "never": policy.never}
