"""Admin tokens: HS256 JWTs with a required ``exp``, minted by ``clockify-relay admin-token`` and
verified by the admin API, so both agree on the rules by construction."""

from __future__ import annotations

import time
from typing import Any

import jwt

# The one algorithm admin tokens may use. Pinning it refuses "alg: none", RS256 tokens made with
# a public key as HMAC secret, and anything else an attacker might pick.
ADMIN_JWT_ALGORITHM = "HS256"
ADMIN_JWT_ISSUER = "clockify-relay"
# Small allowance for clock skew between the machine that minted a token and the receiver.
ADMIN_JWT_LEEWAY = 10
MAX_TOKEN_TTL = 31 * 24 * 3600


class TokenError(Exception):
    """An admin token was refused; the message is safe to show (never contains the token)."""


def mint_admin_token(secret: str, subject: str, ttl: int, now: float | None = None) -> str:
    """An HS256 admin token for ``subject`` that expires after ``ttl`` seconds."""
    if not secret:
        raise TokenError("no admin secret configured (RELAY_ADMIN_JWT_SECRET)")
    if not 0 < ttl <= MAX_TOKEN_TTL:
        raise TokenError(f"ttl must be between 1 and {MAX_TOKEN_TTL} seconds")
    issued = int(time.time() if now is None else now)
    claims = {"iss": ADMIN_JWT_ISSUER, "sub": subject, "iat": issued, "exp": issued + ttl}
    return jwt.encode(claims, secret, algorithm=ADMIN_JWT_ALGORITHM)


def verify_admin_token(secret: str, token: str) -> dict[str, Any]:
    """The claims of a valid admin token; raises :class:`TokenError` otherwise.

    HS256 only, ``exp`` required and checked (``nbf``/``iat`` too when present).
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ADMIN_JWT_ALGORITHM],
            options={"require": ["exp"], "verify_exp": True, "verify_signature": True},
            leeway=ADMIN_JWT_LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.MissingRequiredClaimError:
        raise TokenError("token has no exp claim") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError(f"token algorithm not allowed (only {ADMIN_JWT_ALGORITHM})") from None
    except jwt.InvalidSignatureError:
        raise TokenError("token signature is not valid") from None
    except jwt.PyJWTError:
        # Any other PyJWT complaint (malformed, bad header, bad iat/nbf): refuse, never crash.
        raise TokenError("token is not a valid admin token") from None
    return claims
