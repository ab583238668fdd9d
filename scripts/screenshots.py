"""Screenshots of the tracking page and the ops dashboard, from a real run.

Starts a server on a fresh store, replays part of a real Grubhub day with
couriers on real GPS tracks, and photographs both pages with the system's
Chromium while the replay runs. Writes docs/tracking.png and docs/ops.png.
Run it with `make screenshots`.
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ordercast.replay import DriverOptions, PlanOptions, build_plan, load_instance  # noqa: E402
from ordercast.replay.driver import run_replay  # noqa: E402
from ordercast.replay.plan import Shares  # noqa: E402
from ordercast.replay.tracks import load_tracks  # noqa: E402
from tests.support import OPS, SECRET, Server, token  # noqa: E402
from tests.web.browser import chromium  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SPEED = 30.0


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(
            Path(folder) / "ordercast.db",
            env={
                "ORDERCAST_RESTAURANT_TIMEOUT_S": str(300 / SPEED),
                "ORDERCAST_DISPATCH_TIMEOUT_S": str(600 / SPEED),
                "ORDERCAST_LOCATION_INTERVAL_S": "0.5",
            },
        ).start()
        try:
            photograph(server)
        finally:
            server.stop()


def photograph(server: Server) -> None:
    instance = load_instance(DATA / "grubhub-mdrp" / "0o100t100s1p100")
    options = PlanOptions(
        prefix="shot",
        limit=60,
        start_minute=600,
        shares=Shares(0.05, 0.05, 0.05, 0.05),
        tracks=tuple(load_tracks(DATA / "gotrack-aracaju")),
    )
    plan = build_plan(instance, options)
    driver = DriverOptions(server.url, secret=SECRET, speed=SPEED, show_progress=False)
    replay = threading.Thread(
        target=lambda: asyncio.run(
            run_replay(plan, driver, Console(file=io.StringIO()))
        ),
        daemon=True,
    )
    with chromium() as browser:
        ops = browser.new_page(viewport={"width": 1280, "height": 1180})
        ops.goto(f"{server.url}/ops?token={token('ops', 'ops-1')}")
        replay.start()
        order_id, customer = wait_for_delivery_in_progress(server, list(plan.intended))
        phone = browser.new_page(
            viewport={"width": 390, "height": 1000}, device_scale_factor=2, locale="en"
        )
        phone.goto(f"{server.url}/track/{order_id}?token={token('customer', customer)}")
        phone.wait_for_selector('#courier[visibility="visible"]', timeout=60_000)
        time.sleep(6)
        phone.screenshot(path=str(ROOT / "docs" / "tracking.png"), full_page=True)
        ops.click(f'#feed button.order[data-order="{order_id}"] >> nth=0')
        time.sleep(1.5)
        ops.screenshot(path=str(ROOT / "docs" / "ops.png"), full_page=True)


def wait_for_delivery_in_progress(
    server: Server, order_ids: list[str]
) -> tuple[str, str]:
    """An order of the replay that a courier is taking to its customer."""
    with httpx.Client(base_url=server.url) as client:
        for _ in range(600):
            counts = client.get("/ops/counts", headers=OPS).json()["counts"]
            if counts["IN_DELIVERY"]:
                break
            time.sleep(0.2)
        for order_id in order_ids:
            answer = client.get(f"/orders/{order_id}", headers=OPS)
            if answer.status_code == 200 and answer.json()["status"] == "IN_DELIVERY":
                return order_id, answer.json()["customerId"]
    raise SystemExit("no order reached IN_DELIVERY")


if __name__ == "__main__":
    main()
