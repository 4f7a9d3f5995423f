"""Ordering, idempotency and scope rules of the engine (docs/ARCHITECTURE.md §3), against real
Redis and the Everit fake over HTTP. Deliveries run in-process here so each test controls the order;
tests/pipeline/test_delivery_e2e.py runs the same engine in real worker processes."""

from __future__ import annotations

import html

import pytest
from tests.pipeline.conftest import entry_payload, envelope, worklogs

from clockify_relay.errors import ConfigurationError, TransientError, UnknownOutcomeError
from clockify_relay.pipeline.messages import Envelope
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer

pytestmark = pytest.mark.integration


def deliver(rt: Runtime, event: Envelope) -> str:
    return rt.engine("everit").deliver(event).action


def test_create_update_delete(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    assert deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1)) == "applied"
    [created] = worklogs(clean_sandbox)
    assert created["description"] == "Kickoff with Nordlys & design review <v2>"
    assert created["durationInSeconds"] == 5400
    assert created["workDate"] == "2026-03-10"
    assert created["workStartTime"] == "09:00"

    updated = entry_payload("TIME_ENTRY_UPDATED")
    assert deliver(rt, envelope("TIME_ENTRY_UPDATED", updated, 2)) == "applied"
    [after_update] = worklogs(clean_sandbox)
    assert after_update["worklogId"] == created["worklogId"]
    assert after_update["description"] != created["description"]

    assert deliver(rt, envelope("TIME_ENTRY_DELETED", updated, 3)) == "deleted"
    assert worklogs(clean_sandbox) == []


def test_same_event_twice_books_once(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    event = envelope("NEW_TIME_ENTRY", entry_payload(), 1)
    assert deliver(rt, event) == "applied"
    assert deliver(rt, event) == "skipped"
    assert len(worklogs(clean_sandbox)) == 1


def test_update_before_create(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    updated = entry_payload("TIME_ENTRY_UPDATED")
    assert deliver(rt, envelope("TIME_ENTRY_UPDATED", updated, 2)) == "applied"
    assert deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1)) == "skipped"
    [only] = worklogs(clean_sandbox)
    assert only["description"] == html.unescape(updated["description"])


def test_update_processed_after_a_later_arriving_create(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    # NEW arrived second (seq 2) but is processed first; the earlier UPDATED (seq 1) still applies
    # because a create never advances "last applied".
    updated = entry_payload("TIME_ENTRY_UPDATED")
    assert deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 2)) == "applied"
    assert deliver(rt, envelope("TIME_ENTRY_UPDATED", updated, 1)) == "applied"
    [only] = worklogs(clean_sandbox)
    assert only["description"] == html.unescape(updated["description"])


def test_delete_before_create_resurrects_nothing(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    assert deliver(rt, envelope("TIME_ENTRY_DELETED", entry_payload(), 1)) == "deleted"
    assert deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 2)) == "skipped"
    assert (
        deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload("TIME_ENTRY_UPDATED"), 3))
        == "skipped"
    )
    assert worklogs(clean_sandbox) == []


def test_restore_revives_after_delete(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    deliver(rt, envelope("TIME_ENTRY_DELETED", entry_payload(), 2))
    assert worklogs(clean_sandbox) == []
    assert (
        deliver(rt, envelope("TIME_ENTRY_RESTORED", entry_payload("TIME_ENTRY_RESTORED"), 3))
        == "applied"
    )
    assert len(worklogs(clean_sandbox)) == 1
    # A restore older than the delete does not revive.
    deliver(rt, envelope("TIME_ENTRY_DELETED", entry_payload(), 4))
    assert deliver(rt, envelope("TIME_ENTRY_RESTORED", entry_payload(), 3)) == "skipped"
    assert worklogs(clean_sandbox) == []


def test_old_delete_after_newer_restore_is_skipped(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    deliver(rt, envelope("TIME_ENTRY_RESTORED", entry_payload(), 3))
    assert deliver(rt, envelope("TIME_ENTRY_DELETED", entry_payload(), 2)) == "skipped"
    assert len(worklogs(clean_sandbox)) == 1


def test_edits_a_b_a_end_as_a(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(description="A"), 1))
    deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload(description="B"), 2))
    deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload(description="A"), 3))
    [only] = worklogs(clean_sandbox)
    assert only["description"] == "A"


def test_stale_update_is_skipped(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(description="first"), 1))
    deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload(description="newest"), 3))
    assert (
        deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload(description="older"), 2))
        == "skipped"
    )
    assert worklogs(clean_sandbox)[0]["description"] == "newest"


def test_update_to_break_removes_downstream(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert len(worklogs(clean_sandbox)) == 1
    outcome = rt.engine("everit").deliver(
        envelope("TIME_ENTRY_UPDATED", entry_payload(type="BREAK"), 2)
    )
    assert "BREAK" in outcome.reason
    assert worklogs(clean_sandbox) == []
    # Back to REGULAR: booked again.
    deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload(type="REGULAR"), 3))
    assert len(worklogs(clean_sandbox)) == 1


def test_running_timer_is_not_booked(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    started = entry_payload("NEW_TIMER_STARTED")
    assert deliver(rt, envelope("NEW_TIMER_STARTED", started, 1)) == "skipped"
    assert worklogs(clean_sandbox) == []
    assert deliver(rt, envelope("TIMER_STOPPED", entry_payload("TIMER_STOPPED"), 2)) == "applied"
    assert len(worklogs(clean_sandbox)) == 1


def test_owner_change_is_delete_and_create(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    [first] = worklogs(clean_sandbox)
    deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload(userId="6641f2b4c7e13b5d2a8f0c22"), 2))
    [second] = worklogs(clean_sandbox)
    assert second["worklogId"] != first["worklogId"]


def test_unmapped_entry_is_a_configuration_error_naming_it(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    section = dict(rt.settings.targets["everit"])
    section.pop("defaults")
    unmapped = Runtime(rt.settings.with_changes(targets={"everit": section}))
    with pytest.raises(ConfigurationError) as info:
        unmapped.engine("everit").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert "69b00a1e5d4c3b2a19f8e701" in str(info.value)
    assert worklogs(clean_sandbox) == []


def test_transient_failure_leaves_nothing_pending(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    clean_sandbox.inject_fault("everit", status=503, count=1)
    with pytest.raises(TransientError):
        deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    # A 503 answer means Everit did not take it: the retry creates, once.
    assert deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1)) == "applied"
    assert len(worklogs(clean_sandbox)) == 1


def test_create_without_answer_is_unknown_outcome_until_forced(
    everit_settings: object, clean_sandbox: SandboxServer, rt: Runtime
) -> None:
    from clockify_relay.settings import Settings

    assert isinstance(everit_settings, Settings)
    section = dict(everit_settings.targets["everit"], timeout=0.5)
    impatient = Runtime(everit_settings.with_changes(targets={"everit": section}))
    clean_sandbox.inject_fault("everit", latency=2.0, count=1)
    event = envelope("NEW_TIME_ENTRY", entry_payload(), 1)
    with pytest.raises(TransientError) as info:
        impatient.engine("everit").deliver(event)
    assert info.value.outcome_unknown
    with pytest.raises(UnknownOutcomeError) as unknown:
        impatient.engine("everit").deliver(event)
    assert "--force" in str(unknown.value)
    created_before = len(worklogs(clean_sandbox))
    assert impatient.engine("everit").deliver(event, force=True).action == "applied"
    assert len(worklogs(clean_sandbox)) == created_before + 1


def test_update_with_what_is_booked_calls_nothing(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    assert deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1)) == "applied"
    before = clean_sandbox.state()["requests"]["everit"]
    # The same entry as an update (a backfill of an entry in sync): skipped, no call.
    outcome = rt.engine("everit").deliver(envelope("TIME_ENTRY_UPDATED", entry_payload(), 2))
    assert (outcome.action, outcome.reason, outcome.operations) == ("skipped", "unchanged", [])
    assert clean_sandbox.state()["requests"]["everit"] == before
    # A real change still updates, and is then the booked state.
    changed = entry_payload(description="changed")
    assert deliver(rt, envelope("TIME_ENTRY_UPDATED", changed, 3)) == "applied"
    assert worklogs(clean_sandbox)[0]["description"] == "changed"
    assert deliver(rt, envelope("TIME_ENTRY_UPDATED", changed, 4)) == "skipped"
