"""Event targets (connectors/spec.py ``handler``): fan_out routes an event to every enabled
target whose spec lists its event type, approvals included; the runtime gives such a target
its handler; deliveries, retries, the DLQ replay, check and check_timing work as for booking
targets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from clockify_relay.admin import checks, service
from clockify_relay.connectors import registry
from clockify_relay.errors import ConfigurationError
from clockify_relay.pipeline import delivery
from clockify_relay.pipeline.engine import DeliveryEngine
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import RetryPolicy, Settings
from tests.fixture_loader import fixture_json
from tests.inline_worker import run_queued
from tests.pipeline.conftest import entry_payload, envelope, everit_section


@pytest.fixture
def with_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "PACKAGES", (*registry.PACKAGES, "tests.connectors.echo"))


def runtime_with(settings: Settings, targets: dict[str, Any]) -> Runtime:
    return Runtime(
        settings.with_changes(
            targets=targets,
            retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.1, max_countdown=1),
        )
    )


@pytest.fixture
def rt(with_echo: None, settings: Settings, sandbox: SandboxServer) -> Iterator[Runtime]:
    sandbox.reset()
    runtime = runtime_with(settings, {"everit": everit_section(sandbox), "echo": {}})
    yield runtime
    runtime.redis.close()


def echoed(rt: Runtime) -> list[list[Any]]:
    return [orjson.loads(item) for item in rt.redis.lrange(rt.keys.cache("echo"), 0, -1)]


def approval(name: str = "APPROVAL_REQUEST_STATUS_UPDATED") -> Any:
    return envelope(name, fixture_json(name))


def test_each_event_goes_to_the_targets_that_handle_its_type(rt: Runtime) -> None:
    assert delivery.fan_out(rt, approval(), None) == ["echo"]
    assert delivery.fan_out(rt, approval("NEW_APPROVAL_REQUEST"), None) == ["echo"]
    assert delivery.fan_out(rt, envelope("NEW_TIME_ENTRY", entry_payload()), None) == [
        "everit",
        "echo",
    ]
    updated = envelope("TIME_ENTRY_UPDATED", entry_payload("TIME_ENTRY_UPDATED"))
    assert delivery.fan_out(rt, updated, None) == ["everit"]
    project = envelope("NEW_PROJECT", fixture_json("NEW_PROJECT"))
    assert delivery.fan_out(rt, project, None) == []


def test_a_disabled_event_target_gets_nothing(with_echo: None, settings: Settings) -> None:
    rt = runtime_with(settings, {"echo": {"enabled": False}})
    assert delivery.fan_out(rt, approval(), None) == []
    rt.redis.close()


def test_without_event_targets_approvals_go_nowhere_as_before(
    rt: Runtime, settings: Settings, sandbox: SandboxServer
) -> None:
    booking_only = runtime_with(settings, {"everit": everit_section(sandbox)})
    assert delivery.fan_out(booking_only, approval(), None) == []
    booking_only.redis.close()


def test_the_runtime_gives_an_event_target_its_handler(rt: Runtime) -> None:
    handler = rt.engine("echo")
    assert not isinstance(handler, DeliveryEngine)
    assert isinstance(rt.engine("everit"), DeliveryEngine)
    with pytest.raises(ConfigurationError, match="event target"):
        rt.connector("echo")
    outcome = delivery.run_delivery(rt, "echo", approval())
    assert (outcome.action, outcome.reason) == ("applied", "echoed APPROVAL_REQUEST_STATUS_UPDATED")
    assert echoed(rt) == [["APPROVAL_REQUEST_STATUS_UPDATED", False]]


def test_failures_retry_dead_letter_and_replay_like_any_target(rt: Runtime) -> None:
    event = approval()
    rt.redis.set(rt.keys.cache("echo") + ":fail", "transient")
    delivery.deliver_and_commit(rt, "m1", "echo", event, 1, False)
    assert rt.dlq.count() == 0  # retried
    delivery.deliver_and_commit(rt, "m2", "echo", event, 2, False)  # max_attempts = 2
    [letter] = rt.dlq.list()
    assert (letter.target, letter.error_kind) == ("echo", "TransientError")
    rt.redis.set(rt.keys.cache("echo") + ":fail", "permanent")
    rt.redis.delete(rt.keys.queue)  # the retry this test ran by hand
    service.replay_many(rt, [letter])
    assert run_queued(rt) == 1
    [letter] = rt.dlq.list()
    assert letter.error_kind == "PermanentError"
    assert rt.control.replay_states([letter.id])[letter.id]["state"] == "failed"
    service.replay_many(rt, [letter], force=True)
    assert run_queued(rt) == 1
    state = rt.control.replay_states([letter.id])[letter.id]
    assert (state["state"], state["detail"]) == (
        "delivered",
        f"applied: echoed {event['event_type']}",
    )
    assert rt.dlq.list() == []
    assert echoed(rt) == [[event["event_type"], True]]


def test_check_and_timing_include_event_targets(rt: Runtime) -> None:
    report = checks.check(rt, probe=True)
    echo = report.targets[-1]
    assert (echo.target, echo.ok, echo.message) == ("echo", True, "echo answers")
    rt.check_timing()
    short = runtime_with(
        rt.settings.with_changes(visibility_timeout=60), {"echo": {"lock_seconds": 100}}
    )
    with pytest.raises(ConfigurationError, match="echo's slowest call holds its entry lock"):
        short.check_timing()
    short.redis.close()
