"""`ordercast token`: what it signs, and what it refuses."""

from __future__ import annotations

import time

import jwt
import pytest
from typer.testing import CliRunner

from ordercast.auth import TokenVerifier
from ordercast.cli import app
from ordercast.lifecycle import Actor, Role
from tests.support import SECRET


def token_command(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["token", *args], env={"ORDERCAST_TOKEN_SECRET": SECRET}
    )
    return result.exit_code, result.output


def test_a_token_speaks_for_its_role_and_subject_until_it_expires() -> None:
    code, output = token_command("--role", "courier", "--sub", "c-7", "--ttl", "600")

    assert code == 0
    printed = output.strip()
    assert TokenVerifier(SECRET).verify(printed) == Actor(Role.COURIER, "c-7")
    expires_at = jwt.decode(printed, SECRET, algorithms=["HS256"])["exp"]
    assert time.time() + 590 < expires_at <= time.time() + 600


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--sub", "a b"], "is not an id"),
        (["--sub", "c-1", "--ttl", "inf"], "--ttl"),
        (["--sub", "c-1", "--ttl", "nan"], "--ttl"),
        (["--sub", "c-1", "--ttl", "1e300"], "--ttl"),
        (["--sub", "c-1", "--ttl", "0"], "--ttl"),
    ],
)
def test_a_token_that_could_not_work_is_refused(args: list[str], says: str) -> None:
    code, output = token_command("--role", "courier", *args)

    assert code == 2
    assert says in output
