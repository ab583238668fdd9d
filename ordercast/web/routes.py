"""The tracking page, the ops dashboard, their assets and the ops queries.

Pages carry no token and no order data: the page's script reads the token
from the link's `token` parameter (as a platform would put it in the link it
sends its customer), then asks the API and the WebSocket with it, like any
other client. Every asset is served from here; nothing is fetched from
elsewhere, so the pages work offline.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from html import escape
from importlib import resources
from string import Template
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ordercast.api import call_of, errors
from ordercast.errors import Forbidden
from ordercast.lifecycle import Role, Status
from ordercast.lifecycle.table import HAPPY_PATH
from ordercast.runtime import Runtime
from ordercast.web.graph import lifecycle_svg
from ordercast.web.text import page_text
from ordercast.wire.bodies import ID_PATTERN
from ordercast.wire.frames import format_at, order_view
from ordercast.wire.messages import negotiate_language

router = APIRouter()

STATIC = resources.files("ordercast.web") / "static"

PAGE_HEADERS = {
    # the token travels in the link: never hand the link to another site
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
}

AT_RISK_WITHIN_S = 300.0
"""Deadlines due within this many seconds count as orders at risk."""


def static_files() -> StaticFiles:
    """The pages' scripts and styles, mounted at `/static`."""
    return StaticFiles(directory=str(STATIC))


# pages


@router.get("/track/{order_id}", response_class=HTMLResponse, include_in_schema=False)
async def tracking_page(
    order_id: Annotated[str, Path(pattern=ID_PATTERN)],
    lang: str | None = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
    """The customer's live view of one order, in their language."""
    language = negotiate_language(lang, accept_language)
    text = page_text(language)
    steps = "\n".join(
        f'<li data-status="{s.value}" data-state="todo"><span class="dot" '
        f'aria-hidden="true"></span><span class="label">'
        f"{escape(text['step.' + s.value])}</span>"
        '<time class="when"></time></li>'
        for s in HAPPY_PATH
    )
    body = _template("track.html").substitute(
        lang=language,
        title=escape(text["title"]),
        order_id=escape(order_id, quote=True),
        order_label=escape(text["order"].replace("{orderId}", order_id)),
        steps_label=escape(text["steps"]),
        steps=steps,
        eta_label=escape(text["eta"]),
        eta_none=escape(text["eta.none"]),
        map_label=escape(text["map"]),
        restaurant=escape(text["map.restaurant"]),
        customer=escape(text["map.customer"]),
        courier=escape(text["map.courier"]),
        connecting=escape(text["link.connecting"]),
        text_json=_script_json(text),
    )
    return HTMLResponse(body, headers=PAGE_HEADERS)


@router.get("/ops", response_class=HTMLResponse, include_in_schema=False)
async def ops_page() -> HTMLResponse:
    """The operators' dashboard: lifecycle with counts, feed, risks, history."""
    body = _template("ops.html").substitute(graph=_graph())
    return HTMLResponse(body, headers=PAGE_HEADERS)


@cache
def _graph() -> str:
    return lifecycle_svg()


@cache
def _template(name: str) -> Template:
    return Template((STATIC / name).read_text(encoding="utf-8"))


def _script_json(value: Any) -> str:
    """JSON safe inside a `<script>` element."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


# ops queries


def _ops_or_dispatch(request: Request) -> Runtime:
    """The runtime, if the caller is ops or dispatch. Raises: Forbidden."""
    call = call_of(request)
    if call.actor.role not in (Role.OPS, Role.DISPATCH):
        raise Forbidden("only ops and dispatch see every order")
    return call.runtime


@router.get("/ops/counts", responses=errors())
async def status_counts(request: Request) -> dict[str, Any]:
    """How many orders are in each status now (ops and dispatch)."""
    rt = _ops_or_dispatch(request)
    counts = await rt.store.count_by_status()
    return {
        "at": format_at(datetime.now(UTC)),
        "counts": {status.value: counts.get(status, 0) for status in Status},
    }


@router.get("/ops/at-risk", responses=errors())
async def orders_at_risk(
    request: Request,
    within_s: Annotated[float, Query(alias="withinS", ge=0, le=86400)] = (
        AT_RISK_WITHIN_S
    ),
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Orders whose deadline is near or has passed, most urgent first.

    A stored deadline due within `withinS` seconds is near (or passed, if the
    engine has not fired it yet); an order left waiting by a deadline that
    fired without moving it on (`dispatch.overdue`) has passed.
    """
    rt = _ops_or_dispatch(request)
    now = datetime.now(UTC)
    due = await rt.store.due_deadlines(now + timedelta(seconds=within_s), limit)
    risks: list[dict[str, Any]] = []
    for deadline in due:
        record = await rt.store.get_order(deadline.order_id)
        if record is None:
            continue
        risks.append(
            {
                **_risk(order_view(record), deadline.kind),
                "dueAt": format_at(deadline.due_at),
                "passed": deadline.due_at <= now,
            }
        )
    listed = {deadline.order_id for deadline in due}
    for overdue in await rt.store.overdue_orders(limit):
        # a deadline the engine fired between the two reads is listed once
        if overdue.order.state.order_id in listed:
            continue
        view = order_view(overdue.order)
        risks.append({**_risk(view, overdue.kind), "dueAt": None, "passed": True})
    return {"at": format_at(now), "withinS": within_s, "orders": risks[:limit]}


def _risk(view: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "orderId": view["orderId"],
        "status": view["status"],
        "deadline": kind,
        "updatedAt": view["updatedAt"],
    }
