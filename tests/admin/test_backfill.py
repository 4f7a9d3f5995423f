"""``clockify-relay backfill`` with real Redis, a real worker and the sandbox: entries edited,
created and deleted in Clockify while no webhook arrived end up on Everit as Clockify has them;
a second backfill changes nothing; an interrupted backfill re-run ends the same; the Clockify
fake's rate limit is never hit."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clockify_relay.sandbox.server import SandboxServer
from tests.admin.clockify_env import ClockifyEnv, clockify_env  # noqa: F401
from tests.admin.test_redrive import _worker_env
from tests.fixture_loader import USER_ANNA, USER_MARKO, WORKSPACE_ID, fixture_json
from tests.processes import RelayProcess, start_worker, wait_until

pytestmark = pytest.mark.integration

PERIOD = ("--since", "2026-03-01", "--until", "2026-03-31")


@pytest.fixture
def worker(clockify_env: ClockifyEnv) -> Iterator[RelayProcess]:  # noqa: F811
    process = start_worker(_worker_env(clockify_env))
    yield process
    process.stop()


def _entry(entry_id: str, user: str, day: int, description: str) -> dict[str, Any]:
    base = fixture_json("NEW_TIME_ENTRY")
    return {
        **base,
        "id": entry_id,
        "userId": user,
        "user": None,
        "description": description,
        "timeInterval": {
            "start": f"2026-03-{day:02d}T08:00:00Z",
            "end": f"2026-03-{day:02d}T09:30:00Z",
        },
    }


def _descriptions(sandbox: SandboxServer) -> list[str]:
    return sorted(html.unescape(w["description"]) for w in sandbox.state()["everit"]["worklogs"])


def _settle(env: ClockifyEnv, expected: list[str]) -> None:
    wait_until(
        lambda: _descriptions(env.sandbox) == sorted(expected),
        timeout=40,
        what=f"Everit holding {sorted(expected)} (has {_descriptions(env.sandbox)})",
    )


def _queue_idle(env: ClockifyEnv) -> bool:
    import redis

    client = redis.Redis.from_url(env.redis_url)
    try:
        return client.hlen(f"{env.key_prefix}outbox") == 0
    finally:
        client.close()


def test_backfill_brings_targets_in_line_and_a_second_run_changes_nothing(
    clockify_env: ClockifyEnv,  # noqa: F811
    worker: RelayProcess,
) -> None:
    fake = clockify_env.fake
    for n, day in ((1, 3), (2, 4), (3, 5)):
        fake.put_time_entry(_entry(f"entry-{n}", USER_ANNA, day, f"first {n}"))
    first = clockify_env.json("backfill", *PERIOD)
    assert first["summary"] == {
        "listed": 3,
        "unchanged": 0,
        "updated": 0,
        "created": 3,
        "deleted": 0,
        "failed": 0,
    }
    _settle(clockify_env, ["first 1", "first 2", "first 3"])
    wait_until(lambda: _queue_idle(clockify_env), timeout=20, what="outbox empty")

    # Clockify changes while no webhook arrives: an edit, a new entry, a deletion.
    fake.put_time_entry(_entry("entry-1", USER_ANNA, 3, "edited 1"))
    fake.put_time_entry(_entry("entry-4", USER_ANNA, 6, "new 4"))
    assert fake.delete_time_entry("entry-2")
    second = clockify_env.json("backfill", *PERIOD)
    assert second["summary"] == {
        "listed": 3,
        "unchanged": 1,
        "updated": 1,
        "created": 1,
        "deleted": 1,
        "failed": 0,
    }
    _settle(clockify_env, ["edited 1", "first 3", "new 4"])
    wait_until(lambda: _queue_idle(clockify_env), timeout=20, what="outbox empty")

    calls = clockify_env.sandbox.state()["requests"]["everit"]
    third = clockify_env.json("backfill", *PERIOD)
    assert third["summary"]["unchanged"] == 3
    assert {k: v for k, v in third["summary"].items() if k not in ("listed", "unchanged")} == {
        "updated": 0,
        "created": 0,
        "deleted": 0,
        "failed": 0,
    }
    time.sleep(1.0)
    assert clockify_env.sandbox.state()["requests"]["everit"] == calls
    assert _descriptions(clockify_env.sandbox) == ["edited 1", "first 3", "new 4"]
    table = clockify_env.run("backfill", *PERIOD)
    assert table.exit_code == 0 and "unchanged" in table.output


def test_backfill_interrupted_half_way_and_rerun_ends_the_same(
    clockify_env: ClockifyEnv,  # noqa: F811
    worker: RelayProcess,
) -> None:
    fake = clockify_env.fake
    fake.put_time_entry(_entry("anna-1", USER_ANNA, 3, "anna 1"))
    fake.put_time_entry(_entry("anna-2", USER_ANNA, 4, "anna 2"))
    fake.put_time_entry(_entry("marko-1", USER_MARKO, 3, "marko 1"))
    # Marko's listing fails: the backfill stops after Anna (users are listed by email).
    clockify_env.sandbox.inject_fault(
        "clockify",
        status=400,
        count=1,
        path=f"/v1/workspaces/{WORKSPACE_ID}/user/{USER_MARKO}/time-entries",
    )
    interrupted = clockify_env.run("backfill", *PERIOD, "-o", "json")
    assert interrupted.exit_code == 1
    _settle(clockify_env, ["anna 1", "anna 2"])
    rerun = clockify_env.json("backfill", *PERIOD)
    assert rerun["summary"]["created"] == 1 and rerun["summary"]["failed"] == 0
    _settle(clockify_env, ["anna 1", "anna 2", "marko 1"])
    wait_until(lambda: _queue_idle(clockify_env), timeout=20, what="outbox empty")
    again = clockify_env.json("backfill", *PERIOD)
    assert again["summary"]["unchanged"] == 3 and again["summary"]["created"] == 0


def test_backfill_respects_the_clockify_rate_limit(
    clockify_env: ClockifyEnv,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = clockify_env.fake
    with fake.lock:
        fake.rate_per_second = 5
    monkeypatch.setenv("CLOCKIFY_API_RATE", "4")
    for n in range(8):
        fake.put_time_entry(_entry(f"rate-{n}", f"user-{n}", 3 + n, f"rate {n}"))
    started = time.monotonic()
    report = clockify_env.json("backfill", *PERIOD)
    assert report["summary"]["listed"] == 8 and report["summary"]["created"] == 8
    assert clockify_env.sandbox.state()["clockify"]["too_many_requests"] == 0
    # Nine calls (users, then eight listings) at 4/s: at least two seconds.
    assert time.monotonic() - started >= 1.9
