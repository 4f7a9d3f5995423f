"""The Clockify REST client against the sandbox's Clockify fake over real HTTP: pacing and
Clockify's "Too many requests" answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from clockify_relay.clockify.client import ClockifyClient
from clockify_relay.errors import TransientError
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, Settings, load_settings
from tests.fixture_loader import ENTRY_MAIN, WORKSPACE_ID, fixture_json

pytestmark = pytest.mark.integration

TOO_MANY = {"message": "Too many requests", "code": 429}


@pytest.fixture
def clockify(
    settings: Settings, sandbox: SandboxServer, redis_client: redis.Redis
) -> Iterator[ClockifyClient]:
    sandbox.reset()
    sandbox.sandbox.fakes["clockify"].put_time_entry(fixture_json("NEW_TIME_ENTRY"))  # type: ignore[attr-defined]
    client = ClockifyClient(
        settings.with_changes(
            clockify_api_key=Secret(sandbox.config.clockify_api_key),
            clockify_api_url=sandbox.base_urls["clockify"],
        ),
        redis_client,
    )
    yield client
    client.close()


def test_api_key_default_rate_is_below_the_add_on_limit() -> None:
    # 50/s is documented for add-on tokens (X-Addon-Token); the relay reads with X-Api-Key.
    assert load_settings({}).clockify_rate_per_second == 10
    assert load_settings({"CLOCKIFY_API_RATE": "50"}).clockify_rate_per_second == 50


def test_reads_are_paced_at_the_default_rate(clockify: ClockifyClient) -> None:
    started = time.monotonic()
    for _ in range(6):
        assert clockify.get_time_entry(WORKSPACE_ID, ENTRY_MAIN) is not None
    # Six reads at 10/s take at least five intervals of 0.1 s, wherever they start.
    assert time.monotonic() - started >= 0.5


@pytest.mark.parametrize("status", [200, 403, 404, 429])
@pytest.mark.parametrize("body", [TOO_MANY, "Too many requests"], ids=["json", "text"])
def test_too_many_requests_is_transient_whatever_the_status(
    clockify: ClockifyClient, sandbox: SandboxServer, status: int, body: Any
) -> None:
    sandbox.inject_fault("clockify", status=status, body=body, count=1)
    with pytest.raises(TransientError) as info:
        clockify.get_time_entry(WORKSPACE_ID, ENTRY_MAIN)
    assert "Too many requests" in str(info.value)
    assert sandbox.config.clockify_api_key not in str(info.value)
    # The next read, no longer refused, gets the entry.
    assert clockify.get_time_entry(WORKSPACE_ID, ENTRY_MAIN) is not None


# -- users, per-user entries, webhooks ---------------------------------------------------------


def _fake(sandbox: SandboxServer) -> Any:
    return sandbox.sandbox.fakes["clockify"]


def test_lists_users_and_pages_time_entries(
    clockify: ClockifyClient, sandbox: SandboxServer
) -> None:
    fake = _fake(sandbox)
    base = fixture_json("NEW_TIME_ENTRY")
    for n in range(7):
        fake.put_time_entry(
            {
                **base,
                "id": f"paged-{n}",
                "userId": "u-paged",
                "user": None,
                "timeInterval": {
                    "start": f"2024-02-0{n + 1}T08:00:00Z",
                    "end": f"2024-02-0{n + 1}T09:00:00Z",
                },
            }
        )
    users = {u["id"] for u in clockify.list_users(WORKSPACE_ID, page_size=1)}
    assert "u-paged" in users and base["userId"] in users
    entries = list(
        clockify.list_user_time_entries(
            WORKSPACE_ID,
            "u-paged",
            datetime(2024, 2, 2, tzinfo=UTC),
            datetime(2024, 2, 6, 23, tzinfo=UTC),
            page_size=2,
        )
    )
    assert [e["id"] for e in entries] == [f"paged-{n}" for n in (5, 4, 3, 2, 1)]


def test_webhook_calls(clockify: ClockifyClient, sandbox: SandboxServer) -> None:
    hook = clockify.create_webhook(
        WORKSPACE_ID, "relay new entry", "https://r.example/x", "NEW_TIME_ENTRY"
    )
    assert hook["authToken"] and hook["triggerSourceType"] == "WORKSPACE_ID"
    assert [h["id"] for h in clockify.list_webhooks(WORKSPACE_ID)] == [hook["id"]]
    assert clockify.get_webhook(WORKSPACE_ID, hook["id"])["url"] == "https://r.example/x"
    rotated = clockify.generate_webhook_token(WORKSPACE_ID, hook["id"])
    assert rotated["authToken"] != hook["authToken"]
    fake = _fake(sandbox)
    for status in (503, 200, 500):
        fake.record_log(hook["id"], '{"id":"x"}', status)
    logs = list(clockify.webhook_logs(WORKSPACE_ID, hook["id"], status="FAILED", page_size=1))
    assert [e["statusCode"] for e in logs] == [503, 500]
    assert clockify.current_user()["id"] == hook["userId"]
    clockify.delete_webhook(WORKSPACE_ID, hook["id"])
    assert clockify.list_webhooks(WORKSPACE_ID) == []


def test_listing_retries_too_many_requests(
    clockify: ClockifyClient, sandbox: SandboxServer
) -> None:
    sandbox.inject_fault("clockify", status=429, body=TOO_MANY, count=2)
    assert clockify.list_webhooks(WORKSPACE_ID) == []
