"""The `ordercast` command line."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import uvicorn

from ordercast.auth import issue_token
from ordercast.lifecycle import Role
from ordercast.settings import Settings

app = typer.Typer(
    help="Live food-delivery order status over WebSocket.", no_args_is_help=True
)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[
        str, typer.Option(help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run a server (settings from ORDERCAST_* environment variables)."""
    from ordercast.app import create_app

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    uvicorn.run(
        create_app(Settings()),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        # frames over 32 KB get an error frame from us; only past 1 MiB does
        # the WebSocket layer close the connection (RFC 6455 code 1009)
        ws_max_size=1024 * 1024,
        ws="websockets-sansio",
    )


@app.command()
def token(
    role: Annotated[Role, typer.Option(help="Who the token speaks for.")],
    subject: Annotated[
        str, typer.Option("--sub", help="Customer, restaurant or courier id.")
    ],
    ttl_s: Annotated[
        float | None, typer.Option("--ttl", help="Seconds it stays valid.")
    ] = None,
) -> None:
    """Print a signed token for local use (uses ORDERCAST_TOKEN_SECRET)."""
    typer.echo(issue_token(Settings().token_secret, role, subject, ttl_s))
