"""The ASGI application: HTTP API, `/ws`, and the runtime behind them."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ordercast import __version__
from ordercast.api import refusal_body, router
from ordercast.errors import (
    InvalidRequest,
    OrdercastError,
    Refusal,
    StoreError,
    internal_error_frame,
    store_unavailable_frame,
)
from ordercast.runtime import Runtime, build_runtime
from ordercast.settings import Settings
from ordercast.web.routes import router as web_router, static_files
from ordercast.webhooks.api import router as webhooks_router
from ordercast.wire.bodies import describe_error

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, started: Runtime | None = None
) -> FastAPI:
    """A server for `settings` (read from the environment when None).

    Args:
        started: a runtime already started on the server's event loop, which
            the server then stops when it ends; without one, the server builds
            and starts its own.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.uses_development_secret:
            logger.warning(
                "USING THE DEVELOPMENT TOKEN SECRET: anyone can mint tokens. "
                "Set ORDERCAST_TOKEN_SECRET before exposing this server"
            )
        runtime = started
        if runtime is None:
            runtime = build_runtime(settings)
            await runtime.start()
        app.state.runtime = runtime
        settle_garbage_collector()
        logger.info(
            "serving with store %s and bus %s",
            _without_password(settings.database_url),
            _without_password(settings.bus_url),
        )
        try:
            yield
        finally:
            logger.info("draining")
            await runtime.stop()
            logger.info("stopped")

    app = FastAPI(
        title="ordercast",
        version=__version__,
        summary="Live food-delivery order status, pushed over WebSocket",
        lifespan=lifespan,
        telemetry=None if settings.opentelemetry else _NO_TELEMETRY,
    )
    # Starlette counts what is read of a streamed body; a body declared too
    # large is refused before that, in the API's error shape (Starlette's own
    # answer to it is plain text).
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=MAX_BODY_BYTES)
    app.add_middleware(DeclaredBodyLimit, max_body_size=MAX_BODY_BYTES)
    app.include_router(router)
    app.include_router(web_router)
    app.include_router(webhooks_router)
    app.mount("/static", static_files(), name="static")
    # FastAPI's documented way to extend the schema is to replace this method
    app.openapi = lambda: _openapi_with_bearer(app)  # type: ignore[method-assign]
    app.add_exception_handler(Refusal, _refusal_response)
    app.add_exception_handler(RequestValidationError, _validation_response)
    app.add_exception_handler(StoreError, _store_error_response)
    app.add_exception_handler(HTTPException, _http_error_response)
    app.add_exception_handler(Exception, _internal_error_response)

    @app.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        await app.state.runtime.gateway.serve(websocket)

    @app.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is up (liveness)."""
        return {"status": "ok"}

    @app.api_route("/readyz", methods=["GET", "HEAD"], include_in_schema=False)
    async def readyz() -> JSONResponse:
        """The store and the bus answer, so this node can serve (readiness)."""
        runtime = app.state.runtime
        checks = {
            "store": await _check(runtime.store.ping),
            "bus": await _check(runtime.bus.ping),
        }
        ready = all(answer == "ok" for answer in checks.values())
        body = {"status": "ready" if ready else "unavailable", **checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    return app


READY_TIMEOUT_S = 2.0
"""Longest a readiness check waits for the store or the bus."""


async def _check(ping: Callable[[], Awaitable[None]]) -> str:
    """ "ok", or why the part did not answer."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await ping()
    except (OrdercastError, TimeoutError) as exc:
        return str(exc) or exc.__class__.__name__
    return "ok"


GC_THRESHOLDS = (10_000, 20, 100)
"""Allocations before a young collection, and young collections per older one."""


def settle_garbage_collector() -> None:
    """Keep full garbage collections short and rare once the server is up.

    Everything alive after start-up (modules, routes, compiled SQL) lives as
    long as the process, so it is frozen out of every later collection, and
    young collections run less often than CPython's default of every 700
    allocations. With CPython's defaults a full collection paused the event
    loop for 50 to 160 ms several times a second at 1,000 commands/s, and
    those pauses were the whole p99 of command-to-follower latency
    (`bench/fanout.py`).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def _openapi_with_bearer(app: FastAPI) -> dict[str, Any]:
    """The generated schema, saying that every operation takes a Bearer token.

    Endpoints read the token themselves (see `ordercast.api.call_of`), so
    FastAPI cannot infer the security scheme from their signatures.
    """
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "HS256 token with `role` and `sub` (`ordercast token`)",
        }
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema


async def _refusal_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return Response(
        refusal_body(exc), status_code=exc.http_status, media_type="application/json"
    )


async def _validation_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [describe_error(error) for error in exc.errors()]
    return await _refusal_response(request, InvalidRequest("; ".join(problems)))


MAX_BODY_BYTES = 128 * 1024
"""Largest request body read: API Gateway's limit for a Management API post;
order bodies are far smaller (`ordercast.wire.bodies`)."""

HTTP_ERROR_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}
"""Codes for what Starlette refuses before an endpoint runs."""


def _body_too_large() -> JSONResponse:
    body = {
        "type": "error",
        "code": HTTP_ERROR_CODES[413],
        "message": f"the request body is over {MAX_BODY_BYTES // 1024} KB",
    }
    return JSONResponse(body, status_code=413)


class DeclaredBodyLimit:
    """Refuse a request whose Content-Length is over `max_body_size`, unread."""

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body_size:
                await _body_too_large()(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _http_error_response(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method, unreadable body)."""
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 413:
        return _body_too_large()
    message = {
        404: f"there is no {request.url.path} in this API (see /openapi.json)",
        405: f"{where} is not part of this API (see /openapi.json)",
    }.get(exc.status_code, f"{where}: {exc.detail}")
    body = {
        "type": "error",
        "code": HTTP_ERROR_CODES.get(exc.status_code, "http_error"),
        "message": message,
    }
    return JSONResponse(body, exc.status_code, headers=exc.headers)


async def _internal_error_response(request: Request, exc: Exception) -> Response:
    logger.error("request failed", exc_info=exc)
    return JSONResponse(internal_error_frame(), status_code=500)


async def _store_error_response(request: Request, exc: Exception) -> Response:
    logger.error("store failed", exc_info=exc)
    return JSONResponse(store_unavailable_frame(), status_code=503)


def _without_password(url: str) -> str:
    """The URL as it may be logged: a password in it is masked."""
    scheme, sep, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{place}"
