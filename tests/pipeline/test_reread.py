"""Rule 5: with CLOCKIFY_API_KEY the engine writes what Clockify has now, whatever arrives."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clockify_relay.errors import ConfigurationError, TransientError
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, Settings
from tests.fixture_loader import WORKSPACE_ID
from tests.pipeline.conftest import entry_payload, envelope, worklogs


def rest_form(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The entry as Clockify's REST API returns it (duration in the REST form)."""
    entry = copy.deepcopy(payload)
    entry.update(changes)
    return entry


@pytest.fixture
def reread_rt(everit_settings: Settings, clean_sandbox: SandboxServer) -> Runtime:
    return Runtime(
        everit_settings.with_changes(
            clockify_api_key=Secret(clean_sandbox.config.clockify_api_key),
            clockify_api_url=clean_sandbox.base_urls["clockify"],
        )
    )


def put_entry(sandbox: SandboxServer, entry: dict[str, Any]) -> None:
    sandbox.sandbox.fakes["clockify"].put_time_entry(entry)  # type: ignore[attr-defined]


def test_truth_wins_over_swapped_updates(reread_rt: Runtime, clean_sandbox: SandboxServer) -> None:
    put_entry(clean_sandbox, rest_form(entry_payload(), description="final text"))
    delivery = reread_rt.engine("everit")
    # The newer update (seq 3) is processed first, the older (seq 2) second: both write the truth.
    delivery.deliver(envelope("TIME_ENTRY_UPDATED", entry_payload(description="newer"), 3))
    delivery.deliver(envelope("TIME_ENTRY_UPDATED", entry_payload(description="older"), 2))
    [only] = worklogs(clean_sandbox)
    assert only["description"] == "final text"


def test_seconds_duration_from_rest_is_accepted(
    reread_rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    truth = rest_form(entry_payload())
    truth["timeInterval"] = dict(truth["timeInterval"], duration=5400)
    put_entry(clean_sandbox, truth)
    reread_rt.engine("everit").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert worklogs(clean_sandbox)[0]["durationInSeconds"] == 5400


def test_entry_gone_in_clockify_is_deleted_downstream(
    reread_rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    put_entry(clean_sandbox, rest_form(entry_payload()))
    delivery = reread_rt.engine("everit")
    delivery.deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert len(worklogs(clean_sandbox)) == 1
    clean_sandbox.sandbox.fakes["clockify"].reset()  # type: ignore[attr-defined]
    clean_sandbox.sandbox.fakes["clockify"].add_workspace(WORKSPACE_ID)  # type: ignore[attr-defined]
    # A late update arrives for an entry Clockify no longer has: deleted, not resurrected.
    outcome = delivery.deliver(envelope("TIME_ENTRY_UPDATED", entry_payload(), 2))
    assert outcome.action == "deleted"
    assert worklogs(clean_sandbox) == []


def test_unknown_workspace_is_a_configuration_error_not_a_deletion(
    reread_rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    # The fake does not know the workspace at all: the entry's 404 is not taken as "deleted"
    # because the workspace probe fails; the operator is told to fix the key.
    with pytest.raises(ConfigurationError) as info:
        reread_rt.engine("everit").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert "cannot read workspace" in str(info.value)
    state = reread_rt.redis.hgetall(reread_rt.keys.entry_state("everit", entry_payload()["id"]))
    assert b"tombstone_seq" not in state
    assert worklogs(clean_sandbox) == []


def test_refused_key_is_a_configuration_error(
    everit_settings: Settings, clean_sandbox: SandboxServer
) -> None:
    put_entry(clean_sandbox, rest_form(entry_payload()))
    rt = Runtime(
        everit_settings.with_changes(
            clockify_api_key=Secret("wrong-clockify-key"),
            clockify_api_url=clean_sandbox.base_urls["clockify"],
        )
    )
    with pytest.raises(ConfigurationError) as info:
        rt.engine("everit").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert "CLOCKIFY_API_KEY" in str(info.value)
    assert "wrong-clockify-key" not in str(info.value)
    assert worklogs(clean_sandbox) == []


def test_reread_entry_keeps_the_webhooks_zone(
    reread_rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    # 22:40Z on 2026-08-07 is 00:40 on 2026-08-08 in Stockholm (CEST, UTC+2). The REST entry
    # has no timeZone and the default zone is UTC: without the webhook's zone the worklog would
    # land on the 7th at 22:40.
    payload = entry_payload()
    payload["timeInterval"] = {
        "start": "2026-08-07T22:40:00Z",
        "end": "2026-08-07T23:40:00Z",
        "duration": "PT1H",
        "timeZone": "Europe/Stockholm",
    }
    put_entry(clean_sandbox, payload)  # the fake answers it in REST form, without timeZone
    assert reread_rt.settings.default_timezone == "UTC"
    reread_rt.engine("everit").deliver(envelope("NEW_TIME_ENTRY", payload, 1))
    [worklog] = worklogs(clean_sandbox)
    assert (worklog["workDate"], worklog["workStartTime"]) == ("2026-08-08", "00:40")
    assert worklog["_headers"]["x-timezone"] == "Europe/Stockholm"


def test_reread_entry_without_any_zone_takes_the_users_configured_zone(
    reread_rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    # A legacy webhook without timeZone: the user's configured zone, not UTC.
    payload = entry_payload("NEW_TIME_ENTRY__legacy")
    payload["timeInterval"] = {
        "start": "2026-08-07T22:40:00Z",
        "end": "2026-08-07T23:40:00Z",
        "duration": "PT1H",
    }
    put_entry(clean_sandbox, payload)
    rt = Runtime(
        reread_rt.settings.with_changes(
            raw={"users": {payload["userId"]: {"timezone": "Europe/Stockholm"}}}
        )
    )
    rt.engine("everit").deliver(envelope("NEW_TIME_ENTRY", payload, 1))
    [worklog] = worklogs(clean_sandbox)
    assert (worklog["workDate"], worklog["workStartTime"]) == ("2026-08-08", "00:40")
    rt.redis.close()


def test_too_many_requests_with_a_404_is_no_deletion(
    reread_rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    put_entry(clean_sandbox, rest_form(entry_payload()))
    delivery = reread_rt.engine("everit")
    delivery.deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    # Clockify's "Too many requests" may come with any status; with a 404 it must not read as
    # "the entry is gone".
    clean_sandbox.inject_fault(
        "clockify", status=404, body={"message": "Too many requests", "code": 429}, count=1
    )
    with pytest.raises(TransientError):
        delivery.deliver(envelope("TIME_ENTRY_UPDATED", entry_payload(), 2))
    assert len(worklogs(clean_sandbox)) == 1
    state = reread_rt.redis.hgetall(reread_rt.keys.entry_state("everit", entry_payload()["id"]))
    assert b"tombstone_seq" not in state
