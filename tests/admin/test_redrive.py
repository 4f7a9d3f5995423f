"""``clockify-relay redrive``: a webhook refused while Redis was down (a real receiver on an
unreachable Redis answers 503, and the Clockify fake logs it as Clockify would) is ingested
from Clockify's log and delivered once by a real worker; a second redrive changes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from clockify_relay.admin.redrive import plan
from clockify_relay.admin.webhooks import LogRow
from clockify_relay.embedded_redis import free_port
from tests.admin.clockify_env import ClockifyEnv, clockify_env  # noqa: F401
from tests.fixture_loader import fixture_json
from tests.processes import RelayProcess, relay_env, start_receiver, start_worker, wait_until

pytestmark = pytest.mark.integration


def _worker_env(env: ClockifyEnv) -> dict[str, str]:
    extra = {k: v for k, v in env.environ().items() if not k.startswith("CLOCKIFY_API")}
    extra.pop("REDIS_URL")
    extra.pop("RELAY_KEY_PREFIX")
    return relay_env(env.redis_url, env.key_prefix, **extra)


@pytest.fixture
def worker(clockify_env: ClockifyEnv) -> Iterator[RelayProcess]:  # noqa: F811
    process = start_worker(_worker_env(clockify_env))
    yield process
    process.stop()


@pytest.fixture
def down_receiver(clockify_env: ClockifyEnv) -> Iterator[str]:  # noqa: F811
    """A receiver whose Redis is unreachable: every webhook gets 503."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    process, url = start_receiver(
        relay_env(dead, clockify_env.key_prefix, RELAY_REDIS_TIMEOUT="0.3")
    )
    yield url + "/webhooks/clockify"
    process.stop()


def _worklogs(env: ClockifyEnv) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = env.sandbox.state()["everit"]["worklogs"]
    return logs


def test_refused_during_a_redis_outage_redriven_once(
    clockify_env: ClockifyEnv,  # noqa: F811
    down_receiver: str,
    worker: RelayProcess,
) -> None:
    clockify_env.json("webhooks", "register", "--url", down_receiver)
    body = fixture_json("NEW_TIME_ENTRY")
    assert clockify_env.fake.deliver("NEW_TIME_ENTRY", body) == [503]
    assert _worklogs(clockify_env) == []

    first = clockify_env.json("redrive", "--since", "1h")
    assert first["summary"] == {"queued": 1, "duplicate": 0, "refused": 0, "skipped": 0}
    [row] = first["deliveries"]
    assert (row["event_type"], row["entry_id"], row["status_code"]) == (
        "NEW_TIME_ENTRY",
        body["id"],
        503,
    )
    wait_until(lambda: len(_worklogs(clockify_env)) == 1, timeout=30, what="worklog booked")

    second = clockify_env.json("redrive", "--since", "1h")
    assert second["summary"] == {"queued": 0, "duplicate": 1, "refused": 0, "skipped": 0}
    table = clockify_env.run("redrive", "--since", "1h")
    assert table.exit_code == 0 and "queued: 0, duplicate: 1" in table.output
    # Nothing more reaches Everit.
    time.sleep(1.0)
    assert len(_worklogs(clockify_env)) == 1


def test_redrive_refuses_what_the_receiver_would(clockify_env: ClockifyEnv) -> None:  # noqa: F811
    clockify_env.json("webhooks", "register", "--url", "https://relay.example/webhooks/clockify")
    hook = next(h for h in clockify_env.webhooks() if h["webhookEvent"] == "TIME_ENTRY_UPDATED")
    clockify_env.fake.record_log(hook["id"], "not json", 400)
    broken = {**fixture_json("TIME_ENTRY_UPDATED"), "id": "bad-one", "timeInterval": {}}
    clockify_env.fake.record_log(hook["id"], orjson.dumps(broken).decode(), 400)
    result = clockify_env.json("redrive", "--since", "1h", "--event-type", "TIME_ENTRY_UPDATED")
    assert result["summary"]["refused"] == 2 and result["summary"]["queued"] == 0
    reasons = [r["reason"] for r in result["deliveries"]]
    assert "body is not valid JSON" in reasons[0]
    assert reasons[1].startswith("TIME_ENTRY_UPDATED payload:")


def test_redrive_warns_beyond_clockify_log_retention(clockify_env: ClockifyEnv) -> None:  # noqa: F811
    result = clockify_env.run("redrive", "--since", "10d")
    assert result.exit_code == 0
    assert "7 days" in result.stderr


def _log(log_id: str, event: str, entry: str, status: int, at: str, body: str = "") -> LogRow:
    return LogRow(
        event, "hook", log_id, status, at, body or f'{{"id":"{entry}","v":"{log_id}"}}', ""
    )


def test_plan_skips_what_a_later_delivery_superseded() -> None:
    rows = [
        _log("a", "NEW_TIME_ENTRY", "e1", 503, "2026-01-01T10:00:00.000+00:00"),
        _log("b", "NEW_TIME_ENTRY", "e1", 202, "2026-01-01T10:01:00.000+00:00"),  # retry got in
        _log("c", "TIME_ENTRY_UPDATED", "e2", 503, "2026-01-01T10:00:00.000+00:00"),
        _log("d", "TIME_ENTRY_UPDATED", "e2", 503, "2026-01-01T10:05:00.000+00:00"),
        _log("e", "TIME_ENTRY_UPDATED", "e3", 401, "2026-01-01T10:00:00.000+00:00"),
        _log("f", "TIME_ENTRY_DELETED", "e3", 202, "2026-01-01T09:00:00.000+00:00"),  # earlier
    ]
    planned = {p.log_id: (p.outcome, p.reason) for p in plan(rows)}
    assert planned["a"] == ("skipped", "a later delivery of this entry succeeded")
    assert planned["c"] == ("skipped", "a later failed delivery of it is redriven")
    assert planned["d"] == ("", "")
    assert planned["e"] == ("", "")
    assert set(planned) == {"a", "c", "d", "e"}
    assert [p.log_id for p in plan(rows, ["TIME_ENTRY_UPDATED"])] == ["c", "e", "d"]
