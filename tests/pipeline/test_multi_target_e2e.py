"""Everit, Blikk and Tracket at once through real processes: receiver → Redis → Celery workers →
the sandbox's fakes over HTTP. What Blikk's fake measured (429s, peak requests per second) is
asserted, never assumed."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from click.testing import CliRunner

from clockify_relay.cli import main
from clockify_relay.pipeline import trace
from clockify_relay.pipeline.dlq import DeadLetterQueue
from clockify_relay.pipeline.outbox import Outbox, Outgoing
from clockify_relay.pipeline.runtime import reset_runtime
from clockify_relay.redis_conn import Keys
from clockify_relay.sandbox.relay_config import sandbox_env
from clockify_relay.sandbox.server import SandboxServer
from tests.fixture_loader import (
    ENTRY_MAIN,
    ENTRY_MIDNIGHT,
    PROJECT_WEBSITE,
    USER_ANNA,
    fixture_bytes,
    fixture_json,
)
from tests.processes import RelayProcess, relay_env, start_receiver, start_worker, wait_until

TOKEN = "e2e-multi-target-token"
TARGETS = ("everit", "blikk", "tracket", "organi")
DONE = frozenset({"applied", "deleted", "skipped", "dead-lettered"})
BLIKK_ANNA = 3
pytestmark = pytest.mark.integration


def write_config(path: Path, *, blikk_user: bool = True) -> Path:
    """The relay's TOML: all four targets on; endpoints and secrets come from the env."""
    blikk_users = f'\n[targets.blikk.users."{USER_ANNA}"]\nuser_id = {BLIKK_ANNA}\n'
    path.write_text(
        f"""
[retry]
max_attempts = 4
base_delay = 0.2
max_delay = 5
max_countdown = 5

[targets.everit]
timeout = 3

[targets.everit.defaults]
issue_id = 10000

[targets.blikk]
timeout = 3

[targets.blikk.defaults]
activity_id = 1
time_code_id = 1
time_article_id = 1

[targets.blikk.projects."{PROJECT_WEBSITE}"]
project_id = 1
{blikk_users if blikk_user else ""}
[targets.tracket]
timeout = 3

[targets.tracket.defaults]
item_id = "sandbox-item"
user_id = "sandbox-user"

[targets.organi]
timeout = 3
cache_id = "e2e-cache"

[targets.organi.defaults]
author = "sandbox-author"
worklog_type = 1
performance_type = 1
"""
    )
    return path


class Relay:
    """A receiver and ``workers`` worker processes (concurrency 1 each) against the sandbox."""

    def __init__(
        self,
        redis_url: str,
        key_prefix: str,
        sandbox: SandboxServer,
        config: Path,
        workers: int = 1,
    ) -> None:
        self.env = relay_env(
            redis_url,
            key_prefix,
            CLOCKIFY_WEBHOOK_TOKENS=TOKEN,
            RELAY_CONFIG=str(config),
            RELAY_VISIBILITY_TIMEOUT="60",  # Blikk: a 30 s rate wait and two 3 s requests
            **sandbox_env(sandbox.config, sandbox.base_urls),
        )
        self.sandbox = sandbox
        self.redis = redis.Redis.from_url(redis_url)
        self.keys = Keys(key_prefix)
        self.dlq = DeadLetterQueue(self.redis, self.keys)
        # Started together, waited for one by one: startup overlaps.
        self.workers = [
            RelayProcess(["worker", "--concurrency", "1"], self.env).start() for _ in range(workers)
        ]
        try:
            for worker in self.workers:
                worker.wait_for_log("ready.", timeout=60)
            self.receiver, self.url = start_receiver(self.env)
        except BaseException:
            for worker in self.workers:
                worker.stop()
            raise
        self.http = httpx.Client(timeout=10)

    def post(self, event_type: str, body: bytes) -> str:
        response = self.http.post(
            self.url + "/webhooks/clockify",
            content=body,
            headers={"Clockify-Webhook-Event-Type": event_type, "Clockify-Signature": TOKEN},
        )
        assert response.status_code in (200, 202), response.text
        result = response.json()
        assert result["status"] != "duplicate", result
        return str(result["event_id"])

    def post_fixture(self, fixture: str) -> str:
        return self.post(fixture.split("__")[0], fixture_bytes(fixture))

    def records(self, event_id: str, target: str) -> list[dict[str, Any]]:
        return [
            r
            for r in trace.read(self.redis, self.keys, event_id)[1]
            if r.get("stage") == "deliver" and r.get("target") == target
        ]

    def outcomes(self, event_id: str, target: str) -> list[str]:
        return [str(r.get("outcome")) for r in self.records(event_id, target)]

    def finals(self, event_id: str) -> dict[str, str]:
        """The terminal outcome per target, for the targets that have one."""
        result: dict[str, str] = {}
        for target in TARGETS:
            done = [o for o in self.outcomes(event_id, target) if o in DONE]
            if done:
                result[target] = done[-1]
        return result

    def wait(
        self, event_id: str, targets: tuple[str, ...] = TARGETS, timeout: float = 30
    ) -> dict[str, str]:
        wait_until(
            lambda: set(targets) <= set(self.finals(event_id)),
            timeout=timeout,
            what=f"event {event_id} on {', '.join(targets)}",
        )
        return self.finals(event_id)

    def stop(self) -> None:
        self.http.close()
        for worker in self.workers:
            worker.stop()
        self.receiver.stop()
        self.redis.close()


@pytest.fixture
def make_relay(
    redis_url: str, key_prefix: str, sandbox: SandboxServer, tmp_path: Path
) -> Iterator[Any]:
    started: list[Relay] = []

    def make(workers: int = 1, *, blikk_user: bool = True) -> Relay:
        sandbox.reset()
        config = write_config(tmp_path / "relay.toml", blikk_user=blikk_user)
        relay = Relay(redis_url, key_prefix, sandbox, config, workers)
        started.append(relay)
        return relay

    yield make
    for relay in started:
        relay.stop()


def everit_worklogs(sandbox: SandboxServer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sandbox.state()["everit"]["worklogs"]
    return result


def blikk_reports(sandbox: SandboxServer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sandbox.state()["blikk"]["timereports"]
    return sorted(result, key=lambda r: (r["internalComment"], r["date"]))


def tracket_worklogs(sandbox: SandboxServer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sandbox.state()["tracket"]["worklogs"]
    return result


def blikk_of(sandbox: SandboxServer, entry_id: str) -> list[tuple[str, float]]:
    """(date, hours) of the Blikk reports carrying an entry's marker."""
    return [
        (r["date"], r["hours"])
        for r in blikk_reports(sandbox)
        if r["internalComment"] == f"clockify:{entry_id}"
    ]


def test_create_update_delete_reach_every_target(make_relay: Any) -> None:
    relay: Relay = make_relay()
    sandbox = relay.sandbox

    created = relay.post_fixture("NEW_TIME_ENTRY")
    assert relay.wait(created) == dict.fromkeys(TARGETS, "applied")
    [worklog] = everit_worklogs(sandbox)
    [report] = blikk_reports(sandbox)
    [tracket] = tracket_worklogs(sandbox)
    assert worklog["durationInSeconds"] == 5400
    assert (report["date"], report["clockStart"], report["hours"]) == ("2026-03-10", "09:00", 1.5)
    assert report["internalComment"] == f"clockify:{ENTRY_MAIN}"
    assert (tracket["worklogDate"], tracket["worklogMinutes"]) == ("2026-03-10T09:00:00+01:00", 90)

    updated = relay.post_fixture("TIME_ENTRY_UPDATED")
    assert relay.wait(updated) == dict.fromkeys(TARGETS, "applied")
    [worklog2] = everit_worklogs(sandbox)
    [report2] = blikk_reports(sandbox)
    [tracket2] = tracket_worklogs(sandbox)
    assert (worklog2["worklogId"], worklog2["durationInSeconds"]) == (worklog["worklogId"], 7200)
    assert (report2["id"], report2["hours"]) == (report["id"], 2.0)
    assert (tracket2["worklogId"], tracket2["worklogMinutes"]) == (tracket["worklogId"], 120)

    deleted = relay.post_fixture("TIME_ENTRY_DELETED")
    assert relay.wait(deleted) == dict.fromkeys(TARGETS, "deleted")
    assert everit_worklogs(sandbox) == []
    assert blikk_reports(sandbox) == []
    assert tracket_worklogs(sandbox) == []
    assert relay.dlq.count() == 0


def distinct_entry(index: int) -> tuple[str, bytes]:
    """A NEW_TIME_ENTRY body of its own entry (id, description and start differ)."""
    body = fixture_json("NEW_TIME_ENTRY")
    entry_id = f"69b00a1e5d4c3b2a19f9{index:04x}"
    body["id"] = entry_id
    body["description"] = f"Entry number {index}"
    minute = index % 60
    body["timeInterval"] = {
        "start": f"2026-03-10T07:{minute:02d}:00Z",
        "end": f"2026-03-10T08:{minute:02d}:00Z",
        "duration": "PT1H",
        "timeZone": "Europe/Stockholm",
    }
    return entry_id, orjson.dumps(body)


def test_four_workers_hammering_blikk_stay_under_its_rate_limit(make_relay: Any) -> None:
    relay: Relay = make_relay(workers=4)
    entries = [distinct_entry(i) for i in range(20)]
    events = {entry_id: relay.post("NEW_TIME_ENTRY", body) for entry_id, body in entries}
    for event_id in events.values():
        relay.wait(event_id, timeout=60)

    sandbox = relay.sandbox
    # Every entry booked once, in every target.
    assert sorted(r["internalComment"] for r in blikk_reports(sandbox)) == sorted(
        f"clockify:{entry_id}" for entry_id in events
    )
    assert all(relay.finals(e) == dict.fromkeys(TARGETS, "applied") for e in events.values())
    assert len(everit_worklogs(sandbox)) == len(tracket_worklogs(sandbox)) == len(events)
    # What Blikk's fake measured: never refused, never more than four in any one second.
    blikk = sandbox.state()["blikk"]
    assert blikk["rejected_429"] == 0
    assert 1 <= blikk["max_requests_in_any_second"] <= 4
    assert sum(blikk["requests_per_token"].values()) >= len(events) + 1  # creates + a token
    assert not [e for e in events.values() if "failed" in relay.outcomes(e, "blikk")]
    assert relay.dlq.count() == 0


def test_429_from_blikk_is_retried_after_the_wait(make_relay: Any) -> None:
    relay: Relay = make_relay()
    sandbox = relay.sandbox
    # A first delivery takes the access token, so the fault below hits a time report call.
    relay.wait(relay.post_fixture("NEW_TIME_ENTRY"))

    sandbox.inject_fault("blikk", status=429, count=1, retry_after=2, body={"waitInSeconds": 2})
    event_id = relay.post_fixture("NEW_TIME_ENTRY__midnight_stockholm")
    assert relay.wait(event_id) == dict.fromkeys(TARGETS, "applied")

    records = relay.records(event_id, "blikk")
    assert [r["outcome"] for r in records] == ["failed", "retry", "applied"]
    failed, retry, applied = records
    assert failed["status"] == 429
    assert failed["error_kind"] == "TransientError"
    assert retry["delay"] == 2.0  # Blikk's waitInSeconds, not a backoff of our own
    assert applied["attempt"] == 2
    # The retry was not sent before the wait was over (a correctness bound, not a speed one).
    assert applied["at"] - failed["at"] >= 2.0 - 0.05
    # Both local days booked, once each, and no report doubled.
    assert blikk_of(sandbox, ENTRY_MIDNIGHT) == [("2026-03-10", 0.75), ("2026-03-11", 0.75)]
    assert len(blikk_reports(sandbox)) == 3
    assert sandbox.state()["faults"] == []


def test_token_expiry_mid_run_is_refreshed_once_and_nothing_is_lost(make_relay: Any) -> None:
    relay: Relay = make_relay()
    sandbox = relay.sandbox
    relay.wait(relay.post_fixture("NEW_TIME_ENTRY"))
    assert sandbox.state()["blikk"]["tokens_issued"] == 1

    expired = httpx.post(sandbox.url + "/_sandbox/blikk/tokens/expire")
    assert expired.json() == {"expired": 1}
    later = [relay.post_fixture("TIME_ENTRY_UPDATED")]
    later.append(relay.post_fixture("NEW_TIME_ENTRY__midnight_stockholm"))
    for event_id in later:
        assert relay.wait(event_id) == dict.fromkeys(TARGETS, "applied")
        # The refresh happened inside the call: no failed attempt, no retry.
        assert relay.outcomes(event_id, "blikk") == ["applied"]

    assert sandbox.state()["blikk"]["tokens_issued"] == 2
    assert blikk_of(sandbox, ENTRY_MAIN) == [("2026-03-10", 2.0)]
    assert blikk_of(sandbox, ENTRY_MIDNIGHT) == [("2026-03-10", 0.75), ("2026-03-11", 0.75)]
    worker_log = relay.workers[0].log()
    assert worker_log.count("refreshing the access token") == 1
    assert relay.dlq.count() == 0


def test_unmapped_blikk_user_dead_letters_then_replays_once_mapped(
    make_relay: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay: Relay = make_relay(blikk_user=False)
    sandbox = relay.sandbox
    event_id = relay.post_fixture("NEW_TIME_ENTRY")
    assert relay.wait(event_id) == {
        "everit": "applied",
        "blikk": "dead-lettered",
        "tracket": "applied",
        "organi": "applied",
    }
    [letter] = relay.dlq.list()
    assert letter.target == "blikk"
    assert letter.error_kind == "ConfigurationError"
    assert USER_ANNA in letter.error
    assert "Anna Lindqvist" in letter.error
    assert blikk_reports(sandbox) == []

    # The operator adds the mapping, restarts the workers and replays the letter; the CLI
    # needs only Redis: the workers deliver it.
    write_config(tmp_path / "relay.toml", blikk_user=True)
    for worker in relay.workers:
        worker.stop()
    relay.workers = [start_worker(relay.env)]
    monkeypatch.setenv("REDIS_URL", relay.env["REDIS_URL"])
    monkeypatch.setenv("RELAY_KEY_PREFIX", relay.env["RELAY_KEY_PREFIX"])
    monkeypatch.delenv("RELAY_CONFIG", raising=False)
    reset_runtime()
    result = CliRunner().invoke(main, ["dlq", "replay", letter.id, "--wait", "--timeout", "60"])
    assert result.exit_code == 0, result.output
    assert blikk_of(sandbox, ENTRY_MAIN) == [("2026-03-10", 1.5)]
    assert relay.dlq.count() == 0
    assert relay.finals(event_id)["blikk"] == "applied"

    # Replaying again finds nothing to replay; the report is not doubled.
    again = CliRunner().invoke(main, ["dlq", "replay", letter.id])
    assert again.exit_code != 0
    assert len(blikk_reports(sandbox)) == 1
    assert len(everit_worklogs(sandbox)) == len(tracket_worklogs(sandbox)) == 1
    reset_runtime()


def outbox_of(relay: Relay) -> Outbox:
    return Outbox(relay.redis, relay.keys)


def test_an_event_taken_by_a_worker_main_process_that_dies_is_delivered_once(
    make_relay: Any,
) -> None:
    relay: Relay = make_relay()
    [worker] = relay.workers
    assert worker.process is not None
    # Stop the worker's main process only: its BRPOP is outstanding, so Redis hands it the next
    # message, which kombu has not recorded as unacked yet when the process is killed.
    os.kill(worker.process.pid, signal.SIGSTOP)
    event_id = relay.post_fixture("NEW_TIME_ENTRY")
    wait_until(
        lambda: relay.redis.llen(relay.keys.queue) == 0,
        timeout=10,
        what="the stopped worker to take the message off the queue",
    )
    worker.kill(signal.SIGKILL)
    assert relay.redis.hlen(f"{relay.keys.prefix}unacked") == 0  # kombu never knew of it
    # A new worker with the scheduler: the outbox finds the message lost and queues it again.
    relay.env["RELAY_LOST_AFTER"] = "1"
    relay.workers = [start_worker(relay.env, 1, "--beat")]
    assert relay.wait(event_id, timeout=60) == dict.fromkeys(TARGETS, "applied")
    assert len(everit_worklogs(relay.sandbox)) == 1
    assert len(blikk_reports(relay.sandbox)) == 1
    assert len(tracket_worklogs(relay.sandbox)) == 1
    wait_until(lambda: outbox_of(relay).pending() == 0, what="the outbox to empty")
    assert "queued again" in relay.workers[0].log()


def test_a_backlog_older_than_the_lost_deadline_is_not_queued_again(make_relay: Any) -> None:
    relay: Relay = make_relay()
    for worker in relay.workers:
        worker.stop()
    # No worker: 12 events wait in the queue while a scheduler sweeps, well past the deadline.
    relay.env["RELAY_LOST_AFTER"] = "1"
    scheduler = RelayProcess(["scheduler"], relay.env).start()
    try:
        bodies = [fixture_json("NEW_TIME_ENTRY") | {"id": f"backlog{i:016d}"} for i in range(12)]
        events = [relay.post("NEW_TIME_ENTRY", orjson.dumps(body)) for body in bodies]
        mark = f"{relay.keys.outbox('mark')}"
        first = wait_until(lambda: relay.redis.hget(mark, "at"), what="a first sweep")
        wait_until(
            lambda: float(relay.redis.hget(mark, "at") or 0) >= float(first) + 2,
            timeout=30,
            what="sweeps two deadlines later",
        )
        assert relay.redis.llen(relay.keys.queue) == 12  # nothing doubled
        relay.workers = [start_worker(relay.env, 1)]
        for event_id in events:
            relay.wait(event_id, timeout=60)
        assert len(everit_worklogs(relay.sandbox)) == 12
        assert len(tracket_worklogs(relay.sandbox)) == 12
        assert "queued again" not in scheduler.log()
    finally:
        scheduler.stop()


def test_a_message_no_worker_can_decode_ends_in_the_dlq_not_in_a_loop(make_relay: Any) -> None:
    relay: Relay = make_relay()
    relay.workers[0].stop()
    # A message nested past Celery's decoder (the receiver refuses such bodies; this one is
    # written straight to Redis): Celery logs "Can't decode message body" and acks it.
    poison = b'{"body": "' + b"[" * 2000 + b"]" * 2000 + b'", "headers": {}}'
    outbox_of(relay).commit([Outgoing("poison-1", poison)])
    relay.env.update(RELAY_LOST_AFTER="1", RELAY_MAX_RESENDS="1")
    relay.workers = [start_worker(relay.env, 1, "--beat")]
    wait_until(lambda: relay.dlq.count() == 1, timeout=60, what="the poison message in the DLQ")
    [letter] = relay.dlq.list()
    assert letter.target == "unknown"
    assert "lost or failed 2 times" in letter.error
    assert outbox_of(relay).pending() == 0
    assert relay.redis.llen(relay.keys.queue) == 0
