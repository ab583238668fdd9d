"""The `ordercast` command line."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console

from ordercast import logs
from ordercast.auth import issue_token
from ordercast.errors import OrdercastError
from ordercast.lifecycle import Role
from ordercast.logs import LogLevel
from ordercast.settings import Settings
from ordercast.webhooks.cli import app as webhooks_app, check_generated
from ordercast.wire.bodies import ID_PATTERN


class LogFormat(StrEnum):
    """How `ordercast serve` writes its log lines."""

    TEXT = "text"
    JSON = "json"


app = typer.Typer(
    help="Live food-delivery order status over WebSocket.", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks")


def main() -> None:
    """The `ordercast` command: a file that cannot be read or written is an
    error line, not a traceback."""
    try:
        app()
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        typer.echo(f"error: {exc.strerror or exc}{where}", err=True)
        raise SystemExit(1) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port to listen on.", min=1, max=65535)
    ] = 8000,
    log_level: Annotated[LogLevel, typer.Option(help="Least level logged.")] = (
        LogLevel.INFO
    ),
    log_format: Annotated[
        LogFormat | None,
        typer.Option(help="text or json (default: json for a cluster node)."),
    ] = None,
) -> None:
    """Run a server (settings from ORDERCAST_* environment variables)."""
    from ordercast.app import create_app
    from ordercast.runtime import build_runtime

    settings = _settings()
    if settings.uses_development_secret and not _is_loopback(host):
        typer.echo(
            f"error: refusing to listen on {host} with the development token "
            "secret, with which anyone can sign an ops token; set "
            "ORDERCAST_TOKEN_SECRET (32 bytes or more)",
            err=True,
        )
        raise typer.Exit(2)
    if log_format is None:
        log_format = LogFormat.JSON if settings.is_cluster else LogFormat.TEXT
    logs.configure(log_level.value, as_json=log_format is LogFormat.JSON)
    try:
        runtime = build_runtime(settings)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    config = uvicorn.Config(
        create_app(settings, started=runtime),
        host=host,
        port=port,
        log_level=log_level.value,
        log_config=None,  # ours (ordercast.logs): context fields, tokens redacted
        access_log=False,
        # frames over 32 KB get an error frame from us; only past 1 MiB does
        # the WebSocket layer close the connection (RFC 6455 code 1009)
        ws_max_size=1024 * 1024,
        ws="websockets-sansio",
        # on SIGTERM uvicorn stops accepting, closes WebSockets with 1012
        # (service restart: clients reconnect elsewhere with `since`) and
        # waits this long for requests in flight before the runtime stops
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
    )
    server = uvicorn.Server(config)
    # the runtime starts on the server's loop before it listens, so that a
    # store or bus that does not answer is one line, not a lifespan traceback
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as loop:
        try:
            loop.run(runtime.start())
        except OrdercastError as exc:
            typer.echo(f"error: cannot start: {exc}", err=True)
            raise typer.Exit(1) from exc
        loop.run(server.serve())
    if not server.started:
        raise typer.Exit(3)  # uvicorn's code for a server that could not start


TEN_YEARS_S = 10 * 365 * 24 * 3600
"""Longest `--ttl`; for longer, leave it out (the token never expires)."""


@app.command()
def token(
    role: Annotated[Role, typer.Option(help="Who the token speaks for.")],
    subject: Annotated[
        str, typer.Option("--sub", help="Customer, restaurant or courier id.")
    ],
    ttl_s: Annotated[
        float | None,
        typer.Option(
            "--ttl",
            help="Seconds it stays valid (default: forever; at most ten years).",
            min=1,
            max=TEN_YEARS_S,
        ),
    ] = None,
) -> None:
    """Print a signed token for local use (uses ORDERCAST_TOKEN_SECRET)."""
    if not re.fullmatch(ID_PATTERN, subject):
        raise typer.BadParameter(
            f"{subject!r} is not an id (1 to 128 of A-Z a-z 0-9 . _ : ~ -)",
            param_hint="--sub",
        )
    typer.echo(issue_token(_settings().token_secret, role, subject, ttl_s))


# AWS

DEFAULT_ASL = Path("deploy/aws/statemachine.asl.json")
"""Where the SAM template reads the state machine, relative to the repository."""


@app.command("export-asl")
def export_asl(
    output: Annotated[
        Path, typer.Option(help="File to write; '-' prints to stdout.")
    ] = DEFAULT_ASL,
    check: Annotated[
        bool, typer.Option(help="Write nothing; fail if the file differs.")
    ] = False,
) -> None:
    """Generate the Step Functions definition from the lifecycle table."""
    from ordercast.aws.asl import render

    text = render()
    if str(output) == "-":
        typer.echo(text, nl=False)
    elif check:
        check_generated(output, text, "run `ordercast export-asl`")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        typer.echo(f"wrote {output}")


# replay and watch

DEFAULT_INSTANCE = Path("../shared/data/grubhub-mdrp/0o100t100s1p100")
"""A Grubhub instance, relative to the repository root (see its README.md)."""

DEFAULT_URL = "http://127.0.0.1:8000"

DEFAULT_TRACKS = Path("../shared/data/gotrack-aracaju")
"""Go!Track GPS tracks, relative to the repository root (see its README.md)."""


@app.command()
def replay(
    url: Annotated[
        list[str] | None,
        typer.Option(
            help="The server's HTTP URL; repeat it for each node of a cluster."
        ),
    ] = None,
    instance: Annotated[
        Path, typer.Option(help="A Grubhub MDRP instance folder.")
    ] = DEFAULT_INSTANCE,
    speed: Annotated[
        float,
        typer.Option(help="Simulated seconds per wall second.", min=0.001, max=100_000),
    ] = 60.0,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N orders.", min=0)
    ] = None,
    start_minute: Annotated[
        float | None, typer.Option(help="Skip orders placed before this minute.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 7,
    prefix: Annotated[
        str | None, typer.Option(help="Order id prefix (default: random).")
    ] = None,
    acks: Annotated[
        Path | None, typer.Option(help="Append acknowledged commands (JSON lines).")
    ] = None,
    reject_share: Annotated[float, typer.Option(help="Restaurant rejects.")] = 0.03,
    no_answer_share: Annotated[
        float, typer.Option(help="Restaurant never answers.")
    ] = 0.02,
    cancel_share: Annotated[
        float, typer.Option(help="Customer cancels before pickup.")
    ] = 0.03,
    fail_share: Annotated[float, typer.Option(help="Delivery fails.")] = 0.02,
    quiet: Annotated[
        bool, typer.Option(help="No progress bar; only the final table.")
    ] = False,
    gps: Annotated[
        bool, typer.Option(help="Move couriers along real GPS tracks.")
    ] = True,
    tracks: Annotated[
        Path, typer.Option(help="The Go!Track folder of GPS tracks.")
    ] = DEFAULT_TRACKS,
) -> None:
    """Replay a real Grubhub delivery day against a running server."""
    from ordercast.replay import DriverOptions, InstanceError, PlanOptions, Shares, play
    from ordercast.replay.driver import ServerUnavailable
    from ordercast.replay.plan import new_prefix
    from ordercast.replay.tracks import load_tracks

    _configure_logging("warning")
    try:
        real_tracks = tuple(load_tracks(tracks)) if gps else ()
    except FileNotFoundError as exc:
        typer.echo(
            f"error: no GPS tracks ({exc.filename}); pass --tracks or --no-gps",
            err=True,
        )
        raise typer.Exit(2) from exc
    try:
        shares = Shares(reject_share, no_answer_share, cancel_share, fail_share)
        plan_options = PlanOptions(
            prefix or new_prefix(), seed, limit, start_minute, shares, real_tracks
        )
        first, *others = url or [DEFAULT_URL]
        driver_options = DriverOptions(
            first,
            more_urls=tuple(others),
            speed=speed,
            acks=acks,
            show_progress=not quiet,
        )
        summary = play(instance, plan_options, driver_options, Console())
    except InstanceError as exc:
        typer.echo(
            f"error: {exc} (looked in {instance.resolve()}). "
            "The Grubhub instances are expected in "
            "../shared/data/grubhub-mdrp/<instance> relative to the repository "
            "root; pass another folder with --instance.",
            err=True,
        )
        raise typer.Exit(2) from exc
    except (ValueError, ServerUnavailable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if summary.interrupted:
        raise typer.Exit(130)  # the shell's code for Ctrl-C
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def watch(
    order_id: Annotated[
        str | None, typer.Argument(help="The order to follow.", show_default=False)
    ] = None,
    all_orders: Annotated[
        bool, typer.Option("--all", help="Follow every order (ops and dispatch).")
    ] = False,
    url: Annotated[str, typer.Option(help="The server's HTTP URL.")] = DEFAULT_URL,
    since: Annotated[
        int, typer.Option(help="Last seq already seen (one order).", min=0)
    ] = 0,
    token_: Annotated[
        str | None, typer.Option("--token", help="A signed token to connect with.")
    ] = None,
    role: Annotated[Role, typer.Option(help="Role of a minted token.")] = Role.OPS,
    subject: Annotated[str, typer.Option("--sub", help="Its subject.")] = "ops-1",
    lang: Annotated[str, typer.Option(help="Language of event messages.")] = "en",
    pretty: Annotated[
        bool, typer.Option(help="A readable line per event instead of raw frames.")
    ] = False,
) -> None:
    """Print every frame of one order, or of every order, until Ctrl-C."""
    from ordercast.watch import (
        WatchRefused,
        follow,
        pretty_printer,
        raw_printer,
        websocket_url,
    )
    from ordercast.wire.frames import ALL_ORDERS

    if all_orders == (order_id is not None):
        raise typer.BadParameter("give either ORDER_ID or --all")
    _configure_logging("warning")
    secret = _settings().token_secret
    try:
        ws_url = websocket_url(url, token_ or issue_token(secret, role, subject), lang)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--url") from exc
    emit = (
        pretty_printer(Console(highlight=False, soft_wrap=True))
        if pretty
        else raw_printer()
    )
    target = ALL_ORDERS if all_orders else str(order_id)
    try:
        asyncio.run(follow(ws_url, target, None if all_orders else since, emit))
    except KeyboardInterrupt:
        return
    except WatchRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


DEFAULT_DATA = Path("../shared/data")
"""The real delivery data, relative to the repository root."""


@app.command("train-eta")
def train_eta(
    data: Annotated[
        Path, typer.Option(help="Folder with zomato-food-delivery/ and grubhub-mdrp/.")
    ] = DEFAULT_DATA,
    output: Annotated[
        Path | None,
        typer.Option(help="Where to write the model (default: the one that ships)."),
    ] = None,
) -> None:
    """Retrain the ETA model (fixed seed) and print its held-out error."""
    import json

    from ordercast.eta import model as eta_model
    from ordercast.eta.train import TrainingDataError, train

    try:
        body = train(data)
    except TrainingDataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    target = output or Path(eta_model.__file__).with_name(eta_model.COEFFICIENTS)
    target.write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n")
    console = Console()
    for part in ("preparation", "ride"):
        fitted = body[part]
        console.print(
            f"{part}: MAE {fitted['maeMinutes']:.2f} min on {fitted['rows']['test']} "
            f"held-out rows; baseline ({fitted['baseline']}) "
            f"{fitted['baselineMaeMinutes']:.2f} min"
        )
    console.print(f"wrote {target}")


def _configure_logging(level: str) -> None:
    """Warnings and worse to stderr, so stdout carries only the command's output."""
    logs.configure(level)


def _settings() -> Settings:
    """Settings from the environment; a bad one ends the command with its reason."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"ORDERCAST_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        typer.echo(f"error: {problems}", err=True)
        raise typer.Exit(2) from exc


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
