"""Clockify approvals → Organi worklog statuses: real Redis, the Organi fake over HTTP,
deliveries in-process (approvals.py; README "Organi", statuses).

A week of Anna's entries is booked as worklogs; the approval request of that week (the recorded
fixtures, Europe/Stockholm) then sets their status in one call per delivery."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.fixture_loader import fixture_json
from tests.pipeline.conftest import entry_payload, envelope

from clockify_relay.connectors.organi.config import parse_config
from clockify_relay.connectors.organi.tests.test_engine import organi_runtime, worklogs
from clockify_relay.errors import ConfigurationError, PermanentError, TransientError
from clockify_relay.pipeline.delivery import deliver_and_commit, run_delivery
from clockify_relay.pipeline.messages import Envelope
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Settings

pytestmark = pytest.mark.integration

DAYS = ("09", "10", "11", "12", "13")  # Monday to Friday of the fixtures' week (March 2026)


@pytest.fixture
def rt(settings: Settings, clean_sandbox: SandboxServer) -> Iterator[Runtime]:
    runtime = organi_runtime(settings, clean_sandbox)
    yield runtime
    runtime.connector("organi").close()
    runtime.redis.close()


def entry(day: str) -> dict[str, Any]:
    payload = entry_payload(id=f"69b00a1e5d4c3b2a19f8e7{day}")
    payload["timeInterval"] = {
        **payload["timeInterval"],
        "start": f"2026-03-{day}T08:00:00Z",
        "end": f"2026-03-{day}T09:30:00Z",
    }
    return payload


def book(rt: Runtime, day: str) -> str:
    """Book one entry of the week; its worklog id."""
    outcome = rt.engine("organi", "NEW_TIME_ENTRY").deliver(
        envelope("NEW_TIME_ENTRY", entry(day), 1)
    )
    return outcome.remote_ids[""]


def approval(state: str, updated_at: str, note: str = "") -> Envelope:
    name = "NEW_APPROVAL_REQUEST" if state == "PENDING" else "APPROVAL_REQUEST_STATUS_UPDATED"
    payload = copy.deepcopy(fixture_json(name))
    payload["status"].update({"state": state, "updatedAt": updated_at, "note": note})
    event = envelope(name, payload, 1)
    event["event_id"] = uuid.uuid4().hex
    return event


def deliver(rt: Runtime, event: Envelope) -> Any:
    return rt.engine("organi", event["event_type"]).deliver(event)


def status_updates(sandbox: SandboxServer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sandbox.state()["organi"]["statusUpdates"]
    return result


def statuses(sandbox: SandboxServer) -> dict[str, Any]:
    return {str(w["worklogId"]): w["currentStatusTypeId"] for w in worklogs(sandbox)}


def behave(sandbox: SandboxServer, outcomes: dict[str, str]) -> None:
    """Per worklog id, what the fake answers (``PUT /_sandbox/organi/behaviour``)."""
    response = httpx.put(
        f"{sandbox.url}/_sandbox/organi/behaviour", json={"status_outcomes": outcomes}
    )
    assert response.status_code == 200, response.text


def week(rt: Runtime) -> list[str]:
    return [book(rt, day) for day in DAYS]


def test_submitted_approved_withdrawn_follow_the_week(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    ids = week(rt)
    other = book_outside_week(rt)

    assert deliver(rt, approval("PENDING", "2026-03-16T07:45:00Z")).action == "applied"
    assert deliver(rt, approval("APPROVED", "2026-03-16T10:02:11Z", "Looks good &amp; ok"))
    assert statuses(clean_sandbox) == {**dict.fromkeys(ids, 4), other: None}

    outcome = deliver(rt, approval("WITHDRAWN_APPROVAL", "2026-03-17T08:00:00Z"))
    assert outcome.action == "applied"
    calls = status_updates(clean_sandbox)
    assert [(c["operation"], c["statusId"]) for c in calls] == [
        ("worklog", 1),
        ("worklog", 4),
        ("worklogUndo", 4),
    ]
    assert all(sorted(c["worklogIds"]) == sorted(int(i) for i in ids) for c in calls)
    assert (calls[0]["comment"], calls[1]["comment"]) == (None, "Looks good & ok")
    # The undo reverted "approved": back to "to approve".
    assert statuses(clean_sandbox) == {**dict.fromkeys(ids, 1), other: None}


def book_outside_week(rt: Runtime) -> str:
    """An entry of the Monday after the week (local day 16 March): not in the range."""
    payload = entry_payload(id="69b00a1e5d4c3b2a19f8e716")
    payload["timeInterval"] = {
        **payload["timeInterval"],
        "start": "2026-03-16T06:00:00Z",
        "end": "2026-03-16T07:00:00Z",
    }
    outcome = rt.engine("organi", "NEW_TIME_ENTRY").deliver(envelope("NEW_TIME_ENTRY", payload, 1))
    return outcome.remote_ids[""]


def test_undo_only_where_history_shows_the_status_current(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    ids = week(rt)
    deliver(rt, approval("APPROVED", "2026-03-16T10:00:00Z"))
    # Someone moved one worklog on in Organi: its current status is no longer 4.
    httpx.put(
        f"{clean_sandbox.base_urls['organi']}/status/worklog",
        json={"worklogIds": [int(ids[0])], "statusId": 5},
        headers={"Authorization": f"Bearer {clean_sandbox.config.organi_token}"},
    ).raise_for_status()
    outcome = deliver(rt, approval("WITHDRAWN_APPROVAL", "2026-03-17T08:00:00Z"))
    undo = status_updates(clean_sandbox)[-1]
    assert undo["operation"] == "worklogUndo"
    assert sorted(undo["worklogIds"]) == sorted(int(i) for i in ids[1:])
    assert statuses(clean_sandbox)[ids[0]] == 5
    assert any("nothing to undo" in op for op in outcome.operations)


def test_denied_id_is_dead_lettered_and_the_others_not_repeated(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    ids = week(rt)
    behave(clean_sandbox, {ids[2]: "denied"})
    event = approval("APPROVED", "2026-03-16T10:00:00Z")
    # Through the delivery machinery: a permanent error, dead-lettered with the reason.
    deliver_and_commit(rt, uuid.uuid4().hex, "organi", event, 1, False)
    [letter] = rt.dlq.list(target="organi")
    assert ids[2] in letter.error and "denied" in letter.error
    [call] = status_updates(clean_sandbox)
    assert len(call["worklogIds"]) == 5
    # A redelivery sends nothing: the successes are kept, the denied id is dead-lettered.
    assert deliver(rt, event).action == "skipped"
    assert len(status_updates(clean_sandbox)) == 1
    assert {k: v for k, v in statuses(clean_sandbox).items() if k != ids[2]} == dict.fromkeys(
        ids[:2] + ids[3:], 4
    )

    # Organi allows it now: a forced replay sends the denied id alone.
    behave(clean_sandbox, {})
    assert run_delivery(rt, "organi", event, 2, force=True).action == "applied"
    assert status_updates(clean_sandbox)[-1]["worklogIds"] == [int(ids[2])]
    assert statuses(clean_sandbox) == dict.fromkeys(ids, 4)


def test_failed_ids_alone_are_retried(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    ids = week(rt)
    behave(clean_sandbox, {ids[0]: "failed", ids[4]: "failed"})
    event = approval("PENDING", "2026-03-16T07:45:00Z")
    with pytest.raises(TransientError) as info:
        deliver(rt, event)
    assert ids[0] in str(info.value) and ids[4] in str(info.value)
    assert ids[1] not in str(info.value)

    behave(clean_sandbox, {})
    assert deliver(rt, event).action == "applied"
    first, retry = status_updates(clean_sandbox)
    assert len(first["worklogIds"]) == 5
    assert sorted(retry["worklogIds"]) == sorted([int(ids[0]), int(ids[4])])
    assert statuses(clean_sandbox) == dict.fromkeys(ids, 1)


def test_worklog_booked_after_its_approval_gets_the_status(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    early = [book(rt, day) for day in DAYS[:4]]
    deliver(rt, approval("APPROVED", "2026-03-16T10:00:00Z", "fine"))
    assert len(status_updates(clean_sandbox)) == 1

    late = book(rt, DAYS[4])
    assert statuses(clean_sandbox) == dict.fromkeys([*early, late], 4)
    last = status_updates(clean_sandbox)[-1]
    assert (last["worklogIds"], last["statusId"], last["comment"]) == ([int(late)], 4, "fine")
    # Updating the entry again sends nothing more.
    updated = entry(DAYS[4]) | {"description": "changed"}
    rt.engine("organi").deliver(envelope("TIME_ENTRY_UPDATED", updated, 2))
    assert len(status_updates(clean_sandbox)) == 2


def test_late_worklog_is_not_failed_by_an_earlier_denied_one(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    early = [book(rt, day) for day in DAYS[:4]]
    behave(clean_sandbox, {early[1]: "denied"})
    with pytest.raises(PermanentError):
        deliver(rt, approval("APPROVED", "2026-03-16T10:00:00Z"))
    late = book(rt, DAYS[4])
    assert statuses(clean_sandbox)[late] == 4
    assert status_updates(clean_sandbox)[-1]["worklogIds"] == [int(late)]


def test_older_state_arriving_late_is_skipped(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    ids = week(rt)
    deliver(rt, approval("APPROVED", "2026-03-16T10:02:11Z"))
    outcome = deliver(rt, approval("PENDING", "2026-03-16T07:45:00Z"))
    assert outcome.action == "skipped" and "older" in outcome.reason
    assert len(status_updates(clean_sandbox)) == 1
    assert statuses(clean_sandbox) == dict.fromkeys(ids, 4)


def test_repeated_state_sends_nothing_again(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    week(rt)
    assert deliver(rt, approval("PENDING", "2026-03-16T07:45:00Z")).action == "applied"
    again = deliver(rt, approval("PENDING", "2026-03-16T07:45:00Z"))
    assert again.action == "skipped"
    assert len(status_updates(clean_sandbox)) == 1


def test_approval_events_are_routed_to_organi(rt: Runtime) -> None:
    assert rt.enabled_targets("NEW_APPROVAL_REQUEST") == ["organi"]
    assert rt.enabled_targets("APPROVAL_REQUEST_STATUS_UPDATED") == ["organi"]


def test_withdrawn_submission_and_the_table_are_configurable(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    runtime = organi_runtime(
        settings, clean_sandbox, statuses={"withdrawn_submission": 2, "approved": "none"}
    )
    try:
        ids = week(runtime)
        deliver(runtime, approval("PENDING", "2026-03-16T07:45:00Z"))
        outcome = deliver(runtime, approval("APPROVED", "2026-03-16T10:00:00Z"))
        assert "no status configured" in outcome.reason
        deliver(runtime, approval("WITHDRAWN_SUBMISSION", "2026-03-16T11:00:00Z"))
        assert [c["statusId"] for c in status_updates(clean_sandbox)] == [1, 2]
        assert statuses(clean_sandbox) == dict.fromkeys(ids, 2)
    finally:
        runtime.connector("organi").close()
        runtime.redis.close()


@pytest.mark.parametrize(
    ("statuses_table", "message"),
    [
        ({"approved": 7}, "not one of 1 2 3 4 5 11"),
        ({"withdrawn_approval": "undo 1"}, "only undoes status 4 or 11"),
        ({"approved": "later"}, 'must be a status id, "undo 4"'),
        ({"accepted": 4}, "unknown state"),
    ],
)
def test_bad_status_table_names_the_key(statuses_table: dict[str, Any], message: str) -> None:
    section = {"token": "t", "base_url": "https://organi.example", "statuses": statuses_table}
    with pytest.raises(ConfigurationError) as info:
        parse_config(section)
    assert "[targets.organi.statuses]" in str(info.value) and message in str(info.value)


def test_default_table() -> None:
    config = parse_config({"token": "t", "base_url": "https://organi.example"})
    assert {state: str(action) for state, action in config.statuses.items()} == {
        "PENDING": "status 1",
        "APPROVED": "status 4",
        "REJECTED": "status 2",
        "WITHDRAWN_APPROVAL": "undo 4",
        "WITHDRAWN_SUBMISSION": "status 1",
    }


# -- confirmation statuses ([targets.organi.confirmation_statuses]) ---------------------------

CONFIRMATION = {"pending": 6, "approved": 7, "withdrawn_approval": "undo 7"}


@pytest.fixture
def confirming(settings: Settings, clean_sandbox: SandboxServer) -> Iterator[Runtime]:
    runtime = organi_runtime(settings, clean_sandbox, confirmation_statuses=CONFIRMATION)
    yield runtime
    runtime.connector("organi").close()
    runtime.redis.close()


def operations(sandbox: SandboxServer) -> list[tuple[str, int]]:
    return [(c["operation"], c["statusId"]) for c in status_updates(sandbox)]


def confirmation_history(sandbox: SandboxServer, worklog_id: str) -> list[int]:
    response = httpx.get(
        f"{sandbox.base_urls['organi']}/status/confirmation/{worklog_id}",
        headers={"Authorization": f"Bearer {sandbox.config.organi_token}"},
    )
    response.raise_for_status()
    return [row["statusType"]["statusTypeId"] for row in response.json()]


def test_confirmation_statuses_follow_submitted_approved_withdrawn(
    confirming: Runtime, clean_sandbox: SandboxServer
) -> None:
    ids = week(confirming)
    other = book_outside_week(confirming)

    deliver(confirming, approval("PENDING", "2026-03-16T07:45:00Z"))
    outcome = deliver(confirming, approval("APPROVED", "2026-03-16T10:02:11Z", "Looks good"))
    assert (
        outcome.reason == "approval APPROVED → status 4; approval APPROVED → confirmation status 7"
    )
    assert [confirmation_history(clean_sandbox, w) for w in ids] == [[6, 7]] * len(ids)
    assert confirmation_history(clean_sandbox, other) == []
    deliver(confirming, approval("WITHDRAWN_APPROVAL", "2026-03-17T08:00:00Z"))

    calls = status_updates(clean_sandbox)
    assert operations(clean_sandbox) == [
        ("worklog", 1),
        ("confirmation", 6),
        ("worklog", 4),
        ("confirmation", 7),
        ("worklogUndo", 4),
        ("confirmationUndo", 7),
    ]
    assert all(sorted(c["worklogIds"]) == sorted(int(i) for i in ids) for c in calls)
    assert [c["comment"] for c in calls[:4]] == [None, None, "Looks good", "Looks good"]
    # The undo reverted "approved by the customer": back to "to approve" (6).
    assert [confirmation_history(clean_sandbox, w) for w in ids] == [[6]] * len(ids)
    # Ordered by updatedAt with the worklog statuses: older or repeated states send nothing.
    assert deliver(confirming, approval("APPROVED", "2026-03-16T10:02:11Z")).action == "skipped"
    again = deliver(confirming, approval("WITHDRAWN_APPROVAL", "2026-03-17T08:00:00Z"))
    assert again.action == "skipped"
    assert len(status_updates(clean_sandbox)) == 6


def test_no_confirmation_table_no_confirmation_call(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    assert rt.connector("organi").config.confirmation_statuses == {}  # type: ignore[attr-defined]
    ids = [book(rt, day) for day in DAYS[:4]]
    for state, at in [
        ("PENDING", "2026-03-16T07:45:00Z"),
        ("APPROVED", "2026-03-16T10:00:00Z"),
        ("WITHDRAWN_APPROVAL", "2026-03-17T08:00:00Z"),
        ("REJECTED", "2026-03-17T09:00:00Z"),
    ]:
        deliver(rt, approval(state, at))
    ids.append(book(rt, DAYS[4]))  # a late worklog: its worklog status alone
    assert [op for op, _ in operations(clean_sandbox)] == [
        "worklog",
        "worklog",
        "worklogUndo",
        "worklog",
        "worklog",
    ]
    assert all(confirmation_history(clean_sandbox, w) == [] for w in ids)


def test_confirmation_undo_only_where_its_history_shows_the_status_current(
    confirming: Runtime, clean_sandbox: SandboxServer
) -> None:
    ids = week(confirming)
    deliver(confirming, approval("APPROVED", "2026-03-16T10:00:00Z"))
    # The customer moved one worklog on in Organi: its confirmation status is no longer 7.
    httpx.put(
        f"{clean_sandbox.base_urls['organi']}/status/confirmation",
        json={"worklogIds": [int(ids[0])], "statusId": 8},
        headers={"Authorization": f"Bearer {clean_sandbox.config.organi_token}"},
    ).raise_for_status()
    outcome = deliver(confirming, approval("WITHDRAWN_APPROVAL", "2026-03-17T08:00:00Z"))
    undo = status_updates(clean_sandbox)[-1]
    assert undo["operation"] == "confirmationUndo"
    assert sorted(undo["worklogIds"]) == sorted(int(i) for i in ids[1:])
    assert confirmation_history(clean_sandbox, ids[0]) == [7, 8]
    assert any("confirmation status 7 is not current" in op for op in outcome.operations)


def only_confirmation(settings: Settings, sandbox: SandboxServer) -> Runtime:
    """Approved drives the confirmation status alone: the fake's per-id outcomes hit only it."""
    return organi_runtime(
        settings,
        sandbox,
        statuses={"approved": "none"},
        confirmation_statuses={"approved": 7},
    )


def test_confirmation_denied_id_is_dead_lettered_and_the_others_not_repeated(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    runtime = only_confirmation(settings, clean_sandbox)
    try:
        ids = week(runtime)
        behave(clean_sandbox, {ids[2]: "denied"})
        event = approval("APPROVED", "2026-03-16T10:00:00Z")
        deliver_and_commit(runtime, uuid.uuid4().hex, "organi", event, 1, False)
        [letter] = runtime.dlq.list(target="organi")
        assert "denied confirmation status 7" in letter.error and ids[2] in letter.error
        [call] = status_updates(clean_sandbox)
        assert (call["operation"], len(call["worklogIds"])) == ("confirmation", 5)
        assert deliver(runtime, event).action == "skipped"
        assert len(status_updates(clean_sandbox)) == 1

        behave(clean_sandbox, {})
        assert run_delivery(runtime, "organi", event, 2, force=True).action == "applied"
        last = status_updates(clean_sandbox)[-1]
        assert (last["operation"], last["worklogIds"]) == ("confirmation", [int(ids[2])])
        assert [confirmation_history(clean_sandbox, w) for w in ids] == [[7]] * len(ids)
    finally:
        runtime.connector("organi").close()
        runtime.redis.close()


def test_confirmation_failed_ids_alone_are_retried(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    runtime = only_confirmation(settings, clean_sandbox)
    try:
        ids = week(runtime)
        behave(clean_sandbox, {ids[0]: "failed"})
        event = approval("APPROVED", "2026-03-16T10:00:00Z")
        with pytest.raises(TransientError) as info:
            deliver(runtime, event)
        assert "confirmation status 7 failed" in str(info.value) and ids[0] in str(info.value)
        behave(clean_sandbox, {})
        assert deliver(runtime, event).action == "applied"
        first, retry = status_updates(clean_sandbox)
        assert len(first["worklogIds"]) == 5
        assert (retry["operation"], retry["worklogIds"]) == ("confirmation", [int(ids[0])])
    finally:
        runtime.connector("organi").close()
        runtime.redis.close()


def test_worklog_booked_after_its_approval_gets_the_confirmation_status(
    confirming: Runtime, clean_sandbox: SandboxServer
) -> None:
    for day in DAYS[:4]:
        book(confirming, day)
    deliver(confirming, approval("APPROVED", "2026-03-16T10:00:00Z", "fine"))
    assert len(status_updates(clean_sandbox)) == 2

    late = book(confirming, DAYS[4])
    assert confirmation_history(clean_sandbox, late) == [7]
    calls = status_updates(clean_sandbox)[-2:]
    assert [(c["operation"], c["worklogIds"], c["statusId"], c["comment"]) for c in calls] == [
        ("worklog", [int(late)], 4, "fine"),
        ("confirmation", [int(late)], 7, "fine"),
    ]
    updated = entry(DAYS[4]) | {"description": "changed"}
    confirming.engine("organi").deliver(envelope("TIME_ENTRY_UPDATED", updated, 2))
    assert len(status_updates(clean_sandbox)) == 4


@pytest.mark.parametrize(
    ("table_", "message"),
    [
        ({"approved": 4}, "approved: status 4 is not one of 6 7 8 9 10 12"),
        ({"withdrawn_approval": "undo 10"}, "only undoes status 6, 7, 8, 9 or 12"),
        ({"rejected": "later"}, 'rejected must be a status id, "undo 6"'),
        ({"accepted": 7}, "accepted: unknown state"),
    ],
)
def test_bad_confirmation_table_names_the_key(table_: dict[str, Any], message: str) -> None:
    section = {"token": "t", "base_url": "https://o.example", "confirmation_statuses": table_}
    with pytest.raises(ConfigurationError) as info:
        parse_config(section)
    assert "[targets.organi.confirmation_statuses]" in str(info.value)
    assert message in str(info.value)


def test_confirmation_table_is_off_by_default_and_lists_only_what_is_set() -> None:
    base = {"token": "t", "base_url": "https://organi.example"}
    assert parse_config(base).confirmation_statuses == {}
    config = parse_config({**base, "confirmation_statuses": {"approved": 7, "rejected": "none"}})
    assert {state: str(a) for state, a in config.confirmation_statuses.items() if a} == {
        "APPROVED": "status 7"
    }


def test_late_worklog_whose_confirmation_failed_gets_it_on_the_retry(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    # Its worklog status is done (approved: "none"); its confirmation status alone is pending.
    runtime = only_confirmation(settings, clean_sandbox)
    try:
        early = [book(runtime, day) for day in DAYS[:4]]
        deliver(runtime, approval("APPROVED", "2026-03-16T10:00:00Z"))
        late = str(int(early[-1]) + 1)  # the fake numbers worklogs in order
        behave(clean_sandbox, {late: "failed"})
        event = envelope("NEW_TIME_ENTRY", entry(DAYS[4]), 1)
        with pytest.raises(TransientError):
            runtime.engine("organi", "NEW_TIME_ENTRY").deliver(event)
        behave(clean_sandbox, {})
        runtime.engine("organi", "NEW_TIME_ENTRY").deliver(event)
        last = status_updates(clean_sandbox)[-1]
        assert (last["operation"], last["worklogIds"]) == ("confirmation", [int(late)])
        assert confirmation_history(clean_sandbox, late) == [7]
    finally:
        runtime.connector("organi").close()
        runtime.redis.close()
