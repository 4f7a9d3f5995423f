"""The delivery engine in real worker processes: receiver → Redis → Celery worker → sandbox."""

from __future__ import annotations

import html
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from clockify_relay.pipeline import trace
from clockify_relay.pipeline.dlq import DeadLetterQueue
from clockify_relay.redis_conn import Keys
from clockify_relay.sandbox.server import SandboxServer
from tests.fixture_loader import USER_ANNA, fixture_bytes, fixture_json
from tests.pipeline.conftest import worklogs
from tests.processes import RelayProcess, relay_env, start_receiver, start_worker, wait_until

TOKEN = "e2e-delivery-token"
pytestmark = pytest.mark.integration


def relay_config(
    tmp_path: Path, sandbox: SandboxServer, account: str | None = None, **retry: float
) -> Path:
    retry_lines = "\n".join(
        f"{k} = {v}"
        for k, v in {
            "max_attempts": 4,
            "base_delay": 0.2,
            "max_delay": 2,
            "max_countdown": 2,
            **retry,
        }.items()
    )
    users = f'\n[targets.everit.users."{USER_ANNA}"]\naccount_id = "{account}"\n' if account else ""
    path = tmp_path / "relay.toml"
    path.write_text(
        f"""
[retry]
{retry_lines}

[targets.everit]
base_url = "{sandbox.base_urls["everit"]}"
timeout = 2

[targets.everit.defaults]
issue_id = 10000
{users}"""
    )
    return path


class Relay:
    """Receiver + worker processes against the sandbox, and ways to look inside."""

    def __init__(
        self, redis_url: str, key_prefix: str, sandbox: SandboxServer, config: Path
    ) -> None:
        self.env = relay_env(
            redis_url,
            key_prefix,
            CLOCKIFY_WEBHOOK_TOKENS=TOKEN,
            RELAY_CONFIG=str(config),
            EVERIT_API_KEY=sandbox.config.everit_api_key,
            # The shortest the worker accepts here: a 2 s timeout holds the entry lock up to
            # 9 s, plus a 2 s countdown and a margin.
            RELAY_VISIBILITY_TIMEOUT="16",
        )
        self.sandbox = sandbox
        self.redis = redis.Redis.from_url(redis_url)
        self.keys = Keys(key_prefix)
        self.dlq = DeadLetterQueue(self.redis, self.keys)
        self.receiver, self.url = start_receiver(self.env)
        self.worker: RelayProcess = start_worker(self.env)

    def post(self, fixture: str, body: bytes | None = None) -> dict[str, Any]:
        event_type = fixture.split("__")[0]
        response = httpx.post(
            self.url + "/webhooks/clockify",
            content=body or fixture_bytes(fixture),
            headers={"Clockify-Webhook-Event-Type": event_type, "Clockify-Signature": TOKEN},
        )
        assert response.status_code in (200, 202), response.text
        result: dict[str, Any] = response.json()
        return result

    def outcomes(self, event_id: str) -> list[str]:
        return [
            r.get("outcome", "")
            for r in trace.read(self.redis, self.keys, event_id)[1]
            if r.get("stage") == "deliver"
        ]

    def settled(self, event_id: str) -> bool:
        done = {"applied", "deleted", "skipped", "dead-lettered"}
        return any(o in done for o in self.outcomes(event_id))

    def wait_settled(self, event_id: str, timeout: float = 30) -> list[str]:
        wait_until(lambda: self.settled(event_id), timeout=timeout, what=f"event {event_id}")
        return self.outcomes(event_id)

    def operator(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A CLI command from another process that has nothing but Redis: no config, no
        target credential (the workers hold those)."""
        env = {
            "PATH": os.environ.get("PATH", ""),
            "REDIS_URL": self.env["REDIS_URL"],
            "RELAY_KEY_PREFIX": self.env["RELAY_KEY_PREFIX"],
        }
        return subprocess.run(
            [sys.executable, "-m", "clockify_relay", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            cwd=tempfile.mkdtemp(),
        )

    def restart_worker(self) -> None:
        """As after a config change: a new worker process reads the new config."""
        self.worker.stop()
        self.worker = start_worker(self.env)

    def stop(self) -> None:
        self.worker.stop()
        self.receiver.stop()
        self.redis.close()


@pytest.fixture
def relay(
    redis_url: str, key_prefix: str, sandbox: SandboxServer, tmp_path: Path
) -> Iterator[Relay]:
    sandbox.reset()
    running = Relay(redis_url, key_prefix, sandbox, relay_config(tmp_path, sandbox))
    yield running
    running.stop()


def test_create_update_delete_through_a_worker(relay: Relay) -> None:
    created = relay.post("NEW_TIME_ENTRY")
    assert relay.wait_settled(created["event_id"])[-1] == "applied"
    [worklog] = worklogs(relay.sandbox)
    assert worklog["_headers"]["x-timezone"] == "Europe/Stockholm"

    updated = relay.post("TIME_ENTRY_UPDATED")
    assert relay.wait_settled(updated["event_id"])[-1] == "applied"
    [after] = worklogs(relay.sandbox)
    assert after["worklogId"] == worklog["worklogId"]
    assert after["description"] == html.unescape(fixture_json("TIME_ENTRY_UPDATED")["description"])

    # Clockify sends the same update again: 200 duplicate, nothing queued, nothing changed.
    assert relay.post("TIME_ENTRY_UPDATED")["status"] == "duplicate"

    deleted = relay.post("TIME_ENTRY_DELETED")
    assert relay.wait_settled(deleted["event_id"])[-1] == "deleted"
    assert worklogs(relay.sandbox) == []


def test_update_arriving_before_create(relay: Relay) -> None:
    updated = relay.post("TIME_ENTRY_UPDATED")
    created = relay.post("NEW_TIME_ENTRY")
    relay.wait_settled(updated["event_id"])
    assert relay.wait_settled(created["event_id"])[-1] == "skipped"
    [only] = worklogs(relay.sandbox)
    assert only["description"] == html.unescape(fixture_json("TIME_ENTRY_UPDATED")["description"])


def test_503_several_times_then_success(relay: Relay) -> None:
    relay.sandbox.inject_fault("everit", status=503, count=2)
    created = relay.post("NEW_TIME_ENTRY")
    outcomes = relay.wait_settled(created["event_id"])
    assert outcomes.count("failed") == 2
    assert outcomes[-1] == "applied"
    assert len(worklogs(relay.sandbox)) == 1
    assert relay.dlq.count() == 0


def test_400_goes_to_dlq_then_replay_delivers_once(
    relay: Relay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay.sandbox.inject_fault(
        "everit",
        status=400,
        count=1,
        body={
            "fieldErrors": [{"errorType": "InvalidByJira", "field": "issueId"}],
            "additionalErrors": [],
        },
    )
    created = relay.post("NEW_TIME_ENTRY")
    assert relay.wait_settled(created["event_id"])[-1] == "dead-lettered"
    [letter] = relay.dlq.list()
    assert letter.error_kind == "PermanentError"
    assert "InvalidByJira" in letter.error
    assert worklogs(relay.sandbox) == []

    result = relay.operator("dlq", "replay", letter.id, "--wait", "--timeout", "60", "-o", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    [replayed] = orjson.loads(result.stdout)["results"]
    assert (replayed["state"], replayed["ok"]) == ("delivered", True), replayed
    assert len(worklogs(relay.sandbox)) == 1
    assert relay.dlq.count() == 0
    # Replaying again is a no-op, never a second worklog.
    assert relay.post("NEW_TIME_ENTRY")["status"] == "duplicate"
    assert len(worklogs(relay.sandbox)) == 1


def test_config_error_479_then_fixed_config_and_replay(
    redis_url: str,
    key_prefix: str,
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox.reset()
    httpx.put(sandbox.url + "/_sandbox/everit/forbidden-accounts", json=["acc-without-license"])
    relay = Relay(
        redis_url,
        key_prefix,
        sandbox,
        relay_config(tmp_path, sandbox, account="acc-without-license"),
    )
    try:
        created = relay.post("NEW_TIME_ENTRY")
        assert relay.wait_settled(created["event_id"])[-1] == "dead-lettered"
        [letter] = relay.dlq.list()
        assert letter.status == 479

        # Replay with the config unchanged fails again and stays, with the attempt recorded
        # and the original error first in its history.
        again = relay.operator("dlq", "replay", letter.id, "--wait", "--timeout", "60")
        assert again.returncode == 1, again.stdout + again.stderr
        assert "failed" in again.stdout
        [still] = relay.dlq.list()
        assert still.attempts > letter.attempts
        assert still.history[0] == letter.history[0] and len(still.history) == 2
        assert worklogs(sandbox) == []

        # The operator fixes the mapping, the workers restart with it, and the replay from a
        # shell with nothing but Redis delivers once.
        relay_config(tmp_path, sandbox, account="acc-with-license")
        relay.restart_worker()
        fixed = relay.operator("dlq", "replay", "--all", "--wait", "--timeout", "60")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        [worklog] = worklogs(sandbox)
        assert worklog["_headers"]["x-everit-on-behalf-account"] == "acc-with-license"
        assert relay.dlq.count() == 0
    finally:
        relay.stop()


def test_worker_killed_mid_delivery_never_doubles(relay: Relay) -> None:
    # Everit takes 4 s to answer; the worker is SIGKILLed while it waits.
    relay.sandbox.inject_fault("everit", latency=4.0, count=1)
    created = relay.post("NEW_TIME_ENTRY")
    wait_until(lambda: relay.sandbox.state()["requests"]["everit"] >= 1, what="request sent")
    relay.worker.kill(signal.SIGKILL)
    relay.worker = start_worker(relay.env)
    # The unacked message comes back after the visibility timeout (16 s here) and finds the
    # create pending: Everit cannot be searched, so it is dead-lettered, never sent twice.
    wait_until(lambda: relay.settled(created["event_id"]), timeout=60, what="redelivery")
    booked = worklogs(relay.sandbox)
    assert len(booked) <= 1
    letters = relay.dlq.list()
    if booked:
        assert letters == [] or "unknown outcome" in letters[0].error
    else:
        [letter] = letters
        assert "unknown outcome" in letter.error
        assert letter.error_kind == "UnknownOutcomeError"


def test_no_secret_in_trace_or_logs(relay: Relay) -> None:
    relay.sandbox.inject_fault(
        "everit", status=401, count=1, body={"error": "bad key", "apiKey": "sandbox-everit-key"}
    )
    created = relay.post("NEW_TIME_ENTRY")
    relay.wait_settled(created["event_id"])
    _envelope, records = trace.read(relay.redis, relay.keys, created["event_id"])
    text = (
        orjson.dumps(records).decode()
        + orjson.dumps([letter.to_json() for letter in relay.dlq.list()]).decode()
    )
    assert "sandbox-everit-key" not in text
    assert TOKEN not in text
    logs = relay.worker.log() + relay.receiver.log()
    assert "sandbox-everit-key" not in logs
    assert TOKEN not in logs


def test_long_retry_after_is_parked_and_released_by_the_scheduler(
    redis_url: str, key_prefix: str, sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.reset()
    relay = Relay(redis_url, key_prefix, sandbox, relay_config(tmp_path, sandbox, max_countdown=1))
    relay.worker.stop()
    relay.worker = start_worker(relay.env, 1, "--beat")
    try:
        # Everit asks for 3 s: longer than a countdown may be here (1 s), so it is parked.
        sandbox.inject_fault("everit", status=503, count=1, retry_after=3)
        created = relay.post("NEW_TIME_ENTRY")
        wait_until(lambda: "parked" in relay.outcomes(created["event_id"]), what="parked")
        assert relay.outcomes(created["event_id"])[-1] == "parked"
        assert relay.wait_settled(created["event_id"], timeout=30)[-1] == "applied"
        assert len(worklogs(sandbox)) == 1
        assert relay.redis.zcard(relay.keys.parked) == 0
    finally:
        relay.stop()


def test_retries_exhausted_go_to_the_dlq(relay: Relay) -> None:
    relay.sandbox.inject_fault("everit", status=503, count=20)
    created = relay.post("NEW_TIME_ENTRY")
    outcomes = relay.wait_settled(created["event_id"], timeout=60)
    assert outcomes[-1] == "dead-lettered"
    assert outcomes.count("failed") == 4  # max_attempts in relay_config
    [letter] = relay.dlq.list()
    assert "retries exhausted" in letter.error
    assert letter.attempts == 4
    assert worklogs(relay.sandbox) == []


def test_pause_holds_events_without_dead_letters_and_resume_delivers_them_in_order(
    relay: Relay,
) -> None:
    paused = relay.operator("targets", "pause", "everit", "--reason", "upgrade")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    created = relay.post("NEW_TIME_ENTRY")
    updated = relay.post("TIME_ENTRY_UPDATED")
    for event in (created, updated):
        wait_until(lambda e=event: "held" in relay.outcomes(e["event_id"]), timeout=30, what="held")
    assert worklogs(relay.sandbox) == [] and relay.dlq.count() == 0
    listed = orjson.loads(relay.operator("targets", "list", "-o", "json").stdout)
    [everit] = [t for t in listed["targets"] if t["target"] == "everit"]
    assert (everit["state"], everit["held"]) == ("paused", 2)

    resumed = relay.operator("targets", "resume", "everit", "-o", "json")
    assert orjson.loads(resumed.stdout)["released"] == 2
    assert relay.wait_settled(created["event_id"])[-1] == "applied"
    assert relay.wait_settled(updated["event_id"])[-1] == "applied"
    [worklog] = worklogs(relay.sandbox)  # created, then updated: in order, once
    assert worklog["description"] == html.unescape(
        fixture_json("TIME_ENTRY_UPDATED")["description"]
    )
    listed_events = orjson.loads(relay.operator("events", "list", "-o", "json").stdout)
    by_id = {e["event_id"]: e for e in listed_events["events"]}
    assert by_id[created["event_id"]]["outcomes"] == {"everit": "applied"}
