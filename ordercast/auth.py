"""Signed tokens (HS256 JWT) that say who a caller is: a role and a subject."""

from __future__ import annotations

import re
import time

import jwt

from ordercast.errors import Unauthorized
from ordercast.lifecycle import Actor, Role
from ordercast.wire.bodies import ID_PATTERN

DEVELOPMENT_SECRET = "ordercast-development-secret-do-not-use-in-production"
"""Used when ORDERCAST_TOKEN_SECRET is unset; the server warns loudly at start."""

_CACHE_SIZE = 10_000

CLOCK_SKEW_S = 60
"""How far the clock of the machine that issued a token may be off from ours:
`iat`, `nbf` and `exp` are read with this much leeway."""


def issue_token(
    secret: str, role: Role, subject: str, ttl_s: float | None = None
) -> str:
    """A token for `subject` acting as `role`, valid for `ttl_s` (forever if None)."""
    claims: dict[str, object] = {
        "sub": subject,
        "role": role.value,
        "iat": int(time.time()),
    }
    if ttl_s is not None:
        claims["exp"] = int(time.time() + ttl_s)
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Checks tokens and remembers the ones it has seen (callers repeat theirs)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._seen: dict[str, tuple[Actor, float]] = {}

    def verify(self, token: str | None) -> Actor:
        """The actor a token names.

        Raises:
            Unauthorized: no token, a bad signature, an expired token, or
                claims without a known `role` and a `sub`.
        """
        if not token:
            raise Unauthorized("a signed token is required")
        cached = self._seen.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        actor, expires_at = self._decode(token)
        if len(self._seen) >= _CACHE_SIZE:
            self._seen.clear()
        self._seen[token] = (actor, expires_at)
        return actor

    def _decode(self, token: str) -> tuple[Actor, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                options={"require": ["sub"]},
                leeway=CLOCK_SKEW_S,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from exc
        try:
            role = Role(str(claims.get("role")))
        except ValueError as exc:
            roles = ", ".join(r.value for r in Role)
            raise Unauthorized(f"the token's role must be one of {roles}") from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not re.fullmatch(ID_PATTERN, subject):
            raise Unauthorized(
                "the token's sub must be an id (1 to 128 of A-Z a-z 0-9 . _ : ~ -)"
            )
        expires_at = float(claims.get("exp", float("inf"))) + CLOCK_SKEW_S
        return Actor(role, subject), expires_at


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, if there is one."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None
