"""Faults behind the receiver, on real Redis and the sandbox fakes: a retried delete after a late
update, payloads no mapper can book, failures of the task machinery, and timing limits."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import Reject

from clockify_relay.errors import ConfigurationError, PermanentError, TransientError
from clockify_relay.pipeline.delivery import deliver_and_commit, give_up_or_requeue
from clockify_relay.pipeline.dlq import ROUTE_TARGET
from clockify_relay.pipeline.messages import deliver_message
from clockify_relay.pipeline.outbox import Outgoing
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox import relay_config
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Settings, load_settings
from tests.pipeline.conftest import entry_payload, envelope

pytestmark = pytest.mark.integration
TARGETS = ("everit", "blikk", "tracket", "organi")


def sandbox_settings(settings: Settings, sandbox: SandboxServer, tmp_path: Path) -> Settings:
    """Every target on the sandbox, read through the real config path (env + TOML)."""
    config = relay_config.write_toml(
        tmp_path / "relay.toml", relay_config.sandbox_targets(sandbox.base_urls)
    )
    env = {
        "REDIS_URL": str(settings.redis_url),
        "RELAY_KEY_PREFIX": settings.key_prefix,
        **relay_config.sandbox_env(sandbox.config, sandbox.base_urls),
    }
    return load_settings(env, config)


@pytest.fixture
def rt(settings: Settings, clean_sandbox: SandboxServer, tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime(sandbox_settings(settings, clean_sandbox, tmp_path))
    yield runtime
    runtime.redis.close()


def records(sandbox: SandboxServer, target: str) -> list[dict[str, Any]]:
    state = sandbox.state()[target]
    result: list[dict[str, Any]] = state["timereports" if target == "blikk" else "worklogs"]
    return result


@pytest.mark.parametrize("target", TARGETS)
def test_a_delete_retried_after_a_later_update_still_deletes(
    rt: Runtime, clean_sandbox: SandboxServer, target: str
) -> None:
    delivery = rt.engine(target)
    delivery.deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert len(records(clean_sandbox, target)) == 1
    # The delete (#2) meets a 503 and waits for its retry ...
    clean_sandbox.inject_fault(target, status=503, count=1)
    deleted = envelope("TIME_ENTRY_DELETED", entry_payload("TIME_ENTRY_DELETED"), 2)
    with pytest.raises(TransientError):
        delivery.deliver(deleted)
    # ... while a late update (#3) of the same entry is applied.
    updated = envelope("TIME_ENTRY_UPDATED", entry_payload("TIME_ENTRY_UPDATED"), 3)
    assert delivery.deliver(updated).action == "applied"
    # The retried delete is not "older than #3": nothing but a restore follows a delete.
    outcome = delivery.deliver(deleted)
    assert outcome.action == "deleted", outcome
    assert records(clean_sandbox, target) == []
    # And the late update, delivered again, does not bring it back.
    assert delivery.deliver(updated).action == "skipped"
    assert records(clean_sandbox, target) == []


@pytest.mark.parametrize("target", TARGETS)
def test_a_delete_older_than_an_applied_restore_is_skipped(
    rt: Runtime, clean_sandbox: SandboxServer, target: str
) -> None:
    delivery = rt.engine(target)
    delivery.deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    restored = envelope("TIME_ENTRY_RESTORED", entry_payload("TIME_ENTRY_RESTORED"), 3)
    assert delivery.deliver(restored).action == "applied"
    late_delete = envelope("TIME_ENTRY_DELETED", entry_payload("TIME_ENTRY_DELETED"), 2)
    outcome = delivery.deliver(late_delete)
    assert outcome.action == "skipped"
    assert "older than restore #3" in outcome.reason
    assert len(records(clean_sandbox, target)) == 1


def test_a_date_no_mapper_can_book_is_dead_lettered_at_once(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    # Year 9999 never passes the receiver; a message that reached the queue anyway (an older
    # relay, a hand-made replay) must not loop through retries.
    payload = entry_payload()
    payload["timeInterval"] = {
        "start": "9999-12-31T23:00:00Z",
        "end": "9999-12-31T23:30:00Z",
        "duration": "PT30M",
    }
    event = envelope("NEW_TIME_ENTRY", payload, 1)
    message_id = uuid.uuid4().hex
    rt.outbox.commit([Outgoing(message_id, deliver_message(message_id, ["everit", event], {}))])
    deliver_and_commit(rt, message_id, "everit", event, attempt=1, force=False)
    [letter] = rt.dlq.list()
    assert letter.error_kind == "PermanentError"
    assert letter.attempts == 1
    assert "unusable time entry payload" in letter.error
    assert rt.outbox.pending() == 0
    assert records(clean_sandbox, "everit") == []


def test_a_failing_task_is_requeued_a_bounded_number_of_times_then_dead_lettered(
    rt: Runtime,
) -> None:
    event = envelope("NEW_TIME_ENTRY", entry_payload(), 1)
    message_id = uuid.uuid4().hex
    rt.outbox.commit([Outgoing(message_id, b"{}")])
    bug = ValueError("a bug in the failure path")
    for _ in range(rt.settings.max_resends):
        with pytest.raises(Reject):
            give_up_or_requeue(rt, message_id, ROUTE_TARGET, event, bug)
    assert rt.dlq.count() == 0
    give_up_or_requeue(rt, message_id, ROUTE_TARGET, event, bug)  # one too many: dead letter
    [letter] = rt.dlq.list()
    assert letter.target == ROUTE_TARGET
    assert "ValueError" in letter.error
    assert rt.outbox.pending() == 0


def test_an_integer_beyond_64_bits_in_a_queued_event_is_stored_not_looped(rt: Runtime) -> None:
    from clockify_relay.pipeline import trace
    from clockify_relay.pipeline.delivery import fan_out

    payload = entry_payload()
    payload["hourlyRate"] = {"amount": 18446744073709551616, "currency": "EUR"}
    event = envelope("NEW_TIME_ENTRY", payload, 1)
    # Mail (on in the sandbox) takes every event type; its rules decide.
    assert sorted(fan_out(rt, event, None)) == sorted((*TARGETS, "mail"))
    stored, steps = trace.read(rt.redis, rt.keys, event["event_id"])
    assert stored is not None
    assert stored["payload"]["hourlyRate"]["amount"] == 18446744073709551616
    assert steps[0]["outcome"] == "received"


def test_a_visibility_timeout_shorter_than_a_delivery_is_refused(
    settings: Settings, clean_sandbox: SandboxServer, tmp_path: Path
) -> None:
    base = sandbox_settings(settings, clean_sandbox, tmp_path)
    # Blikk: a 30 s rate wait and two 15 s requests hold the entry lock up to 65 s.
    assert Runtime(base).engine("blikk").lock_seconds >= 60
    Runtime(base.with_changes(visibility_timeout=600)).check_timing()
    with pytest.raises(ConfigurationError) as info:
        Runtime(base.with_changes(visibility_timeout=90)).check_timing()
    assert "RELAY_VISIBILITY_TIMEOUT=90s is too short" in str(info.value)
    assert "blikk" in str(info.value)


def test_a_delivery_whose_lock_was_taken_over_stops_before_writing(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    delivery = rt.engine("everit")
    entry_id = entry_payload()["id"]
    with delivery.locked(entry_id):
        # The lock expired while this delivery worked, and another one took the entry.
        rt.redis.set(rt.keys.lock("everit", entry_id), "someone-else")
        with pytest.raises(TransientError) as info:
            delivery._renew_lock()
    assert "lock expired" in info.value.message


def test_permanent_payload_errors_are_not_retried(rt: Runtime) -> None:
    payload = entry_payload()
    payload["timeInterval"] = {"start": "0001-01-01T00:00:00Z", "end": "0001-01-01T01:00:00Z"}
    with pytest.raises(PermanentError):
        rt.engine("tracket").deliver(envelope("NEW_TIME_ENTRY", payload, 1))
