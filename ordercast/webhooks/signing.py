"""How webhook requests are signed, and how a receiver checks them.

Every request carries three headers:

- `Ordercast-Event-Id`: the event's id; the same on every retry, so a
  receiver can drop repeats.
- `Ordercast-Timestamp`: when this attempt was signed, in whole seconds since
  the Unix epoch; a receiver refuses old ones, so a captured request cannot be
  replayed later.
- `Ordercast-Signature`: `v1=` and the hex HMAC-SHA256, keyed with the
  target's secret, of `{event id}.{timestamp}.{body}` (the body as sent,
  byte for byte).

docs/webhooks.md shows a receiver that checks them. Both runtimes sign with
this module: the embedded dispatcher and the AWS webhook function.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

EVENT_ID_HEADER = "Ordercast-Event-Id"
TIMESTAMP_HEADER = "Ordercast-Timestamp"
SIGNATURE_HEADER = "Ordercast-Signature"
SCHEME = "v1"
"""Version of the signature scheme, written before the digest."""

TOLERANCE_S = 300
"""How far a receiver should let a timestamp stray from its clock."""

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh target secret: 32 random bytes, URL-safe text."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The `Ordercast-Signature` value for one request."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def signed_headers(
    secret: str, event_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers of a delivery attempt signed at `timestamp`."""
    return {
        EVENT_ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, event_id, timestamp, body),
    }


def verify(
    secret: str,
    event_id: str,
    timestamp: str,
    body: bytes,
    signature_header: str,
    now_s: float,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """Whether a request was signed with `secret` recently, as a receiver checks.

    The header may hold several comma-separated signatures (one per secret
    while a secret is being replaced); one valid signature is enough.
    """
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > tolerance_s:
        return False
    expected = signature(secret, event_id, int(timestamp), body)
    offered = [part.strip() for part in signature_header.split(",")]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)
