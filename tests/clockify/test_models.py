"""Payload models against the recorded fixtures and against bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clockify_relay.clockify.models import (
    APPROVAL_EVENTS,
    KNOWN_EVENTS,
    ROUTED_EVENTS,
    TIME_ENTRY_EVENTS,
    PayloadError,
    parse_approval,
    parse_duration,
    parse_instant,
    parse_time_entry,
)
from tests.fixture_loader import (
    APPROVAL_ANNA,
    APPROVAL_MARKO,
    ENTRY_MAIN,
    ENTRY_MIDNIGHT,
    ENTRY_TIMER,
    PROJECT_INTERNAL,
    PROJECT_WEBSITE,
    TAG_MEETING,
    TAG_REMOTE,
    TASK_DESIGN,
    USER_ANNA,
    USER_MARKO,
    WORKSPACE_ID,
    event_type_of,
    fixture_bytes,
    fixture_json,
    fixture_names,
)

TIME_ENTRY_FIXTURES = [n for n in fixture_names() if event_type_of(n) in TIME_ENTRY_EVENTS]
APPROVAL_FIXTURES = [n for n in fixture_names() if event_type_of(n) in APPROVAL_EVENTS]


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- the fixture set itself -------------------------------------------------------------------


def test_fixture_set_is_complete() -> None:
    expected = {
        "NEW_TIME_ENTRY",
        "NEW_TIME_ENTRY__legacy",
        "NEW_TIME_ENTRY__midnight_stockholm",
        "TIME_ENTRY_UPDATED",
        "TIME_ENTRY_UPDATED__break",
        "TIME_ENTRY_DELETED",
        "TIME_ENTRY_DELETED__rich",
        "TIME_ENTRY_DELETED__html_entities",
        "NEW_TIMER_STARTED",
        "TIMER_STOPPED",
        "TIME_ENTRY_RESTORED",
        "TIME_ENTRY_SPLIT",
        "NEW_APPROVAL_REQUEST",
        "APPROVAL_REQUEST_STATUS_UPDATED",
        "APPROVAL_REQUEST_STATUS_UPDATED__timezone_lowercase",
        "NEW_PROJECT",
    }
    assert expected <= set(fixture_names())
    # Every routed event type has at least one body.
    assert {event_type_of(n) for n in fixture_names()} >= ROUTED_EVENTS


@pytest.mark.parametrize("name", fixture_names())
def test_every_fixture_is_a_known_event_type_with_a_json_object(name: str) -> None:
    assert event_type_of(name) in KNOWN_EVENTS
    assert isinstance(json.loads(fixture_bytes(name)), dict)


def test_real_captures_are_unchanged_copies() -> None:
    # The two real captures are the ground truth the others are modelled on: byte-identical.
    samples = Path("/work/shared/clockify-samples")
    if not samples.is_dir():
        pytest.skip("shared samples not available here")
    for name in ("TIME_ENTRY_DELETED__rich", "TIME_ENTRY_DELETED__html_entities"):
        assert fixture_bytes(name) == (samples / f"{name}.json").read_bytes()


def test_loader_rejects_unknown_names() -> None:
    with pytest.raises(FileNotFoundError):
        fixture_bytes("NO_SUCH_EVENT")


# --- time entries -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", TIME_ENTRY_FIXTURES)
def test_every_time_entry_fixture_parses(name: str) -> None:
    body = fixture_json(name)
    entry = parse_time_entry(body)
    assert entry.id == body["id"]
    assert entry.workspace_id == body["workspaceId"]
    assert entry.user_id == body["userId"]
    assert entry.start.tzinfo is not None
    if not name.startswith("TIME_ENTRY_DELETED__"):  # the real captures use placeholder ids
        assert len(entry.id) == 24 and int(entry.id, 16) >= 0
        assert entry.workspace_id == WORKSPACE_ID


def test_new_time_entry() -> None:
    entry = parse_time_entry(fixture_json("NEW_TIME_ENTRY"))
    assert entry.id == ENTRY_MAIN
    assert entry.user_id == USER_ANNA
    assert entry.user_name == "Anna Lindqvist"
    assert entry.project_id == PROJECT_WEBSITE
    assert entry.project_name == "Website relaunch"
    assert entry.task_id == TASK_DESIGN
    assert entry.task_name == "Design"
    assert entry.tag_ids == (TAG_MEETING, TAG_REMOTE)
    assert entry.description == "Kickoff with Nordlys & design review <v2>"
    assert entry.start == _utc(2026, 3, 10, 8, 0)
    assert entry.end == _utc(2026, 3, 10, 9, 30)
    assert entry.duration == timedelta(hours=1, minutes=30)
    assert entry.seconds == 5400
    assert entry.time_zone == "Europe/Stockholm"
    assert entry.billable and not entry.is_locked and not entry.is_break and not entry.running


def test_both_generations_give_the_same_entry() -> None:
    new = parse_time_entry(fixture_json("NEW_TIME_ENTRY"))
    legacy_body = fixture_json("NEW_TIME_ENTRY__legacy")
    # The legacy body really is the older form, or this test proves nothing.
    assert "task" not in legacy_body and "tags" not in legacy_body
    assert "taskId" in legacy_body and "tagIds" in legacy_body
    new_body = fixture_json("NEW_TIME_ENTRY")
    assert "taskId" not in new_body and "tagIds" not in new_body

    legacy = parse_time_entry(legacy_body)
    assert legacy.task_id == new.task_id == TASK_DESIGN
    assert legacy.tag_ids == new.tag_ids == (TAG_MEETING, TAG_REMOTE)
    assert legacy.project_id == new.project_id
    assert (legacy.id, legacy.user_id, legacy.start, legacy.end, legacy.description) == (
        new.id,
        new.user_id,
        new.start,
        new.end,
        new.description,
    )
    # The older form carries no zone and no names: those come from configuration.
    assert legacy.time_zone is None and legacy.task_name is None


def test_update_delete_restore_share_the_entry_id_and_carry_the_edit() -> None:
    created = parse_time_entry(fixture_json("NEW_TIME_ENTRY"))
    for name in ("TIME_ENTRY_UPDATED", "TIME_ENTRY_DELETED", "TIME_ENTRY_RESTORED"):
        entry = parse_time_entry(fixture_json(name))
        assert entry.id == created.id
        assert entry.end == _utc(2026, 3, 10, 10, 0)
        assert entry.seconds == 7200
        assert entry.tag_ids == (TAG_MEETING,)
        # The en dash is typed by the person and must survive untouched.
        edited = "Kickoff with Nordlys & design review <v2> \u2013 notes sent"
        assert entry.description == edited


def test_running_timer_then_stopped() -> None:
    body = fixture_json("NEW_TIMER_STARTED")
    assert body["currentlyRunning"] is True
    running = parse_time_entry(body)
    assert running.id == ENTRY_TIMER
    assert running.running
    assert running.end is None and running.duration is None
    assert running.seconds == 0
    assert running.user_id == USER_MARKO
    assert running.project_id == PROJECT_INTERNAL
    assert running.tag_ids == ()

    stopped = parse_time_entry(fixture_json("TIMER_STOPPED"))
    assert stopped.id == ENTRY_TIMER and not stopped.running
    assert stopped.duration == timedelta(hours=1, minutes=14, seconds=30)
    assert stopped.seconds == 4470


def test_break_entry() -> None:
    entry = parse_time_entry(fixture_json("TIME_ENTRY_UPDATED__break"))
    assert entry.is_break and entry.type == "BREAK"
    assert entry.project_id is None and entry.task_id is None and entry.tag_ids == ()
    assert entry.seconds == 1800


def test_midnight_in_stockholm_is_not_midnight_in_utc() -> None:
    entry = parse_time_entry(fixture_json("NEW_TIME_ENTRY__midnight_stockholm"))
    assert entry.id == ENTRY_MIDNIGHT
    assert entry.time_zone == "Europe/Stockholm"
    assert entry.end is not None
    assert entry.start.date() == entry.end.date()  # same UTC day…
    zone = ZoneInfo(entry.time_zone)
    local_start, local_end = entry.start.astimezone(zone), entry.end.astimezone(zone)
    assert (local_start.day, local_end.day) == (10, 11)  # …two local days
    assert (local_start.hour, local_start.minute) == (23, 15)
    assert (local_end.hour, local_end.minute) == (0, 45)
    body = fixture_json("NEW_TIME_ENTRY__midnight_stockholm")
    assert body["timeInterval"]["zonedEnd"] == "2026-03-11T00:45:00"


def test_html_is_decoded_once_in_the_real_rich_capture() -> None:
    entry = parse_time_entry(fixture_json("TIME_ENTRY_DELETED__rich"))
    assert entry.description == (
        "DSWH1_rich™ entry with <b>bold</b> & emoji 🚀\nline two ДСВХ1_рич"  # noqa: RUF001
    )
    assert entry.task_id == "TASK_A" and entry.tag_ids == ("TAG_A", "TAG_B")
    assert entry.duration == timedelta(hours=1)
    assert entry.time_zone == "Europe/Belgrade"


def test_html_is_decoded_once_in_the_real_entities_capture() -> None:
    entry = parse_time_entry(fixture_json("TIME_ENTRY_DELETED__html_entities"))
    # The person typed literal entities; decoding twice would turn them into markup.
    assert entry.description == 'DSWH2_S4_html_entities &lt;b&gt; &amp; "q" <script>'
    assert entry.task_id is None and entry.tag_ids == ()
    assert entry.duration == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("PT0S", timedelta(0)),
        ("PT1H14M30S", timedelta(seconds=4470)),
        ("PT10M", timedelta(minutes=10)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        (5400, timedelta(seconds=5400)),
        (90.5, timedelta(seconds=90.5)),
        ("5400", timedelta(seconds=5400)),
        (0, timedelta(0)),
        (None, None),
        ("", None),
    ],
)
def test_durations_iso_and_seconds(raw: object, expected: timedelta | None) -> None:
    assert parse_duration(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "1h30m",
        "P",
        "PT",
        "PT1X",
        "abc",
        True,
        [],
        {},
        -5,
        "-5",
        float("nan"),
        float("inf"),
        "inf",
        "1e300",
        1e300,
        "P999999999999D",
    ],
)
def test_bad_durations_raise_payload_error(raw: object) -> None:
    with pytest.raises(PayloadError):
        parse_duration(raw)


def test_seconds_duration_in_an_entry() -> None:
    # A REST read may carry the duration in seconds; a running one has no end.
    body = fixture_json("NEW_TIMER_STARTED")
    body["timeInterval"]["duration"] = 600
    entry = parse_time_entry(body)
    assert entry.duration == timedelta(minutes=10) and entry.seconds == 600


@pytest.mark.parametrize("value", ["2026-03-10", "yesterday", 1773144000, "2026-13-01T00:00:00Z"])
def test_bad_instants(value: object) -> None:
    with pytest.raises(PayloadError):
        parse_instant(value)


_DROP = object()  # marks a key to remove


def _mutated(name: str, change: dict[str, Any], interval: dict[str, Any] | None = None) -> Any:
    body = fixture_json(name)
    for key, value in change.items():
        if value is _DROP:
            body.pop(key, None)
        else:
            body[key] = value
    for key, value in (interval or {}).items():
        if value is _DROP:
            body["timeInterval"].pop(key, None)
        else:
            body["timeInterval"][key] = value
    return body


@pytest.mark.parametrize(
    ("change", "interval", "message"),
    [
        ({"id": _DROP}, None, "without id"),
        ({"id": ""}, None, "without id"),
        ({"id": 42}, None, "without id"),
        ({}, {"start": _DROP}, "no timeInterval.start"),
        ({}, {"start": None}, "no timeInterval.start"),
        ({"timeInterval": _DROP}, None, "no timeInterval.start"),
        ({"timeInterval": "soon"}, None, "no timeInterval.start"),
        ({}, {"start": "2026-03-10 08:00"}, "timestamp"),
        ({}, {"end": "later"}, "timestamp"),
        ({}, {"duration": "one hour"}, "duration"),
        ({}, {"duration": -60}, "duration"),
    ],
)
def test_bad_time_entries_raise_payload_error(
    change: dict[str, Any], interval: dict[str, Any] | None, message: str
) -> None:
    body = _mutated("NEW_TIME_ENTRY", change, interval)
    with pytest.raises(PayloadError, match=message):
        parse_time_entry(body)


@pytest.mark.parametrize("body", [[], "NEW_TIME_ENTRY", None, 7])
def test_non_object_bodies_raise_payload_error(body: Any) -> None:
    with pytest.raises(PayloadError):
        parse_time_entry(body)
    with pytest.raises(PayloadError):
        parse_approval(body)


# --- approvals --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APPROVAL_FIXTURES)
def test_every_approval_fixture_parses(name: str) -> None:
    body = fixture_json(name)
    request = parse_approval(body)
    assert request.id == body["id"]
    assert request.workspace_id == WORKSPACE_ID
    assert request.owner_time_zone is not None


def test_new_approval_request_is_pending() -> None:
    request = parse_approval(fixture_json("NEW_APPROVAL_REQUEST"))
    assert request.id == APPROVAL_ANNA
    assert request.state == "PENDING"
    assert request.owner_user_id == USER_ANNA
    assert request.owner_name == "Anna Lindqvist"
    assert request.owner_time_zone == "Europe/Stockholm"
    assert request.period_start == _utc(2026, 3, 9)
    assert request.period_end == _utc(2026, 3, 15, 23, 59, 59)
    assert request.creator_email == "anna@nordlys.example"


def test_approved_status_update() -> None:
    request = parse_approval(fixture_json("APPROVAL_REQUEST_STATUS_UPDATED"))
    assert request.id == APPROVAL_ANNA
    assert request.state == "APPROVED"
    assert request.note == "Looks good & approved"
    assert request.updated_by == USER_MARKO
    assert request.updated_at == _utc(2026, 3, 16, 10, 2, 11)


def test_lowercase_timezone_spelling_is_read() -> None:
    body = fixture_json("APPROVAL_REQUEST_STATUS_UPDATED__timezone_lowercase")
    assert "timeZone" not in body["owner"] and "timezone" in body["owner"]
    request = parse_approval(body)
    assert request.id == APPROVAL_MARKO
    assert request.owner_time_zone == "Europe/Belgrade"
    assert request.state == "REJECTED"
    assert request.note == 'Missing Friday\'s "Sprint planning" entry'


@pytest.mark.parametrize(
    "state", ["PENDING", "APPROVED", "REJECTED", "WITHDRAWN_SUBMISSION", "WITHDRAWN_APPROVAL"]
)
def test_every_documented_state_is_accepted(state: str) -> None:
    body = fixture_json("APPROVAL_REQUEST_STATUS_UPDATED")
    body["status"]["state"] = state
    assert parse_approval(body).state == state


@pytest.mark.parametrize("state", ["APPROVE", "approved", "CANCELLED", 3])
def test_unknown_approval_state_raises(state: object) -> None:
    body = fixture_json("APPROVAL_REQUEST_STATUS_UPDATED")
    body["status"]["state"] = state
    with pytest.raises(PayloadError, match="unknown state"):
        parse_approval(body)


def test_approval_without_id_raises() -> None:
    body = fixture_json("NEW_APPROVAL_REQUEST")
    del body["id"]
    with pytest.raises(PayloadError, match="without id"):
        parse_approval(body)


def test_approval_with_bad_date_range_raises() -> None:
    body = fixture_json("NEW_APPROVAL_REQUEST")
    body["dateRange"]["start"] = "2026-03-09"
    with pytest.raises(PayloadError):
        parse_approval(body)
