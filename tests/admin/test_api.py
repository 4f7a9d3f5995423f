"""The admin HTTP API: token rules (fail closed), the DLQ/events operations over HTTP against real
Redis and the sandbox, and the OpenAPI document."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from clockify_relay.admin import tokens
from clockify_relay.admin.api import openapi_document
from clockify_relay.asgi import create_app
from clockify_relay.errors import RelayError
from clockify_relay.pipeline import delivery, trace
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, Settings
from tests.inline_worker import run_queued
from tests.pipeline.conftest import (  # noqa: F401  (fixtures are used by name)
    clean_sandbox,
    entry_payload,
    envelope,
    everit_section,
    worklogs,
)

SECRET = "admin-secret-for-tests-" + "0123456789abcdef" * 3


def token(**claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "tester", "iat": now, "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


def auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def unmapped(settings: Settings, clean_sandbox: SandboxServer) -> Settings:  # noqa: F811
    section = everit_section(clean_sandbox)
    section.pop("defaults")  # no Jira issue for any entry: deliveries fail with ConfigurationError
    return settings.with_changes(targets={"everit": section}, admin_jwt_secret=Secret(SECRET))


@pytest.fixture
def fixed(unmapped: Settings, clean_sandbox: SandboxServer) -> Settings:  # noqa: F811
    return unmapped.with_changes(targets={"everit": everit_section(clean_sandbox)})


@pytest.fixture
def api(unmapped: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(unmapped), headers=auth(token())) as client:
        yield client


def make_dead_letter(
    settings: Settings, event_type: str = "NEW_TIME_ENTRY", **changes: Any
) -> tuple[str, dict[str, Any]]:
    """What route + deliver do with an event that cannot be delivered (in-process)."""
    rt = Runtime(settings)
    event = envelope(event_type, entry_payload(event_type, **changes))
    trace.store_envelope(rt.redis, rt.keys, event, settings.trace_ttl)
    try:
        delivery.run_delivery(rt, "everit", event)
    except RelayError as exc:
        letter = rt.dlq.add("everit", event, exc, 1)
    else:  # pragma: no cover - the fixture config cannot map the entry
        raise AssertionError("delivery unexpectedly succeeded")
    rt.redis.close()
    return letter.id, event


# --- authentication -------------------------------------------------------------------------

ADMIN_CALLS = [
    ("GET", "/admin/dlq", None),
    ("GET", "/admin/dlq/abc", None),
    ("POST", "/admin/dlq/abc/replay", None),
    ("POST", "/admin/dlq/replay", {"all": True}),
    ("DELETE", "/admin/dlq/abc", None),
    ("POST", "/admin/dlq/purge", {"all": True}),
    ("GET", "/admin/events/abc", None),
    ("GET", "/admin/events", None),
    ("GET", "/admin/replays/abc", None),
    ("GET", "/admin/targets", None),
    ("POST", "/admin/targets/everit/pause", None),
    ("POST", "/admin/targets/everit/resume", None),
]


def _rsa_token() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return jwt.encode({"sub": "x", "exp": int(time.time()) + 300}, pem, algorithm="RS256")


def _unsigned_token() -> str:
    header = jwt.utils.base64url_encode(orjson.dumps({"alg": "none", "typ": "JWT"})).decode()
    claims = jwt.utils.base64url_encode(
        orjson.dumps({"sub": "x", "exp": int(time.time()) + 300})
    ).decode()
    return f"{header}.{claims}."


BAD_HEADERS = {
    "missing": {},
    "basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
    "bearer without token": {"Authorization": "Bearer "},
    "malformed": auth("not.a.jwt"),
    "garbage": auth("abc"),
    "expired": auth(token(exp=int(time.time()) - 120, iat=int(time.time()) - 600)),
    "wrong signature": auth(
        jwt.encode(
            {"sub": "x", "exp": int(time.time()) + 300},
            "some-other-secret-of-good-length!!",
            algorithm="HS256",
        )
    ),
    "alg none": auth(_unsigned_token()),
    "no exp": auth(token(exp=None)),
    "HS512": auth(
        jwt.encode({"sub": "x", "exp": int(time.time()) + 300}, SECRET, algorithm="HS512")
    ),
    "RS256": auth(_rsa_token()),
    "not yet valid": auth(token(nbf=int(time.time()) + 3600)),
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
def test_bad_tokens_are_refused_401(unmapped: Settings, case: str) -> None:
    letter_id, _ = make_dead_letter(unmapped)
    headers = BAD_HEADERS[case]
    with TestClient(create_app(unmapped)) as client:
        for method, path, body in ADMIN_CALLS:
            path = path.replace("abc", letter_id)
            response = client.request(method, path, headers=headers, json=body)
            assert response.status_code == 401, (case, method, path, response.text)
            assert response.json()["error"]
            assert response.headers["www-authenticate"].startswith("Bearer")
            presented = headers.get("Authorization", "").partition(" ")[2]
            if presented:
                assert presented not in response.text  # never echo the token
        # Nothing was replayed or purged by the refused calls.
        good = client.get("/admin/dlq", headers=auth(token())).json()
        assert [d["id"] for d in good["dead_letters"]] == [letter_id]
        assert good["dead_letters"][0]["attempts"] == 1


def test_token_error_messages_say_why(unmapped: Settings) -> None:
    with TestClient(create_app(unmapped)) as client:

        def why(case: str) -> str:
            message: str = client.get("/admin/dlq", headers=BAD_HEADERS[case]).json()["error"]
            return message

        assert "expired" in why("expired")
        assert "exp" in why("no exp")
        assert "signature" in why("wrong signature")
        assert "algorithm" in why("HS512")
        assert "missing" in why("missing")


def test_disabled_without_secret(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:  # no RELAY_ADMIN_JWT_SECRET
        for method, path, body in ADMIN_CALLS:
            response = client.request(method, path, headers=auth(token()), json=body)
            assert response.status_code == 503, (method, path)
            assert "disabled" in response.json()["error"]
        # The public description stays available; the webhook endpoint is untouched.
        assert client.get("/admin/openapi.json").status_code == 200


def test_empty_secret_is_disabled_too(settings: Settings) -> None:
    # An empty secret must count as "not set", whatever token comes with the request.
    with TestClient(create_app(settings.with_changes(admin_jwt_secret=Secret("")))) as client:
        assert client.get("/admin/dlq", headers=auth(token())).status_code == 503


# --- operations -----------------------------------------------------------------------------


def test_list_and_show(api: TestClient, unmapped: Settings) -> None:
    first, event = make_dead_letter(unmapped, id="a" * 24)
    second, _ = make_dead_letter(unmapped, "TIME_ENTRY_UPDATED", id="b" * 24)

    listing = api.get("/admin/dlq")
    assert listing.status_code == 200
    assert listing.json()["count"] == 2
    assert [d["id"] for d in listing.json()["dead_letters"]] == [first, second]
    row = listing.json()["dead_letters"][0]
    assert row["error_kind"] == "ConfigurationError" and row["entry_id"] == "a" * 24
    assert "envelope" not in row

    by_type = api.get("/admin/dlq", params={"event_type": "TIME_ENTRY_UPDATED"}).json()
    assert [d["id"] for d in by_type["dead_letters"]] == [second]
    assert api.get("/admin/dlq", params={"target": "blikk"}).json()["count"] == 0
    assert api.get("/admin/dlq", params={"since": "1h", "until": "1s"}).json()["count"] == 0
    assert api.get("/admin/dlq", params={"since": "2000-01-01"}).json()["count"] == 2
    bad = api.get("/admin/dlq", params={"since": "whenever"})
    assert bad.status_code == 400 and "not a time" in bad.json()["error"]

    detail = api.get(f"/admin/dlq/{first}")
    assert detail.status_code == 200
    assert detail.json()["envelope"] == event
    assert detail.json()["history"][0]["kind"] == "ConfigurationError"
    missing = api.get("/admin/dlq/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_replay_one_is_queued_202_polled_and_kept_until_a_worker_delivers_it(
    api: TestClient,
    unmapped: Settings,
    fixed: Settings,
    clean_sandbox: SandboxServer,  # noqa: F811
) -> None:
    letter_id, event = make_dead_letter(unmapped)

    queued = api.post(f"/admin/dlq/{letter_id}/replay")
    assert queued.status_code == 202
    [result] = queued.json()["results"]
    assert (result["state"], result["poll"]) == ("queued", f"/admin/replays/{letter_id}")
    assert api.get(result["poll"]).json()["state"] == "queued"
    assert api.post(f"/admin/dlq/{letter_id}/replay?force=maybe").status_code == 400
    assert api.post("/admin/dlq/nope/replay").status_code == 404
    assert api.get("/admin/replays/nope").status_code == 404

    rt = Runtime(unmapped)  # a worker still without the mapping: fails again
    assert run_queued(rt) == 1
    state = api.get(result["poll"]).json()
    assert (state["state"], state["in_dlq"]) == ("failed", True)
    assert "ConfigurationError" not in state["error"] and state["error"]
    letter = api.get(f"/admin/dlq/{letter_id}").json()
    assert letter["attempts"] == 2 and len(letter["history"]) == 2

    # The workers restarted with the fix; the API needs none of it.
    assert api.post(f"/admin/dlq/{letter_id}/replay").status_code == 202
    fixed_rt = Runtime(fixed)
    assert run_queued(fixed_rt) == 1
    assert api.get(result["poll"]).json() == {
        **api.get(result["poll"]).json(),
        "state": "delivered",
        "in_dlq": False,
    }
    assert api.get(f"/admin/dlq/{letter_id}").status_code == 404
    assert len(worklogs(clean_sandbox)) == 1
    assert api.post(f"/admin/dlq/{letter_id}/replay").status_code == 404
    assert event["event_id"] == result["event_id"]
    rt.redis.close()
    fixed_rt.redis.close()


def test_bulk_replay(
    unmapped: Settings,
    fixed: Settings,
    clean_sandbox: SandboxServer,  # noqa: F811
) -> None:
    ids = [make_dead_letter(unmapped, id=f"{n:024d}")[0] for n in range(3)]
    rt = Runtime(fixed)
    with TestClient(create_app(unmapped), headers=auth(token())) as client:
        for body in (
            {},
            {"ids": []},
            {"ids": "abc"},
            {"ids": [1]},
            {"ids": ids, "all": True},
            {"ids": ids, "target": "everit"},
            {"all": True, "force": True},
            {"all": "sure"},
            {"all": True, "since": "soon"},
        ):
            response = client.post("/admin/dlq/replay", json=body)
            assert response.status_code == 400, body
        for raw in (b"not json", b"[1, 2]", b""):
            assert client.post("/admin/dlq/replay", content=raw).status_code == 400

        dry = client.post("/admin/dlq/replay", json={"all": True, "dry_run": True})
        assert dry.status_code == 200
        assert [r["id"] for r in dry.json()["results"]] == ids and dry.json()["queued"] == 0
        assert client.get("/admin/dlq").json()["count"] == 3
        assert run_queued(rt) == 0

        answer = client.post("/admin/dlq/replay", json={"ids": [ids[0], "missing"]})
        assert answer.status_code == 202
        results = {r["id"]: r for r in answer.json()["results"]}
        assert results[ids[0]]["state"] == "queued"
        assert results["missing"]["ok"] is False and results["missing"]["found"] is False
        assert answer.json()["queued"] == 1 and answer.json()["missing"] == 1
        assert run_queued(rt) == 1

        rest = client.post("/admin/dlq/replay", json={"all": True, "target": "everit"}).json()
        assert [r["id"] for r in rest["results"]] == ids[1:]
        assert run_queued(rt) == 2
        assert client.get("/admin/dlq").json()["count"] == 0
    assert len(worklogs(clean_sandbox)) == 3
    rt.redis.close()


def test_targets_pause_list_resume_and_events_list(
    api: TestClient,
    unmapped: Settings,
) -> None:
    assert api.post("/admin/targets/nosuch/pause").status_code == 400
    paused = api.post("/admin/targets/everit/pause", json={"reason": "upgrade"})
    assert paused.status_code == 200 and paused.json()["by"] == "api:tester"
    listed = {t["target"]: t for t in api.get("/admin/targets").json()["targets"]}
    assert (listed["everit"]["state"], listed["everit"]["reason"]) == ("paused", "upgrade")
    letter_id, _ = make_dead_letter(unmapped)
    dry = api.post(f"/admin/dlq/{letter_id}/replay?dry_run=true").json()
    assert "everit is paused (upgrade" in dry["results"][0]["message"]
    resumed = api.post("/admin/targets/everit/resume").json()
    assert resumed == {"target": "everit", "was_paused": True, "released": 0}
    assert api.get("/admin/events?since=soon").status_code == 400
    assert api.get("/admin/events?limit=x").status_code == 400
    assert api.get("/admin/events?since=1h").json()["count"] >= 0


def test_delete_and_purge(api: TestClient, unmapped: Settings) -> None:
    one, _ = make_dead_letter(unmapped, id="1" * 24)
    two, _ = make_dead_letter(unmapped, "TIME_ENTRY_UPDATED", id="2" * 24)
    three, _ = make_dead_letter(unmapped, id="3" * 24)

    assert api.delete(f"/admin/dlq/{one}").json() == {"removed": 1, "id": one}
    assert api.delete(f"/admin/dlq/{one}").status_code == 404
    assert api.post("/admin/dlq/purge", json={}).status_code == 400  # never "everything"
    purged = api.post("/admin/dlq/purge", json={"all": True, "event_type": "TIME_ENTRY_UPDATED"})
    assert purged.json() == {"removed": 1, "missing": []}
    by_id = api.post("/admin/dlq/purge", json={"ids": [three, "ghost"]}).json()
    assert by_id == {"removed": 1, "missing": ["ghost"]}
    assert api.get("/admin/dlq").json()["count"] == 0
    assert two  # purged by filter above


def test_events(api: TestClient, unmapped: Settings) -> None:
    letter_id, event = make_dead_letter(unmapped)
    view = api.get(f"/admin/events/{event['event_id']}")
    assert view.status_code == 200
    body = view.json()
    assert body["envelope"] == event
    assert body["summary"]["event_type"] == "NEW_TIME_ENTRY"
    assert [r["outcome"] for r in body["trace"]] == ["failed"]
    assert body["trace"][0]["error_kind"] == "ConfigurationError"
    assert [d["id"] for d in body["dead_letters"]] == [letter_id]
    missing = api.get("/admin/events/never-seen")
    assert missing.status_code == 404 and missing.json()["error"]


def test_redis_down_is_503(unmapped: Settings) -> None:
    down = unmapped.with_changes(redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(down), headers=auth(token())) as client:
        response = client.get("/admin/dlq")
        assert response.status_code == 503
        assert "redis" in response.json()["error"]


# --- OpenAPI --------------------------------------------------------------------------------


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _app_paths(routes: list[Any], prefix: str = "") -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= _app_paths(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((prefix + route.path, method.lower()))
    return found


def test_openapi_document(unmapped: Settings) -> None:
    app = create_app(unmapped)
    with TestClient(app) as client:
        response = client.get("/admin/openapi.json")  # public: no token needed
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = orjson.loads(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] and document["info"]["version"]

    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert _app_paths(app.routes) == described  # every route, and nothing that is not served

    scheme = document["components"]["securitySchemes"]["adminBearer"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
            if path.startswith("/admin/") and path != "/admin/openapi.json":
                assert operation["security"] == [{"adminBearer": []}], (path, method)
                assert "401" in operation["responses"]
            for param in operation.get("parameters", []):
                if param["in"] == "path":
                    assert "{" + param["name"] + "}" in path and param["required"] is True
    for ref in _refs(document):
        assert _resolve(document, ref), ref
    assert openapi_document() == document
    assert SECRET not in response.text


def test_token_helpers_roundtrip() -> None:
    minted = tokens.mint_admin_token(SECRET, "ops", 60)
    assert tokens.verify_admin_token(SECRET, minted)["sub"] == "ops"
    with pytest.raises(tokens.TokenError):
        tokens.mint_admin_token("", "ops", 60)
    with pytest.raises(tokens.TokenError):
        tokens.mint_admin_token(SECRET, "ops", 0)
    old = tokens.mint_admin_token(SECRET, "ops", 60, now=time.time() - 3600)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify_admin_token(SECRET, old)


def test_options_and_unserved_methods_answer_405_listing_every_method_of_the_path(
    unmapped: Settings,
) -> None:
    app = create_app(unmapped)
    served: dict[str, set[str]] = {}
    for path, method in _app_paths(app.routes):
        served.setdefault(path, set()).add(method.upper())
    with TestClient(app) as client:
        for path, methods in served.items():
            concrete = re.sub(r"\{[^}]+\}", "abc", path)
            expected = methods | ({"HEAD"} if "GET" in methods else set())
            for probe in ("OPTIONS", "PATCH"):
                response = client.request(probe, concrete)
                assert response.status_code == 405, (probe, concrete)
                allowed = {m.strip() for m in response.headers["allow"].split(",")}
                assert allowed == expected, (probe, concrete)


def test_a_fixed_path_is_never_served_as_a_letter_id(api: TestClient) -> None:
    for path in ("/admin/dlq/replay", "/admin/dlq/purge"):
        response = api.get(path)
        assert response.status_code == 405, path
        assert response.headers["allow"] == "POST"
        assert "error" in response.json()
