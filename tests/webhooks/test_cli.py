"""`ordercast webhooks …` against a real server: every command goes through
the HTTP API, and refusals come back as the API's error codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from ordercast.cli import app
from ordercast.webhooks.cli import table
from tests.support import (
    LONG_DEADLINES,
    OPS,
    WAIT_S,
    Server,
    free_port,
    running,
    token,
    unique_id,
)
from tests.webhooks.receiver import Receiver, Request, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db_path = tmp_path_factory.mktemp("cli") / "ordercast.db"
    env = {
        **LONG_DEADLINES,
        "ORDERCAST_WEBHOOK_RETRY_BASE_S": "0.05",
        "ORDERCAST_WEBHOOK_POLL_S": "0.2",
    }
    with running(db_path, **env) as srv:
        yield srv


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


async def cli(server: Server, *args: str) -> Result:
    """Run a command in a thread, so that receivers on this loop can answer."""
    prefix = ["webhooks", "--url", server.url, "--token", token("ops", "ops-cli")]
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, [*prefix, *args])


def output(result: Result) -> Any:
    assert result.exit_code == 0, (result.output, result.stderr)
    return json.loads(result.stdout)


async def test_a_partner_is_set_up_tested_and_followed_from_the_cli(
    server: Server, receiver: Receiver, tmp_path: Path
) -> None:
    # given a target and a rule made with the CLI (the pattern from a file)
    target_id = unique_id("t")
    created = output(
        await cli(
            server,
            "targets",
            "create",
            receiver.url,
            "--id",
            target_id,
            "--max-attempts",
            "3",
        )
    )
    assert created["secret"].startswith("whsec_")
    assert created["maxAttempts"] == 3
    pattern_file = tmp_path / "pattern.json"
    pattern_file.write_text(json.dumps({"event": ["order.received"]}))
    rule_id = unique_id("r")
    rule = output(
        await cli(
            server,
            "rules",
            "create",
            "--id",
            rule_id,
            "--target",
            target_id,
            "--pattern",
            f"@{pattern_file}",
        )
    )
    assert rule["pattern"] == {"event": ["order.received"]}

    # when a test delivery is sent and an order is created
    tested = output(await cli(server, "targets", "test", target_id))
    assert (tested["delivered"], tested["statusCode"]) == (True, 200)
    order_id = unique_id()
    body = {"orderId": order_id, "customerId": "cu-1", "restaurantId": "r-1"}
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.post("/orders", json=body, headers=OPS)).status_code == 201
    await wait_for(lambda: len(receiver.delivered()) == 2, WAIT_S, "delivery")

    # then the receiver got both, signed with the secret the CLI printed
    assert all(r.signed_with(created["secret"]) for r in receiver.requests)
    assert receiver.requests[1].document["orderId"] == order_id

    # and the lists and the log show them
    listed = await cli(server, "targets", "list")
    assert target_id in listed.stdout
    log = await cli(server, "targets", "log", target_id, "--json")
    assert [a["outcome"] for a in output(log)["attempts"]] == ["delivered", "test"]
    rules = output(await cli(server, "rules", "list", "--json"))["rules"]
    assert rule_id in {r["ruleId"] for r in rules}

    # and the rule and target can be changed and removed
    off = output(await cli(server, "rules", "update", rule_id, "--no-enabled"))
    assert off["enabled"] is False
    moved = output(await cli(server, "targets", "update", target_id, "--timeout", "2"))
    assert moved["timeoutS"] == 2
    refused = await cli(server, "targets", "delete", target_id)
    assert refused.exit_code == 1
    assert "target_in_use" in refused.stderr
    assert (await cli(server, "rules", "delete", rule_id)).exit_code == 0
    assert (await cli(server, "targets", "delete", target_id)).exit_code == 0
    assert (
        "target_not_found" in (await cli(server, "targets", "show", target_id)).stderr
    )


async def test_dead_letters_are_listed_and_replayed_from_the_cli(
    server: Server,
) -> None:
    refusing = [True]

    async def until_fixed(request: Request) -> int:
        return 500 if refusing[0] else 200

    receiver = await Receiver(until_fixed).start()
    target_id = unique_id("t")
    output(
        await cli(
            server,
            "targets",
            "create",
            receiver.url,
            "--id",
            target_id,
            "--max-attempts",
            "1",
        )
    )
    output(
        await cli(
            server,
            "rules",
            "create",
            "--target",
            target_id,
            "--pattern",
            '{"event": ["order.received"]}',
        )
    )
    async with httpx.AsyncClient(base_url=server.url) as client:
        body = {"orderId": unique_id(), "customerId": "cu-1", "restaurantId": "r-1"}
        assert (await client.post("/orders", json=body, headers=OPS)).status_code == 201

    async def dead() -> list[dict[str, Any]]:
        result = await cli(
            server, "dead-letters", "list", "--target", target_id, "--json"
        )
        return list(output(result)["deadLetters"])

    for _ in range(100):
        if await dead():
            break
        await asyncio.sleep(0.05)
    [letter] = await dead()
    table = await cli(server, "dead-letters", "list", "--target", target_id)
    assert str(letter["deliveryId"]) in table.stdout

    refusing[0] = False
    replayed = output(
        await cli(server, "dead-letters", "replay", "--target", target_id)
    )
    assert replayed == {"replayed": 1}
    await wait_for(lambda: len(receiver.delivered()) == 1, WAIT_S, "replayed")
    assert await dead() == []
    await receiver.stop()


async def test_the_cli_reports_refusals_and_unreachable_servers(server: Server) -> None:
    bad = await cli(
        server, "rules", "create", "--target", "t", "--pattern", '{"a": "b"}'
    )
    assert bad.exit_code == 1
    assert "invalid_pattern" in bad.stderr
    not_json = await cli(server, "rules", "create", "--target", "t", "--pattern", "{a")
    assert (not_json.exit_code, "not JSON" in not_json.stderr) == (1, True)
    nothing = await cli(server, "dead-letters", "replay")
    assert nothing.exit_code == 1
    runner = CliRunner()
    away = await asyncio.to_thread(
        runner.invoke,
        app,
        ["webhooks", "--url", f"http://127.0.0.1:{free_port()}", "targets", "list"],
    )
    assert away.exit_code == 2
    assert "cannot reach" in away.stderr


def test_a_table_piped_elsewhere_is_printed_whole(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "https://partner.example/hooks/" + "x" * 90

    table("targets", ["targetId", "url"], [["t-1", url]])

    assert url in capsys.readouterr().out
