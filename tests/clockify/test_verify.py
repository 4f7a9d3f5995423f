"""Webhook verification: shared-secret tokens and Clockify add-on JWTs, every failure mode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from clockify_relay.clockify.verify import (
    MAX_SIGNATURE_LENGTH,
    VerificationError,
    Verified,
    WebhookVerifier,
    load_public_key,
)
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import BUNDLED_ADDON_PUBLIC_KEY, Settings, parse_tokens

WS = "6641f2a9c7e13b5d2a8f0c11"
OTHER_WS = "6641f2a9c7e13b5d2a8f0cff"
ADDON_KEY = "clockify-relay-addon"
ADDON_ID = "69b00d005d4c3b2a19f8ea01"

# Shaped like Clockify's authTokens (which look like JWTs but are opaque secrets).
TOKEN_NEW = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJuZXctZW50cnkifQ.bmV3LWVudHJ5LXNpZw"
TOKEN_NEW_ROTATED = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyb3RhdGVkIn0.cm90YXRlZC1zaWc"
TOKEN_UPDATED = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1cGRhdGVkIn0.dXBkYXRlZC1zaWc"
TOKEN_ANY = "opaque-shared-secret-for-every-event-5f2c9a"
ALL_TOKENS = (TOKEN_NEW, TOKEN_NEW_ROTATED, TOKEN_UPDATED, TOKEN_ANY)
TOKENS_ENV = (
    f"NEW_TIME_ENTRY={TOKEN_NEW},NEW_TIME_ENTRY={TOKEN_NEW_ROTATED},"
    f"TIME_ENTRY_UPDATED={TOKEN_UPDATED},{TOKEN_ANY}"
)


# --- helpers ----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def make_settings(
    tokens: str = "",
    addon_key: str | None = None,
    pem: str | None = None,
    workspaces: tuple[str, ...] = (),
) -> Settings:
    return Settings(
        webhook_tokens=parse_tokens(tokens),
        addon_key=addon_key,
        addon_public_key_pem=pem,
        workspace_ids=frozenset(workspaces),
    )


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def public_pem(private_key: rsa.RSAPrivateKey) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def addon_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": "clockify",
        "sub": ADDON_KEY,
        "type": "addon",
        "workspaceId": WS,
        "addonId": ADDON_ID,
        "iat": int(time.time()) - 5,
    }
    for key, value in changes.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


@pytest.fixture
def sign(private_key: rsa.RSAPrivateKey) -> Callable[..., str]:
    def _sign(algorithm: str = "RS256", key: Any = None, **changes: Any) -> str:
        return jwt.encode(addon_claims(**changes), key or private_key, algorithm=algorithm)

    return _sign


@pytest.fixture
def addon_verifier(public_pem: str) -> WebhookVerifier:
    return WebhookVerifier(make_settings(addon_key=ADDON_KEY, pem=public_pem))


def refused(verifier: WebhookVerifier, signature: str | None, **kw: Any) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verifier.verify(signature, kw.get("event_type", "NEW_TIME_ENTRY"), kw.get("workspace", WS))
    return info.value


# --- fail closed, missing header --------------------------------------------------------------


@pytest.mark.parametrize("signature", [TOKEN_ANY, "", None, "a.b.c"])
def test_nothing_configured_refuses_everything(signature: str | None) -> None:
    verifier = WebhookVerifier(Settings())
    assert not verifier.configured
    error = refused(verifier, signature)
    assert error.reason == "not_configured"
    assert "not configured" in error.message and "CLOCKIFY_WEBHOOK_TOKENS" in error.message


def test_addon_key_alone_counts_as_configured() -> None:
    assert WebhookVerifier(make_settings(addon_key=ADDON_KEY)).configured
    assert WebhookVerifier(make_settings(TOKEN_ANY)).configured
    # Empty entries in the token list configure nothing.
    assert not WebhookVerifier(make_settings(" , ,")).configured


@pytest.mark.parametrize("signature", [None, "", "   "])
def test_missing_signature_is_refused(signature: str | None) -> None:
    error = refused(WebhookVerifier(make_settings(TOKENS_ENV)), signature)
    assert error.reason == "missing"
    assert "missing Clockify-Signature" in error.message


# --- tokens -----------------------------------------------------------------------------------


def test_bound_token_is_accepted_for_its_event_type() -> None:
    verifier = WebhookVerifier(make_settings(TOKENS_ENV))
    assert verifier.verify(TOKEN_NEW, "NEW_TIME_ENTRY", WS) == Verified("token", None)
    assert verifier.verify(TOKEN_UPDATED, "TIME_ENTRY_UPDATED", WS).method == "token"


def test_rotation_two_tokens_for_one_type_are_both_accepted() -> None:
    verifier = WebhookVerifier(make_settings(TOKENS_ENV))
    assert verifier.verify(TOKEN_NEW, "NEW_TIME_ENTRY", WS).method == "token"
    assert verifier.verify(TOKEN_NEW_ROTATED, "NEW_TIME_ENTRY", WS).method == "token"
    # Once the old one is removed from the configuration it is refused.
    rotated = WebhookVerifier(make_settings(f"NEW_TIME_ENTRY={TOKEN_NEW_ROTATED}"))
    assert rotated.verify(TOKEN_NEW_ROTATED, "NEW_TIME_ENTRY", WS).method == "token"
    assert refused(rotated, TOKEN_NEW).reason == "bad_token"


@pytest.mark.parametrize(
    "event_type", ["NEW_TIME_ENTRY", "TIME_ENTRY_DELETED", "NEW_PROJECT", "TIMER_STOPPED"]
)
def test_bare_token_is_accepted_for_any_event_type(event_type: str) -> None:
    verifier = WebhookVerifier(make_settings(TOKENS_ENV))
    assert verifier.verify(TOKEN_ANY, event_type, WS) == Verified("token", None)


def test_token_bound_to_another_event_type_is_refused() -> None:
    verifier = WebhookVerifier(make_settings(TOKENS_ENV))
    error = refused(verifier, TOKEN_UPDATED, event_type="TIME_ENTRY_DELETED")
    assert error.reason == "wrong_event_type"
    assert error.message == (
        "the Clockify-Signature token is not valid for event type TIME_ENTRY_DELETED"
    )
    error = refused(verifier, TOKEN_NEW, event_type="TIME_ENTRY_UPDATED")
    assert error.reason == "wrong_event_type"


def test_same_token_bound_and_bare_is_accepted_everywhere() -> None:
    verifier = WebhookVerifier(make_settings(f"NEW_TIME_ENTRY={TOKEN_ANY},{TOKEN_ANY}"))
    assert verifier.verify(TOKEN_ANY, "TIME_ENTRY_DELETED", WS).method == "token"


@pytest.mark.parametrize(
    "signature",
    [
        "wrong",
        TOKEN_NEW[:-1],  # a prefix of a real token
        TOKEN_NEW + "x",  # a real token with more after it
        TOKEN_ANY.upper(),
        "ñandú-token-with-non-ascii ✓",
    ],
)
def test_wrong_token_is_refused(signature: str) -> None:
    error = refused(WebhookVerifier(make_settings(TOKENS_ENV)), signature)
    assert error.reason == "bad_token"
    assert error.message == "Clockify-Signature does not match any accepted webhook token"


def test_surrounding_whitespace_is_ignored() -> None:
    verifier = WebhookVerifier(make_settings(TOKENS_ENV))
    assert verifier.verify(f"  {TOKEN_ANY}\t", "NEW_TIME_ENTRY", WS).method == "token"


def test_overlong_signature_is_refused_without_work() -> None:
    error = refused(WebhookVerifier(make_settings(TOKENS_ENV)), "x" * (MAX_SIGNATURE_LENGTH + 1))
    assert error.reason == "bad_token" and "too long" in error.message


def test_token_with_workspace_allow_list() -> None:
    verifier = WebhookVerifier(make_settings(TOKENS_ENV, workspaces=(WS,)))
    assert verifier.verify(TOKEN_ANY, "NEW_TIME_ENTRY", WS).method == "token"
    for workspace in (OTHER_WS, None, ""):
        error = refused(verifier, TOKEN_ANY, workspace=workspace)
        assert error.reason == "workspace"
        assert "not in the allowed workspaces" in error.message


def test_token_without_allow_list_accepts_any_workspace() -> None:
    verifier = WebhookVerifier(make_settings(TOKENS_ENV))
    assert verifier.verify(TOKEN_ANY, "NEW_TIME_ENTRY", OTHER_WS).method == "token"
    assert verifier.verify(TOKEN_ANY, "NEW_TIME_ENTRY", None).method == "token"


def test_a_jwt_shaped_token_is_compared_whole_never_decoded(public_pem: str) -> None:
    # TOKEN_NEW looks like a JWT and its "claims" are nonsense for an add-on; with add-on
    # verification on as well it must still be accepted as the opaque secret it is.
    verifier = WebhookVerifier(make_settings(TOKENS_ENV, addon_key=ADDON_KEY, pem=public_pem))
    assert verifier.verify(TOKEN_NEW, "NEW_TIME_ENTRY", WS) == Verified("token", None)


def test_token_check_is_fast() -> None:
    # The receiver verifies every request: a token check must stay in the microseconds.
    many = ",".join(f"NEW_TIME_ENTRY=token-{i:04d}-{'x' * 40}" for i in range(20))
    verifier = WebhookVerifier(make_settings(f"{many},{TOKEN_ANY}"))
    rounds = 5000
    started = time.perf_counter()
    for _ in range(rounds):
        verifier.verify(TOKEN_ANY, "NEW_TIME_ENTRY", WS)
    per_call = (time.perf_counter() - started) / rounds
    assert per_call < 200e-6, f"{per_call * 1e6:.1f} µs per verification"


# --- add-on JWTs ------------------------------------------------------------------------------


def test_valid_addon_jwt_is_accepted(
    addon_verifier: WebhookVerifier, sign: Callable[..., str]
) -> None:
    token = sign()
    assert addon_verifier.verify(token, "NEW_TIME_ENTRY", WS) == Verified("addon", WS)
    # An ignored event type, whose body is not read: the claim names the workspace.
    assert addon_verifier.verify(token, "NEW_PROJECT", None, body_read=False) == Verified(
        "addon", WS
    )


def test_addon_jwt_for_a_body_without_a_string_workspace_is_refused(
    addon_verifier: WebhookVerifier, sign: Callable[..., str]
) -> None:
    # The receiver passes None for a missing, null or non-string workspaceId.
    with pytest.raises(VerificationError) as info:
        addon_verifier.verify(sign(), "NEW_TIME_ENTRY", None)
    assert info.value.reason == "workspace"


def test_addon_jwt_without_exp_is_accepted_and_future_exp_too(
    addon_verifier: WebhookVerifier, sign: Callable[..., str]
) -> None:
    assert "exp" not in jwt.decode(sign(), options={"verify_signature": False})
    token = sign(exp=int(time.time()) + 3600)
    assert addon_verifier.verify(token, "NEW_TIME_ENTRY", WS).method == "addon"


def test_addon_jwt_and_tokens_together(public_pem: str, sign: Callable[..., str]) -> None:
    verifier = WebhookVerifier(
        make_settings(TOKENS_ENV, addon_key=ADDON_KEY, pem=public_pem, workspaces=(WS,))
    )
    assert verifier.verify(sign(), "TIME_ENTRY_DELETED", WS).method == "addon"
    assert verifier.verify(TOKEN_ANY, "TIME_ENTRY_DELETED", WS).method == "token"


def test_addon_jwt_is_refused_when_addon_verification_is_off(
    sign: Callable[..., str],
) -> None:
    verifier = WebhookVerifier(make_settings(TOKENS_ENV))
    assert refused(verifier, sign()).reason == "bad_token"


def test_alg_none_is_refused(addon_verifier: WebhookVerifier) -> None:
    unsigned = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(addon_claims())}."
    error = refused(addon_verifier, unsigned)
    assert error.reason == "addon_invalid"
    assert "RS256" in error.message


def test_hs256_signed_with_the_public_key_is_refused(
    addon_verifier: WebhookVerifier, public_pem: str
) -> None:
    # The classic key-confusion forgery: HMAC with the (public) PEM as secret. PyJWT refuses to
    # create it, so it is built by hand.
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(addon_claims())}"
    mac = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{_b64(mac)}"
    error = refused(addon_verifier, forged)
    assert error.reason == "addon_invalid"
    assert "RS256" in error.message


def test_other_rsa_algorithm_is_refused(
    addon_verifier: WebhookVerifier, sign: Callable[..., str]
) -> None:
    error = refused(addon_verifier, sign(algorithm="RS512"))
    assert error.reason == "addon_invalid" and "RS256" in error.message


def test_signature_from_another_key_is_refused(addon_verifier: WebhookVerifier) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    error = refused(addon_verifier, jwt.encode(addon_claims(), stranger, algorithm="RS256"))
    assert error.reason == "addon_invalid"
    assert "signature is not valid" in error.message


def test_tampered_claims_are_refused(
    addon_verifier: WebhookVerifier, sign: Callable[..., str]
) -> None:
    header, _payload, signature = sign().split(".")
    tampered = f"{header}.{_segment(addon_claims(workspaceId=OTHER_WS))}.{signature}"
    assert "signature is not valid" in refused(addon_verifier, tampered, workspace=None).message


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"iss": "clockify-dev"}, "not issued by Clockify"),
        ({"iss": None}, "lacks the 'iss' claim"),
        ({"type": "access"}, "not of type 'addon'"),
        ({"type": None}, "not of type 'addon'"),
        ({"sub": "someone-elses-addon"}, "another add-on"),
        ({"sub": None}, "lacks the 'sub' claim"),
        ({"workspaceId": None}, "lacks the 'workspaceId' claim"),
        ({"workspaceId": ""}, "lacks the 'workspaceId' claim"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iat": int(time.time()) + 3600}, "not valid yet"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
    ],
)
def test_wrong_claims_are_refused(
    addon_verifier: WebhookVerifier,
    sign: Callable[..., str],
    changes: dict[str, Any],
    fragment: str,
) -> None:
    error = refused(addon_verifier, sign(**changes))
    assert error.reason == "addon_invalid"
    assert fragment in error.message


def test_clockify_user_token_is_not_an_addon_token(
    addon_verifier: WebhookVerifier, sign: Callable[..., str]
) -> None:
    # A webhook authToken of the "access" kind, even if signed by the same key, is no add-on
    # token: its claims must not be trusted as such.
    token = sign(sub="64b7be7be0835b76d63969a7", type="access", workspaceId=None)
    assert refused(addon_verifier, token).reason == "addon_invalid"


def test_addon_workspace_allow_list(public_pem: str, sign: Callable[..., str]) -> None:
    verifier = WebhookVerifier(
        make_settings(addon_key=ADDON_KEY, pem=public_pem, workspaces=(OTHER_WS,))
    )
    error = refused(verifier, sign(), workspace=None)
    assert error.reason == "workspace"
    assert "not in the allowed workspaces" in error.message
    assert verifier.verify(sign(workspaceId=OTHER_WS), "NEW_TIME_ENTRY", OTHER_WS).method == (
        "addon"
    )


def test_payload_workspace_must_match_the_claim(
    addon_verifier: WebhookVerifier, sign: Callable[..., str]
) -> None:
    error = refused(addon_verifier, sign(), workspace=OTHER_WS)
    assert error.reason == "workspace"
    assert "differs from the add-on token's workspace" in error.message


@pytest.mark.parametrize(
    "token",
    [
        "abc.def.ghi",
        f"{_b64(b'[1]')}.{_segment(addon_claims())}.c2ln",  # header not an object
        f"{_segment({'alg': 'RS256'})}.{_segment({'a': 1})}.!!!",
        "eyJhbGciOiJSUzI1NiJ9.e30=.x",
    ],
)
def test_malformed_jwt_is_refused_clearly(addon_verifier: WebhookVerifier, token: str) -> None:
    error = refused(addon_verifier, token)
    assert error.reason in {"addon_invalid", "bad_token"}
    assert "malformed" in error.message or "does not match" in error.message


def test_malformed_jwt_message(addon_verifier: WebhookVerifier) -> None:
    error = refused(addon_verifier, "abc.def.ghi")
    assert error.message == "malformed add-on token: not a decodable JWT"


def test_not_jwt_shaped_value_with_addon_only(addon_verifier: WebhookVerifier) -> None:
    error = refused(addon_verifier, "just-some-token")
    assert error.reason == "bad_token"


# --- keys -------------------------------------------------------------------------------------


def test_bundled_clockify_public_key_loads_with_the_published_fingerprint() -> None:
    key = load_public_key(BUNDLED_ADDON_PUBLIC_KEY.read_text())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert hashlib.sha256(der).hexdigest() == (
        "0cebc449014cf940ad0763e204b29b3a2263abfa1ccd298347c9bd2db2708b16"
    )
    assert key.key_size == 2048


def test_bundled_key_is_the_default(sign: Callable[..., str]) -> None:
    # No PEM configured: the bundled Clockify key is used, so our test key's tokens fail.
    verifier = WebhookVerifier(make_settings(addon_key=ADDON_KEY))
    assert verifier.configured and verifier.addon_enabled
    assert "signature is not valid" in refused(verifier, sign()).message


@pytest.mark.parametrize(
    "pem", ["", "not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_invalid_public_key_is_a_configuration_error(pem: str) -> None:
    with pytest.raises(ConfigurationError, match="not a valid PEM public key"):
        WebhookVerifier(make_settings(addon_key=ADDON_KEY, pem=pem or "garbage"))


def test_non_rsa_public_key_is_a_configuration_error() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ConfigurationError, match="RSA"):
        WebhookVerifier(make_settings(addon_key=ADDON_KEY, pem=ec_pem))


# --- nothing leaks ----------------------------------------------------------------------------


def test_no_error_message_contains_a_token(public_pem: str, sign: Callable[..., str]) -> None:
    verifier = WebhookVerifier(
        make_settings(TOKENS_ENV, addon_key=ADDON_KEY, pem=public_pem, workspaces=(WS,))
    )
    unconfigured = WebhookVerifier(Settings())
    forged_sig = "ZmFrZQ"
    cases: list[tuple[WebhookVerifier, str, str, str | None]] = [
        (unconfigured, TOKEN_ANY, "NEW_TIME_ENTRY", WS),
        (verifier, "wrong-token-value-1234567890", "NEW_TIME_ENTRY", WS),
        (verifier, TOKEN_NEW[:-2], "NEW_TIME_ENTRY", WS),
        (verifier, TOKEN_UPDATED, "NEW_TIME_ENTRY", WS),
        # The event type header is caller text: even set to a token it is not echoed.
        (verifier, TOKEN_UPDATED, TOKEN_UPDATED, WS),
        (verifier, TOKEN_NEW, TOKEN_ANY, WS),
        (verifier, TOKEN_ANY, "NEW_TIME_ENTRY", OTHER_WS),
        (verifier, "abc.def.ghi", "NEW_TIME_ENTRY", WS),
        (verifier, sign(exp=int(time.time()) - 100), "NEW_TIME_ENTRY", WS),
        (verifier, sign(sub="other"), "NEW_TIME_ENTRY", WS),
        (verifier, sign(workspaceId=OTHER_WS), "NEW_TIME_ENTRY", OTHER_WS),
        (verifier, sign(), "NEW_TIME_ENTRY", OTHER_WS),
        (verifier, sign().rsplit(".", 1)[0] + "." + forged_sig, "NEW_TIME_ENTRY", WS),
        (verifier, f"{_segment({'alg': 'none'})}.{_segment(addon_claims())}.", "X", WS),
    ]
    for case_verifier, presented, event_type, workspace in cases:
        with pytest.raises(VerificationError) as info:
            case_verifier.verify(presented, event_type, workspace)
        error = info.value
        texts = [str(error), repr(error), error.message, *map(str, error.args)]
        for secret in (presented, *ALL_TOKENS):
            for text in texts:
                assert secret not in text, (error.reason, text)
        # Nor a recognisable piece of one (a leak of the payload or signature segment).
        for part in presented.split("."):
            if len(part) >= 8:
                assert all(part not in text for text in texts), (error.reason, text)
        # No chained PyJWT exception shows up in a traceback.
        assert error.__cause__ is None
        assert error.__context__ is None or error.__suppress_context__
