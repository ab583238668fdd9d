"""Signatures as receivers check them, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ordercast.webhooks.attempts import (
    RetryPolicy,
    is_success,
    request_headers,
    retry_after_s,
)
from ordercast.webhooks.signing import new_secret, signature, signed_headers, verify

BODY = b'{"type":"order.event","eventId":"01JEXAMPLE5K3","seq":3}'
SECRET = "whsec_test-secret"


def test_the_signature_is_hmac_sha256_of_event_id_timestamp_and_body() -> None:
    # the scheme as docs/webhooks.md states it, computed by hand
    signed = b"01JEXAMPLE5K3.1796299200." + BODY
    digest = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()

    assert signature(SECRET, "01JEXAMPLE5K3", 1796299200, BODY) == f"v1={digest}"
    assert signed_headers(SECRET, "01JEXAMPLE5K3", 1796299200, BODY) == {
        "Ordercast-Event-Id": "01JEXAMPLE5K3",
        "Ordercast-Timestamp": "1796299200",
        "Ordercast-Signature": f"v1={digest}",
    }


def test_a_receiver_accepts_a_fresh_genuine_request_and_nothing_else() -> None:
    headers = signed_headers(SECRET, "e-1", 1000, BODY)
    sig = headers["Ordercast-Signature"]

    assert verify(SECRET, "e-1", "1000", BODY, sig, now_s=1000)
    assert verify(SECRET, "e-1", "1000", BODY, sig, now_s=1299)
    assert not verify(SECRET, "e-1", "1000", BODY, sig, now_s=1301)  # replayed late
    assert not verify(SECRET, "e-1", "1000", BODY + b" ", sig, now_s=1000)  # body
    assert not verify(SECRET, "e-2", "1000", BODY, sig, now_s=1000)  # event id
    assert not verify(SECRET, "e-1", "1001", BODY, sig, now_s=1000)  # timestamp
    assert not verify("whsec_other", "e-1", "1000", BODY, sig, now_s=1000)
    assert not verify(SECRET, "e-1", "soon", BODY, sig, now_s=1000)
    assert verify(SECRET, "e-1", "1000", BODY, f"v1=00, {sig}", now_s=1000)


def test_the_verification_example_in_the_docs_works() -> None:
    # given the receiver's example from docs/webhooks.md, run as written
    source = (
        __import__("pathlib").Path(__file__).parents[2] / "docs" / "webhooks.md"
    ).read_text()
    example = source.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/webhooks.md", "exec"), namespace)  # noqa: S102
    is_genuine = namespace["is_genuine"]
    assert callable(is_genuine)

    # then it accepts what ordercast signs, and refuses a forgery
    headers = request_headers(SECRET, "e-1", BODY, int(__import__("time").time()), 1)
    assert is_genuine(SECRET, headers, BODY)
    assert not is_genuine(SECRET, headers, BODY.replace(b"3", b"4"))
    assert not is_genuine("whsec_other", headers, BODY)


def test_new_secrets_are_long_and_distinct() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(s.startswith("whsec_") and len(s) >= 48 for s in secrets)


def test_every_attempt_carries_the_content_type_and_its_number() -> None:
    headers = request_headers(SECRET, "e-1", BODY, 1000, attempt=3)
    assert headers["Content-Type"] == "application/json"
    assert headers["Ordercast-Attempt"] == "3"
    assert headers["User-Agent"].startswith("ordercast-webhooks/")


@pytest.mark.parametrize(
    ("status", "delivered"),
    [
        (200, True),
        (204, True),
        (299, True),
        (301, False),
        (400, False),
        (429, False),
        (500, False),
    ],
)
def test_only_2xx_delivers(status: int, delivered: bool) -> None:
    assert is_success(status) is delivered


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(max_attempts=8, base_s=1.0, max_delay_s=10.0)

    ceilings = [policy.delay_s(n, draw=lambda: 1.0) for n in range(1, 7)]
    floors = [policy.delay_s(n, draw=lambda: 0.0) for n in range(1, 7)]
    halves = [policy.delay_s(n, draw=lambda: 0.5) for n in range(1, 7)]

    assert ceilings == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert floors == [0.0] * 6
    assert halves == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.delay_s(1000, draw=lambda: 1.0) == 10.0


def test_a_retry_after_is_waited_at_least_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=8, base_s=1.0, max_delay_s=10.0)
    assert policy.delay_s(1, retry_after_s=5.0, draw=lambda: 0.1) == 5.0
    assert policy.delay_s(1, retry_after_s=60.0, draw=lambda: 0.1) == 10.0
    assert retry_after_s("7") == 7.0
    assert retry_after_s(" 7 ") == 7.0
    assert retry_after_s("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert retry_after_s(None) is None


def test_a_delivery_gives_up_after_its_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up(n) for n in (1, 2, 3, 4)] == [False, False, True, True]
