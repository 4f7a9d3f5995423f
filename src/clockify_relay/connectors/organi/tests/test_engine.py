"""The delivery engine on Organi: real Redis, the Organi fake over HTTP, deliveries in-process.

Every entry is one worklog at its local start, with the owner's UTC offset in ``startDate`` and
``endDate`` (docs/ARCHITECTURE.md §6). Organi cannot be searched: a create whose answer was lost
is dead-lettered as an unknown outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from tests.fixture_loader import PROJECT_WEBSITE, TASK_DESIGN, USER_ANNA, USER_MARKO
from tests.pipeline.conftest import entry_payload, envelope
from tests.processes import wait_until

from clockify_relay.connectors.organi.fake import OrganiFake
from clockify_relay.errors import ConfigurationError, TransientError, UnknownOutcomeError
from clockify_relay.pipeline.engine import Outcome
from clockify_relay.pipeline.messages import Envelope
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, Settings

pytestmark = pytest.mark.integration


def organi_section(sandbox: SandboxServer, **extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "base_url": sandbox.base_urls["organi"],
        "token": Secret(sandbox.config.organi_token),
        "cache_id": "cache-1",
        "defaults": {"worklog_type": 1, "performance_type": 2},
        "users": {USER_ANNA: "anna", USER_MARKO: {"author": "marko"}},
        "projects": {PROJECT_WEBSITE: {"jira_issue": "WEB-1", "performance_type": 5}},
        "tasks": {TASK_DESIGN: {"worklog_type": 3}},
    }
    section.update(extra)
    return section


def organi_runtime(settings: Settings, sandbox: SandboxServer, **extra: Any) -> Runtime:
    return Runtime(settings.with_changes(targets={"organi": organi_section(sandbox, **extra)}))


@pytest.fixture
def rt(settings: Settings, clean_sandbox: SandboxServer) -> Iterator[Runtime]:
    runtime = organi_runtime(settings, clean_sandbox)
    yield runtime
    runtime.connector("organi").close()
    runtime.redis.close()


def deliver(rt: Runtime, event: Envelope) -> Outcome:
    return rt.engine("organi").deliver(event)


def entry_state(rt: Runtime) -> dict[bytes, bytes]:
    return cast(
        "dict[bytes, bytes]",
        rt.redis.hgetall(rt.keys.entry_state("organi", entry_payload()["id"])),
    )


def worklogs(sandbox: SandboxServer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sandbox.state()["organi"]["worklogs"]
    return result


def test_create_update_delete(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    created = deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert created.action == "applied"
    [worklog] = worklogs(clean_sandbox)
    assert {k: v for k, v in worklog.items() if k not in ("worklogId",)} == {
        "worklogType": 3,  # task row
        "performanceType": 5,  # project row
        "description": "Kickoff with Nordlys & design review <v2>",
        "author": "anna",
        "startDate": "2026-03-10T09:00:00+01:00",
        "endDate": "2026-03-10T10:30:00+01:00",
        "jiraIssue": {"key": "WEB-1"},
        "currentStatusTypeId": None,
        "createdBy": "sandbox",
        "modifiedBy": "sandbox",
    }
    assert created.remote_ids == {"": str(worklog["worklogId"])}

    updated = entry_payload("TIME_ENTRY_UPDATED")
    assert deliver(rt, envelope("TIME_ENTRY_UPDATED", updated, 2)).action == "applied"
    [after] = worklogs(clean_sandbox)
    assert after["worklogId"] == worklog["worklogId"]
    assert after["endDate"] == "2026-03-10T11:00:00+01:00"
    assert after["description"].endswith("notes sent")

    assert deliver(rt, envelope("TIME_ENTRY_DELETED", updated, 3)).action == "deleted"
    assert worklogs(clean_sandbox) == []
    assert deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1)).action == "skipped"
    assert worklogs(clean_sandbox) == []


def test_owner_change_is_delete_and_create(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    [first] = worklogs(clean_sandbox)
    moved = entry_payload("TIME_ENTRY_UPDATED", userId=USER_MARKO)
    assert deliver(rt, envelope("TIME_ENTRY_UPDATED", moved, 2)).action == "applied"
    [second] = worklogs(clean_sandbox)
    assert second["worklogId"] != first["worklogId"]
    assert (first["author"], second["author"]) == ("anna", "marko")


def test_worklog_gone_from_organi_is_recreated_on_update(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    clean_sandbox.sandbox.fakes["organi"].reset()
    outcome = deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload("TIME_ENTRY_UPDATED"), 2))
    [again] = worklogs(clean_sandbox)
    assert outcome.remote_ids == {"": str(again["worklogId"])}
    deliver(rt, envelope("TIME_ENTRY_DELETED", entry_payload("TIME_ENTRY_UPDATED"), 3))
    assert worklogs(clean_sandbox) == []


def test_delete_after_organi_lost_the_worklog_counts_as_gone(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    clean_sandbox.sandbox.fakes["organi"].reset()
    assert deliver(rt, envelope("TIME_ENTRY_DELETED", entry_payload(), 2)).action == "deleted"
    state = entry_state(rt)
    assert b"tombstone_seq" in state and not any(k.startswith(b"id:") for k in state)


def test_unmapped_user_is_a_configuration_error_naming_the_key(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    unmapped = organi_runtime(settings, clean_sandbox, users={})
    with pytest.raises(ConfigurationError) as info:
        unmapped.engine("organi").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert f'[targets.organi.users."{USER_ANNA}"] author' in str(info.value)
    assert worklogs(clean_sandbox) == []
    unmapped.redis.close()


def test_create_without_answer_is_an_unknown_outcome_not_a_second_create(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    impatient = organi_runtime(settings, clean_sandbox, timeout=0.5)
    clean_sandbox.inject_fault("organi", latency=1.5, count=1)
    event = envelope("NEW_TIME_ENTRY", entry_payload(), 1)
    with pytest.raises(TransientError) as info:
        impatient.engine("organi").deliver(event)
    assert info.value.outcome_unknown
    wait_until(lambda: worklogs(clean_sandbox), timeout=10, what="the slow create to land")
    with pytest.raises(UnknownOutcomeError) as unknown:
        impatient.engine("organi").deliver(event)
    assert "--force" in str(unknown.value)
    assert len(worklogs(clean_sandbox)) == 1
    impatient.redis.close()


def test_create_answered_without_id_is_an_unknown_outcome(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    organi = clean_sandbox.sandbox.fakes["organi"]
    assert isinstance(organi, OrganiFake)
    organi.set_behaviour({"create_response": "no-id"})
    with pytest.raises(UnknownOutcomeError):
        deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert len(worklogs(clean_sandbox)) == 1
