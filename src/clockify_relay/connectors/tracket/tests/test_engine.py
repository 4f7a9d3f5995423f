"""The delivery engine on Tracket: real Redis, the Tracket fake over HTTP, deliveries in-process.

Tracket takes a start and a length, so every entry is one worklog at its local start, with the
owner's UTC offset in ``worklogDate`` (docs/ARCHITECTURE.md §6).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from tests.fixture_loader import PROJECT_WEBSITE, TASK_DESIGN, USER_ANNA
from tests.pipeline.conftest import entry_payload, envelope
from tests.processes import wait_until

from clockify_relay.errors import ConfigurationError, TransientError, UnknownOutcomeError
from clockify_relay.pipeline.engine import Outcome
from clockify_relay.pipeline.messages import Envelope
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, Settings

pytestmark = pytest.mark.integration

ITEM_WEBSITE = "item-website"
ITEM_DESIGN = "item-design"


def tracket_section(sandbox: SandboxServer, **extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "base_url": sandbox.base_urls["tracket"],
        "token": Secret(sandbox.config.tracket_token),
        "users": {USER_ANNA: "tracket-anna"},
        "projects": {PROJECT_WEBSITE: {"item_id": ITEM_WEBSITE, "worklog_category": "dev"}},
    }
    section.update(extra)
    return section


def tracket_runtime(settings: Settings, sandbox: SandboxServer, **extra: Any) -> Runtime:
    return Runtime(settings.with_changes(targets={"tracket": tracket_section(sandbox, **extra)}))


@pytest.fixture
def rt(settings: Settings, clean_sandbox: SandboxServer) -> Iterator[Runtime]:
    runtime = tracket_runtime(settings, clean_sandbox)
    yield runtime
    runtime.connector("tracket").close()
    runtime.redis.close()


def deliver(rt: Runtime, event: Envelope) -> Outcome:
    return rt.engine("tracket").deliver(event)


def entry_state(rt: Runtime) -> dict[bytes, bytes]:
    """What the engine keeps for the fixture entry on Tracket (raw Redis hash)."""
    return cast(
        "dict[bytes, bytes]",
        rt.redis.hgetall(rt.keys.entry_state("tracket", entry_payload()["id"])),
    )


def worklogs(sandbox: SandboxServer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sandbox.state()["tracket"]["worklogs"]
    return result


def timed(payload: dict[str, Any], start: str, end: str) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    interval = {
        k: v
        for k, v in changed["timeInterval"].items()
        if k not in ("offsetStart", "offsetEnd", "zonedStart", "zonedEnd")
    }
    seconds = int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    interval.update(start=start, end=end, duration=f"PT{seconds}S")
    changed["timeInterval"] = interval
    return changed


def test_create_update_delete(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    created = deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert created.action == "applied"
    [worklog] = worklogs(clean_sandbox)
    assert worklog["itemId"] == ITEM_WEBSITE
    assert worklog["userId"] == "tracket-anna"
    assert worklog["worklogCategory"] == "dev"
    assert worklog["description"] == "Kickoff with Nordlys & design review <v2>"
    assert worklog["worklogMinutes"] == 90
    assert worklog["worklogBillableMinutes"] == 90
    assert created.remote_ids == {"": worklog["worklogId"]}

    updated = entry_payload("TIME_ENTRY_UPDATED")
    assert deliver(rt, envelope("TIME_ENTRY_UPDATED", updated, 2)).action == "applied"
    [after] = worklogs(clean_sandbox)
    assert after["worklogId"] == worklog["worklogId"]
    assert after["worklogMinutes"] == 120
    assert after["description"].endswith("notes sent")

    assert deliver(rt, envelope("TIME_ENTRY_DELETED", updated, 3)).action == "deleted"
    assert worklogs(clean_sandbox) == []
    assert deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1)).action == "skipped"
    assert worklogs(clean_sandbox) == []


def test_task_row_wins_over_project_row(settings: Settings, clean_sandbox: SandboxServer) -> None:
    runtime = tracket_runtime(settings, clean_sandbox, tasks={TASK_DESIGN: ITEM_DESIGN})
    runtime.engine("tracket").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    [worklog] = worklogs(clean_sandbox)
    assert worklog["itemId"] == ITEM_DESIGN
    assert worklog["worklogCategory"] == "dev"  # the task row has none; the project's applies
    runtime.redis.close()


def test_worklog_gone_from_tracket_is_recreated_on_update(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    [first] = worklogs(clean_sandbox)
    clean_sandbox.sandbox.fakes["tracket"].reset()
    outcome = deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload("TIME_ENTRY_UPDATED"), 2))
    [again] = worklogs(clean_sandbox)
    assert again["worklogId"] != first["worklogId"]
    assert outcome.remote_ids == {"": again["worklogId"]}
    # The new id is in the ID map: a delete removes the re-created worklog.
    deliver(rt, envelope("TIME_ENTRY_DELETED", entry_payload("TIME_ENTRY_UPDATED"), 3))
    assert worklogs(clean_sandbox) == []


def test_delete_after_tracket_lost_the_worklog_counts_as_gone(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    clean_sandbox.sandbox.fakes["tracket"].reset()  # deleted in Tracket behind our back
    outcome = deliver(rt, envelope("TIME_ENTRY_DELETED", entry_payload(), 2))
    assert outcome.action == "deleted"
    state = entry_state(rt)
    assert b"tombstone_seq" in state and not any(k.startswith(b"id:") for k in state)


def test_delete_at_a_retired_api_version_is_a_configuration_error(
    rt: Runtime, settings: Settings, clean_sandbox: SandboxServer
) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    [worklog] = worklogs(clean_sandbox)
    # The operator points at a version the server does not serve: every path answers 404.
    wrong = tracket_runtime(
        settings, clean_sandbox, base_url=clean_sandbox.url + "/tracket/api/2.0"
    )
    event = envelope("TIME_ENTRY_DELETED", entry_payload(), 2)
    with pytest.raises(ConfigurationError) as info:
        wrong.engine("tracket").deliver(event)
    assert "TRACKET_BASE_URL" in str(info.value)
    # Nothing counted as deleted: still mapped, no tombstone, the worklog still in Tracket.
    state = entry_state(rt)
    assert state[b"id:"].decode() == worklog["worklogId"] and b"tombstone_seq" not in state
    assert worklogs(clean_sandbox) == [worklog]
    # Replayed once the base URL is fixed, the delete goes through.
    assert deliver(rt, event).action == "deleted"
    assert worklogs(clean_sandbox) == []
    wrong.redis.close()


def test_unmapped_item_is_a_configuration_error_naming_it(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    unmapped = tracket_runtime(settings, clean_sandbox, projects={})
    with pytest.raises(ConfigurationError) as info:
        unmapped.engine("tracket").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    message = str(info.value)
    assert PROJECT_WEBSITE in message
    assert "Website relaunch" in message
    assert f'[targets.tracket.projects."{PROJECT_WEBSITE}"] item_id' in message
    assert worklogs(clean_sandbox) == []
    unmapped.redis.close()


def test_unmapped_user_is_a_configuration_error_naming_the_user(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    unmapped = tracket_runtime(settings, clean_sandbox, users={})
    with pytest.raises(ConfigurationError) as info:
        unmapped.engine("tracket").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert USER_ANNA in str(info.value)
    assert "Anna Lindqvist" in str(info.value)
    assert worklogs(clean_sandbox) == []
    unmapped.redis.close()


@pytest.mark.parametrize(
    ("start", "end", "worklog_date", "minutes"),
    [
        # Winter, CET: 08:00Z is 09:00+01:00.
        ("2026-03-10T08:00:00+00:00", "2026-03-10T09:30:00+00:00", "2026-03-10T09:00:00+01:00", 90),
        # Summer, CEST: 08:00Z is 10:00+02:00.
        ("2026-06-15T08:00:00+00:00", "2026-06-15T09:00:00+00:00", "2026-06-15T10:00:00+02:00", 60),
        # Across local midnight: one worklog at the local start, the whole length.
        ("2026-03-10T22:15:00+00:00", "2026-03-10T23:45:00+00:00", "2026-03-10T23:15:00+01:00", 90),
        # Across the spring DST change: local start in CET, real minutes (one hour, not two).
        ("2026-03-29T00:30:00+00:00", "2026-03-29T01:30:00+00:00", "2026-03-29T01:30:00+01:00", 60),
    ],
    ids=["winter", "summer", "midnight", "dst"],
)
def test_worklog_date_carries_the_owners_offset(
    rt: Runtime,
    clean_sandbox: SandboxServer,
    start: str,
    end: str,
    worklog_date: str,
    minutes: int,
) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", timed(entry_payload(), start, end), 1))
    [worklog] = worklogs(clean_sandbox)
    assert worklog["worklogDate"] == worklog_date
    assert worklog["worklogMinutes"] == minutes
    # The instant is exact, whatever the offset.
    booked = datetime.fromisoformat(worklog["worklogDate"])
    assert booked == datetime.fromisoformat(start)
    assert booked.utcoffset() in (timedelta(hours=1), timedelta(hours=2))


def test_owner_zone_from_config_when_the_payload_has_none(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    payload = entry_payload()
    payload["timeInterval"] = {k: v for k, v in payload["timeInterval"].items() if k != "timeZone"}
    runtime = Runtime(
        settings.with_changes(
            targets={"tracket": tracket_section(clean_sandbox)},
            raw={"users": {USER_ANNA: {"timezone": "America/New_York"}}},
        )
    )
    runtime.engine("tracket").deliver(envelope("NEW_TIME_ENTRY", payload, 1))
    [worklog] = worklogs(clean_sandbox)
    assert worklog["worklogDate"] == "2026-03-10T04:00:00-04:00"  # EDT since 2026-03-08
    runtime.redis.close()


def test_create_without_answer_is_not_doubled(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    # Tracket cannot be searched: a create whose answer was lost must not be sent again blindly.
    impatient = tracket_runtime(settings, clean_sandbox, timeout=0.5)
    clean_sandbox.inject_fault("tracket", latency=1.5, count=1)
    event = envelope("NEW_TIME_ENTRY", entry_payload(), 1)
    with pytest.raises(TransientError) as info:
        impatient.engine("tracket").deliver(event)
    assert info.value.outcome_unknown
    wait_until(lambda: worklogs(clean_sandbox), timeout=10, what="the slow create to land")
    with pytest.raises(UnknownOutcomeError) as unknown:
        impatient.engine("tracket").deliver(event)
    assert "--force" in str(unknown.value)
    assert len(worklogs(clean_sandbox)) == 1
    impatient.redis.close()
