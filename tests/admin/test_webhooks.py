"""``clockify-relay webhooks register | list | rotate | logs`` against the sandbox's Clockify fake
and real Redis; rotation end to end through a real receiver process, which picks the new token
up without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from clockify_relay.admin.webhooks import webhook_name
from clockify_relay.asgi import create_app
from clockify_relay.clockify.models import TIME_ENTRY_EVENTS
from clockify_relay.clockify.token_store import TokenStore, token_digest
from clockify_relay.embedded_redis import free_port
from clockify_relay.settings import Settings
from tests.admin.clockify_env import ClockifyEnv, clockify_env  # noqa: F401
from tests.fixture_loader import WORKSPACE_ID, fixture_bytes, fixture_json
from tests.processes import relay_env, start_receiver, wait_until

pytestmark = pytest.mark.integration

URL = "https://relay.example.com/webhooks/clockify"


def test_register_twice_creates_one_webhook_per_event_type(
    clockify_env: ClockifyEnv,  # noqa: F811
) -> None:
    first = clockify_env.json("webhooks", "register", "--url", URL)
    assert first["workspace"] == WORKSPACE_ID
    # Everit is the one enabled target: the seven time-entry events, no approvals.
    assert {r["event_type"] for r in first["webhooks"]} == TIME_ENTRY_EVENTS
    assert {r["action"] for r in first["webhooks"]} == {"created"}
    second = clockify_env.json("webhooks", "register", "--url", URL)
    assert {r["action"] for r in second["webhooks"]} == {"exists"}
    hooks = clockify_env.webhooks()
    assert sorted(h["webhookEvent"] for h in hooks) == sorted(TIME_ENTRY_EVENTS)
    assert all(h["name"] == webhook_name(h["webhookEvent"]) and h["url"] == URL for h in hooks)
    assert all(2 <= len(h["name"]) <= 30 for h in hooks)
    # Every token is stored hashed, bound to its event type; never in clear.
    store = clockify_env.store()
    stored = {(t.event_type, t.digest) for t in store.tokens()}
    assert stored == {(h["webhookEvent"], token_digest(h["authToken"])) for h in hooks}
    raw = store.client.hgetall(store.tokens_key)
    assert not any(h["authToken"].encode() in k for h in hooks for k in raw)


def test_register_dry_run_changes_nothing(clockify_env: ClockifyEnv) -> None:  # noqa: F811
    rows = clockify_env.json("webhooks", "register", "--url", URL, "--dry-run")["webhooks"]
    assert {r["action"] for r in rows} == {"would create"}
    assert clockify_env.webhooks() == []
    assert clockify_env.store().tokens() == []


def test_register_says_so_when_the_limit_is_hit(clockify_env: ClockifyEnv) -> None:  # noqa: F811
    for n in range(5):  # this admin has 5 of 10: seven more do not fit
        clockify_env.fake.add_webhook(WORKSPACE_ID, "NEW_PROJECT", f"https://other/{n}")
    result = clockify_env.run("webhooks", "register", "--url", URL)
    assert result.exit_code == 1
    assert "webhook limit" in result.stderr and "room for 5" in result.stderr
    assert "nothing was created" in result.stderr
    assert len(clockify_env.webhooks()) == 5


def test_list_shows_what_differs(clockify_env: ClockifyEnv) -> None:  # noqa: F811
    clockify_env.json("webhooks", "register", "--url", URL)
    rows = clockify_env.json("webhooks", "list")["webhooks"]
    assert {r["status"] for r in rows} == {"ok"}
    hooks = {h["webhookEvent"]: h for h in clockify_env.webhooks()}
    with clockify_env.fake.lock:
        clockify_env.fake._webhooks[hooks["NEW_TIME_ENTRY"]["id"]]["enabled"] = False
        clockify_env.fake._webhooks[hooks["TIME_ENTRY_SPLIT"]["id"]]["url"] = "https://else"
        del clockify_env.fake._webhooks[hooks["TIMER_STOPPED"]["id"]]
        clockify_env.fake._webhooks[hooks["TIME_ENTRY_DELETED"]["id"]]["authToken"] = "new-one"
    clockify_env.fake.add_webhook(WORKSPACE_ID, "NEW_PROJECT", "https://x", name="someone's")
    result = clockify_env.json("webhooks", "list", exit_code=1)
    status = {r["event_type"]: r["status"] for r in result["webhooks"] if r["expected"]}
    assert status["NEW_TIME_ENTRY"] == "disabled"
    assert status["TIME_ENTRY_SPLIT"].startswith("elsewhere")
    assert status["TIMER_STOPPED"] == "missing"
    assert status["TIME_ENTRY_DELETED"] == "token unknown to the relay"
    assert status["TIME_ENTRY_UPDATED"] == "ok"
    others = [r for r in result["webhooks"] if not r["expected"]]
    assert [(r["event_type"], r["status"]) for r in others] == [("NEW_PROJECT", "other")]


def test_logs_lists_deliveries(clockify_env: ClockifyEnv) -> None:  # noqa: F811
    clockify_env.json("webhooks", "register", "--url", URL)
    hook = next(h for h in clockify_env.webhooks() if h["webhookEvent"] == "NEW_TIME_ENTRY")
    clockify_env.fake.record_log(hook["id"], '{"id":"a"}', 503, "queue unavailable")
    clockify_env.fake.record_log(hook["id"], '{"id":"b"}', 202, "{}")
    every = clockify_env.json("webhooks", "logs", "--since", "1h")
    assert [(r["status_code"], r["request_body"]) for r in every] == [
        (503, '{"id":"a"}'),
        (202, '{"id":"b"}'),
    ]
    failed = clockify_env.json("webhooks", "logs", "--status", "failed")
    assert [r["status_code"] for r in failed] == [503]
    assert failed[0]["event_type"] == "NEW_TIME_ENTRY" and failed[0]["responded_at"]
    table = clockify_env.run("webhooks", "logs", "--status", "failed")
    assert table.exit_code == 0 and "503" in table.output


def test_rotate_skips_types_the_environment_binds(
    clockify_env: ClockifyEnv,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clockify_env.json("webhooks", "register", "--url", URL)
    monkeypatch.setenv("CLOCKIFY_WEBHOOK_TOKENS", "NEW_TIME_ENTRY=from-env")
    rows = clockify_env.json("webhooks", "rotate", "NEW_TIME_ENTRY")["rotated"]
    assert rows[0]["action"] == "skipped" and "CLOCKIFY_WEBHOOK_TOKENS" in rows[0]["note"]


# --- rotation through a real receiver --------------------------------------------------------


@pytest.fixture
def receiver(clockify_env: ClockifyEnv) -> Iterator[str]:  # noqa: F811
    env = relay_env(clockify_env.redis_url, clockify_env.key_prefix)
    process, url = start_receiver(env)
    try:
        yield url + "/webhooks/clockify"
    finally:
        process.stop()


def _post(url: str, token: str, event: str = "NEW_TIME_ENTRY") -> int:
    answer = httpx.post(
        url,
        content=fixture_bytes(event),
        headers={"Clockify-Signature": token, "Clockify-Webhook-Event-Type": event},
        timeout=10,
    )
    return answer.status_code


def test_rotate_new_token_accepted_old_refused_after_grace_without_restart(
    clockify_env: ClockifyEnv,  # noqa: F811
    receiver: str,
) -> None:
    clockify_env.json("webhooks", "register", "--url", receiver)
    # Clockify sends with the registered token: accepted at once (no restart, no env var).
    assert clockify_env.fake.deliver("NEW_TIME_ENTRY", fixture_json("NEW_TIME_ENTRY")) == [202]
    old = next(h for h in clockify_env.webhooks() if h["webhookEvent"] == "NEW_TIME_ENTRY")
    rows = clockify_env.json("webhooks", "rotate", "NEW_TIME_ENTRY", "--grace", "3")["rotated"]
    assert [(r["event_type"], r["action"]) for r in rows] == [("NEW_TIME_ENTRY", "rotated")]
    new = next(h for h in clockify_env.webhooks() if h["webhookEvent"] == "NEW_TIME_ENTRY")
    assert new["authToken"] != old["authToken"]
    # The new token within a moment (a refused token re-reads the store when the cache is
    # older than 0.25 s); the old one still within the grace.
    wait_until(lambda: _post(receiver, new["authToken"]) in (200, 202), timeout=1, what="new")
    assert _post(receiver, old["authToken"]) in (200, 202)
    # A token never bound to this type is refused, whatever the store holds for others.
    assert _post(receiver, new["authToken"], "TIME_ENTRY_UPDATED") == 401
    wait_until(lambda: _post(receiver, old["authToken"]) == 401, timeout=15, what="old refused")
    assert _post(receiver, new["authToken"]) in (200, 202)
    assert clockify_env.fake.deliver("NEW_TIME_ENTRY", fixture_json("NEW_TIME_ENTRY"))[0] in (
        200,
        202,
    )


# --- the receiver with the token store unreadable ------------------------------------------


def test_token_store_unreadable_is_503_not_401(settings: Settings) -> None:
    dead = settings.with_changes(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.2)
    with TestClient(create_app(dead)) as client:
        answer = client.post(
            "/webhooks/clockify",
            content=fixture_bytes("NEW_TIME_ENTRY"),
            headers={"Clockify-Signature": "tok", "Clockify-Webhook-Event-Type": "NEW_TIME_ENTRY"},
        )
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]


def test_env_tokens_win_for_the_types_they_name(
    settings: Settings, redis_client: object, key_prefix: str, redis_url: str
) -> None:
    import redis

    store = TokenStore(redis.Redis.from_url(redis_url), key_prefix)
    store.add("NEW_TIME_ENTRY", "stored-new")
    store.add("TIME_ENTRY_UPDATED", "stored-updated")
    from clockify_relay.settings import parse_tokens

    bound = settings.with_changes(webhook_tokens=parse_tokens("NEW_TIME_ENTRY=env-new"))
    with TestClient(create_app(bound)) as client:

        def post(token: str, event: str) -> int:
            return client.post(
                "/webhooks/clockify",
                content=fixture_bytes(event),
                headers={"Clockify-Signature": token, "Clockify-Webhook-Event-Type": event},
            ).status_code

        assert post("env-new", "NEW_TIME_ENTRY") == 202
        assert post("stored-new", "NEW_TIME_ENTRY") == 401  # the env var names this type
        assert post("stored-updated", "TIME_ENTRY_UPDATED") == 202
        assert post("stored-updated", "NEW_TIME_ENTRY") == 401
        store.rotate("TIME_ENTRY_UPDATED", "rotated-updated", grace=0.0)
        time.sleep(0.3)
        assert post("rotated-updated", "TIME_ENTRY_UPDATED") in (200, 202)
        assert post("stored-updated", "TIME_ENTRY_UPDATED") == 401
