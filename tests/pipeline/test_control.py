"""Pause, resume and the circuit breaker (pipeline/control.py) on real Redis and the sandbox.

Deliveries are queued as the relay queues them and run as a worker runs them
(tests/inline_worker.py); the end-to-end test with worker processes is in
tests/admin/test_operator_e2e.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from clockify_relay.admin import service
from clockify_relay.pipeline import delivery
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Settings
from tests.inline_worker import run_queued
from tests.pipeline.conftest import entry_payload, envelope, worklogs


def queue_events(rt: Runtime, count: int) -> list[str]:
    """Queue ``count`` new entries' deliveries to Everit; returns the entry ids in order."""
    entry_ids = []
    for n in range(count):
        entry_id = f"{time.time_ns() % 10**12:012d}{n:012d}"
        event = envelope("NEW_TIME_ENTRY", entry_payload(id=entry_id))
        rt.outbox.commit(delivery.deliveries(["everit"], event))
        entry_ids.append(entry_id)
    return entry_ids


@pytest.fixture
def breaker_rt(everit_settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(everit_settings.with_changes(breaker_failures=3, breaker_cooldown=0.3))
    yield runtime
    runtime.redis.close()


def test_a_paused_targets_deliveries_are_held_then_resume_delivers_them_in_order(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    service.pause_target(rt, "everit", "test", "maintenance")
    entry_ids = queue_events(rt, 4)
    assert run_queued(rt) == 4
    # Held in Redis: not delivered, not retried, not dead-lettered, not lost to the sweeper.
    assert worklogs(clean_sandbox) == [] and rt.dlq.count() == 0
    assert rt.outbox.held("everit") == 4 and rt.redis.llen(rt.keys.queue) == 0
    for _ in range(2):
        swept = rt.outbox.sweep(lost_after=0, stale_after=0, max_resends=1)
        assert swept.resent == [] and swept.given_up == {}
    assert rt.outbox.pending() == 4

    assert service.resume_target(rt, "everit", "test") == {
        "target": "everit",
        "was_paused": True,
        "released": 4,
    }
    assert run_queued(rt) == 4
    assert len(worklogs(clean_sandbox)) == 4 and rt.outbox.pending() == 0
    # Delivered in the order held: Everit's worklog ids follow the entries' order.
    worklog_ids = [rt.redis.hget(rt.keys.entry_state("everit", e), "id:") for e in entry_ids]
    assert worklog_ids == [b"1", b"2", b"3", b"4"]


def test_the_breaker_opens_after_n_transient_failures_probes_and_closes_on_recovery(
    breaker_rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    rt = breaker_rt
    clean_sandbox.inject_fault("everit", status=503, count=1000)
    queue_events(rt, 3)
    assert run_queued(rt, limit=3) == 3  # three transient failures in a row
    [row] = [t for t in service.targets_overview(rt) if t["target"] == "everit"]
    assert row["state"] == "breaker open" and row["paused_by"] == "circuit breaker"
    assert run_queued(rt) == 3  # their retries come back and are held
    assert rt.outbox.held("everit") == 3 and rt.dlq.count() == 0
    assert rt.control.release_probes() == []  # still cooling down

    time.sleep(0.35)
    assert rt.control.release_probes() == ["everit"]
    assert rt.control.release_probes() == []  # one probe at a time
    assert run_queued(rt) == 1  # the probe fails: held again, cooldown again
    assert rt.outbox.held("everit") == 3 and rt.control.pauses()["everit"].probe == ""
    assert worklogs(clean_sandbox) == []

    clean_sandbox.sandbox.faults.clear()  # the target is back
    time.sleep(0.35)
    assert rt.control.release_probes() == ["everit"]
    assert run_queued(rt, limit=1) == 1  # the probe gets through: closed, the rest released
    assert rt.control.pauses() == {}
    assert run_queued(rt) == 2
    assert len(worklogs(clean_sandbox)) == 3 and rt.dlq.count() == 0
    assert rt.outbox.pending() == 0


def test_an_operators_pause_is_never_lifted_by_the_breaker(
    breaker_rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    rt = breaker_rt
    service.pause_target(rt, "everit", "ops", "migration")
    queue_events(rt, 2)
    assert run_queued(rt) == 2
    time.sleep(0.35)
    assert rt.control.release_probes() == []
    assert rt.control.close("everit") == 0  # a probe's success lifts only a breaker
    assert rt.control.pauses()["everit"].reason == "migration"
    assert rt.outbox.held("everit") == 2 and worklogs(clean_sandbox) == []


def test_a_permanent_failure_resets_the_run_of_transient_ones(
    breaker_rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    rt = breaker_rt
    clean_sandbox.inject_fault("everit", status=503, count=2)
    queue_events(rt, 2)
    assert run_queued(rt, limit=2) == 2
    assert int(rt.redis.get(rt.keys.failures("everit")) or 0) == 2
    assert run_queued(rt) == 2  # the retries get through
    assert rt.redis.get(rt.keys.failures("everit")) is None
    assert rt.control.pauses() == {}
