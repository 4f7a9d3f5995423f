"""Verification of Clockify webhook requests (docs/ARCHITECTURE.md §2).

Clockify puts one value in the ``Clockify-Signature`` header, in one of two forms:

* the webhook's ``authToken`` verbatim: an opaque shared secret. It looks like a JWT, but its
  claims are Clockify's business, not ours, so it is only ever compared as a whole;
* for add-on webhooks, an RS256 JWT signed by Clockify with ``iss`` "clockify", ``type`` "addon",
  ``sub`` the add-on key, ``workspaceId`` and ``addonId``, usually without ``exp``.

The receiver calls :meth:`WebhookVerifier.verify` on every request, so everything that can be is
prepared once in ``__init__``: token digests and the parsed public key.

No message produced here contains the presented signature or a configured token: messages go
into 401 bodies and logs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidSubjectError,
    MissingRequiredClaimError,
    PyJWTError,
)

from clockify_relay.clockify.models import KNOWN_EVENTS
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import BUNDLED_ADDON_PUBLIC_KEY, Settings

SIGNATURE_HEADER = "Clockify-Signature"
# Far above any real token (Clockify's are ~1 KiB); refusing early bounds the work an anonymous
# caller can make us do.
MAX_SIGNATURE_LENGTH = 16 * 1024
# Tolerated clock difference between Clockify and us for ``iat``/``nbf``/``exp``.
JWT_LEEWAY_SECONDS = 60
ADDON_ISSUER = "clockify"
ADDON_JWT_TYPE = "addon"

# Three base64url segments; the third may be empty (that is how ``alg: none`` looks, and it must
# reach PyJWT to be refused with a clear message rather than be reported as "wrong token").
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]*$")


class VerificationError(Exception):
    """A request that must be refused with 401; the message is safe to return to the caller.

    ``reason`` is a short stable code for metrics and logs (``not_configured``, ``missing``,
    ``bad_token``, ``wrong_event_type``, ``workspace``, ``addon_invalid``).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    """How a request was verified; ``workspace_id`` comes from the add-on JWT claim, else None."""

    method: Literal["token", "addon"]
    workspace_id: str | None


def load_public_key(pem: str) -> RSAPublicKey:
    """Parse a PEM (SPKI) RSA public key; raise :class:`ConfigurationError` if it is not one."""
    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError):
        raise ConfigurationError(
            "the Clockify add-on public key is not a valid PEM public key "
            "(CLOCKIFY_ADDON_PUBLIC_KEY / CLOCKIFY_ADDON_PUBLIC_KEY_FILE)"
        ) from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigurationError("the Clockify add-on public key must be an RSA key (RS256)")
    return key


def _digest(value: str) -> bytes:
    # Comparing fixed-length digests instead of the raw values keeps compare_digest from
    # revealing a token's length, and works for any header text (compare_digest refuses
    # non-ASCII str).
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _event_label(event_type: str) -> str:
    # The event type comes from a request header: echo it only when it is a name we know, so a
    # 401 body never reflects arbitrary caller text (which could even be a token).
    return event_type if event_type in KNOWN_EVENTS else "the given event type"


class WebhookVerifier:
    """Decides whether a webhook request really comes from Clockify."""

    def __init__(self, settings: Settings) -> None:
        # (digest, event type or None for "any"): digests prepared once, compared per request.
        self._tokens: tuple[tuple[bytes, str | None], ...] = tuple(
            (_digest(t.token.reveal()), t.event_type) for t in settings.webhook_tokens if t.token
        )
        # Event types CLOCKIFY_WEBHOOK_TOKENS binds: for them the environment wins over the
        # tokens ``webhooks register``/``rotate`` stored in Redis (clockify/token_store.py).
        self._env_event_types = frozenset(t for _, t in self._tokens if t is not None)
        self._addon_key: str | None = settings.addon_key or None
        self._public_key: RSAPublicKey | None = None
        if self._addon_key:
            pem = settings.addon_public_key_pem or BUNDLED_ADDON_PUBLIC_KEY.read_text()
            self._public_key = load_public_key(pem)
        self._workspace_ids = frozenset(settings.workspace_ids)
        self._jwt = jwt.PyJWT()

    @property
    def configured(self) -> bool:
        """True when at least one way of verifying is configured; otherwise all is refused."""
        return bool(self._tokens) or self._public_key is not None

    @property
    def addon_enabled(self) -> bool:
        """True when add-on JWTs are verified (``CLOCKIFY_ADDON_KEY`` is set)."""
        return self._public_key is not None

    def verify(
        self,
        signature: str | None,
        event_type: str,
        payload_workspace_id: str | None,
        *,
        body_read: bool = True,
        stored: Sequence[tuple[bytes, str]] = (),
    ) -> Verified:
        """Verify one request; return how it was verified or raise :class:`VerificationError`.

        ``signature`` is the ``Clockify-Signature`` header, ``event_type`` the
        ``Clockify-Webhook-Event-Type`` header and ``payload_workspace_id`` the body's
        ``workspaceId`` (None when the body has none or it is not a string). An add-on JWT's
        ``workspaceId`` claim must equal it — a body without one cannot prove its workspace —
        unless ``body_read`` is False (an ignored event type, whose body is not parsed).
        ``stored`` are ``(SHA-256 digest, event type)`` pairs of tokens kept in Redis (the
        receiver's TokenCache); they count for event types the environment does not bind.
        """
        extra = tuple(
            (digest, bound) for digest, bound in stored if bound not in self._env_event_types
        )
        tokens = self._tokens + extra
        if not (tokens or self._public_key is not None):
            raise VerificationError(
                "webhook verification is not configured, so every request is refused: "
                "set CLOCKIFY_WEBHOOK_TOKENS and/or CLOCKIFY_ADDON_KEY, or run "
                "`clockify-relay webhooks register`",
                reason="not_configured",
            )
        presented = (signature or "").strip()
        if not presented:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header", reason="missing")
        if len(presented) > MAX_SIGNATURE_LENGTH:
            raise VerificationError(f"{SIGNATURE_HEADER} header is too long", reason="bad_token")

        event_type = event_type.strip()
        if tokens:
            presented_digest = _digest(presented)
            valid_here = False
            valid_elsewhere = False
            # Every configured token is compared, whatever matched before: the time taken must
            # not tell which (or whether an earlier) token matched. Bitwise | never short-cuts.
            for digest, bound_to in tokens:
                same = hmac.compare_digest(presented_digest, digest)
                allowed = bound_to is None or bound_to == event_type
                valid_here |= same and allowed
                valid_elsewhere |= same and not allowed
            if valid_here:
                self._check_allowed_workspace(payload_workspace_id)
                return Verified(method="token", workspace_id=None)
            if valid_elsewhere:
                raise VerificationError(
                    f"the {SIGNATURE_HEADER} token is not valid for event type "
                    f"{_event_label(event_type)}",
                    reason="wrong_event_type",
                )

        if self._public_key is not None and _JWT_SHAPE.match(presented):
            return self._verify_addon(presented, payload_workspace_id, body_read)
        raise VerificationError(
            f"{SIGNATURE_HEADER} does not match any accepted webhook token", reason="bad_token"
        )

    def _check_allowed_workspace(self, workspace_id: str | None) -> None:
        if self._workspace_ids and workspace_id not in self._workspace_ids:
            # Fail closed: a body without workspaceId cannot prove it belongs to an allowed one.
            raise VerificationError(
                "the payload's workspace is not in the allowed workspaces (CLOCKIFY_WORKSPACE_IDS)",
                reason="workspace",
            )

    def _verify_addon(
        self, token: str, payload_workspace_id: str | None, body_read: bool
    ) -> Verified:
        assert self._public_key is not None and self._addon_key is not None
        try:
            claims: dict[str, Any] = self._jwt.decode(
                token,
                key=self._public_key,
                # Pinned: refuses "none", and HS256 "signed" with the public key as secret.
                algorithms=["RS256"],
                issuer=ADDON_ISSUER,
                subject=self._addon_key,
                leeway=JWT_LEEWAY_SECONDS,
                # Clockify sends no exp (checked when present) and no aud (not ours to judge).
                options={"require": ["iss", "sub"], "verify_aud": False},
            )
        except ExpiredSignatureError:
            raise _addon_error("add-on token has expired") from None
        except InvalidAlgorithmError:
            raise _addon_error("add-on token must be signed with RS256") from None
        except InvalidSignatureError:
            raise _addon_error("add-on token signature is not valid for the add-on key") from None
        except MissingRequiredClaimError as exc:
            raise _addon_error(f"add-on token lacks the {exc.claim!r} claim") from None
        except InvalidIssuerError:
            raise _addon_error("add-on token was not issued by Clockify (iss)") from None
        except InvalidSubjectError:
            raise _addon_error("add-on token is for another add-on (sub)") from None
        except ImmatureSignatureError:
            raise _addon_error("add-on token is not valid yet (iat/nbf in the future)") from None
        except DecodeError:
            raise _addon_error("malformed add-on token: not a decodable JWT") from None
        except PyJWTError as exc:
            # Anything else PyJWT refuses is refused too (401, never a 500). Its own text is not
            # echoed: its wording is not ours to promise safe.
            raise _addon_error(f"add-on token rejected ({type(exc).__name__})") from None

        if claims.get("type") != ADDON_JWT_TYPE:
            raise _addon_error("add-on token is not of type 'addon'")
        workspace_id = claims.get("workspaceId")
        if not isinstance(workspace_id, str) or not workspace_id:
            raise _addon_error("add-on token lacks the 'workspaceId' claim")
        if self._workspace_ids and workspace_id not in self._workspace_ids:
            raise VerificationError(
                "the add-on token's workspace is not in the allowed workspaces "
                "(CLOCKIFY_WORKSPACE_IDS)",
                reason="workspace",
            )
        if body_read and payload_workspace_id != workspace_id:
            raise VerificationError(
                "the payload's workspaceId is missing or differs from the add-on token's workspace",
                reason="workspace",
            )
        return Verified(method="addon", workspace_id=workspace_id)


def _addon_error(message: str) -> VerificationError:
    return VerificationError(message, reason="addon_invalid")
