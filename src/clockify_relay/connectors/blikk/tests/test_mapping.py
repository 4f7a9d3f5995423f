"""Pure mapping of Clockify entries to Blikk time reports, from the recorded Clockify fixtures."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.fixture_loader import (
    ENTRY_MIDNIGHT,
    PROJECT_INTERNAL,
    PROJECT_WEBSITE,
    TASK_DEVELOPMENT,
    USER_ANNA,
    fixture_json,
)

from clockify_relay.clockify.models import parse_time_entry
from clockify_relay.connectors.blikk.config import parse_config
from clockify_relay.connectors.blikk.mapping import bookings, has_marker, marker
from clockify_relay.errors import ConfigurationError

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def section(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "defaults": {"activity_id": 1, "time_code_id": 2, "time_article_id": 3},
        "users": {USER_ANNA: {"user_id": 11}},
        "projects": {
            PROJECT_WEBSITE: {"project_id": 456, "activity_id": 7},
            PROJECT_INTERNAL: {"internal_project_id": 90},
        },
        "tasks": {TASK_DEVELOPMENT: 77},
    }
    base.update(extra)
    return base


def entry_with(start: str, end: str, **changes: Any) -> Any:
    body = fixture_json("NEW_TIME_ENTRY")
    body["timeInterval"].update(start=start, end=end)
    body.update(changes)
    return parse_time_entry(body)


def test_simple_entry_one_report() -> None:
    entry = parse_time_entry(fixture_json("NEW_TIME_ENTRY"))
    [booking] = bookings(entry, parse_config(section()), STOCKHOLM)
    p = booking.payload
    assert booking.key == "2026-03-10"
    assert p["date"] == "2026-03-10 00:00:00"
    assert (p["clockStart"], p["clockEnd"]) == ("09:00", "10:30")
    assert p["hours"] == 1.5 and p["invoiceableHours"] == 1.5
    # Description decoded once: what the person typed.
    assert p["comment"] == "Kickoff with Nordlys & design review <v2>"
    assert p["internalComment"] == f"clockify:{entry.id}"
    assert p["userId"] == 11
    assert (p["projectId"], p["internalProjectId"], p["absenceProjectId"]) == (456, None, None)
    # activity from the project row, time code and article from defaults.
    assert (p["activityId"], p["timeCodeId"], p["timeArticleId"]) == (7, 2, 3)


def test_entry_across_local_midnight_is_two_days() -> None:
    entry = parse_time_entry(fixture_json("NEW_TIME_ENTRY__midnight_stockholm"))
    assert entry.id == ENTRY_MIDNIGHT
    first, second = bookings(entry, parse_config(section()), STOCKHOLM)
    assert (first.key, second.key) == ("2026-03-10", "2026-03-11")
    # The first day ends at 23:59 on the clock; its hours keep the full 45 minutes.
    assert (first.payload["clockStart"], first.payload["clockEnd"]) == ("23:15", "23:59")
    assert (second.payload["clockStart"], second.payload["clockEnd"]) == ("00:00", "00:45")
    assert first.payload["hours"] == 0.75 and second.payload["hours"] == 0.75
    assert first.payload["taskId"] == 77
    # Both parts carry the same marker so find() can reconcile either.
    assert first.payload["internalComment"] == second.payload["internalComment"]


def test_dst_spring_forward_counts_real_hours() -> None:
    # 2026-03-29 02:00 CET → 03:00 CEST in Stockholm: 01:30 → 03:30 local is 1 real hour.
    entry = entry_with("2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z")
    [booking] = bookings(entry, parse_config(section()), STOCKHOLM)
    assert (booking.payload["clockStart"], booking.payload["clockEnd"]) == ("01:30", "03:30")
    assert booking.payload["hours"] == 1.0


def test_dst_fall_back_counts_real_hours() -> None:
    # 2026-10-25 03:00 CEST → 02:00 CET: 01:30 → 03:30 local is 3 real hours.
    entry = entry_with("2026-10-24T23:30:00Z", "2026-10-25T02:30:00Z")
    [booking] = bookings(entry, parse_config(section()), STOCKHOLM)
    assert booking.payload["hours"] == 3.0


def test_dst_night_across_midnight() -> None:
    # 22:00 on the 24th to 04:00 on the 25th local: 2 h + 7 h (the night has 25 hours).
    entry = entry_with("2026-10-24T20:00:00Z", "2026-10-25T03:00:00Z")
    first, second = bookings(entry, parse_config(section()), STOCKHOLM)
    assert (first.key, first.payload["hours"]) == ("2026-10-24", 2.0)
    assert (second.key, second.payload["hours"]) == ("2026-10-25", 5.0)
    assert second.payload["clockEnd"] == "04:00"


def test_not_billable_is_not_invoiceable_unless_configured() -> None:
    entry = entry_with("2026-03-10T08:00:00Z", "2026-03-10T08:20:00Z", billable=False)
    [b] = bookings(entry, parse_config(section()), STOCKHOLM)
    assert b.payload["hours"] == 0.33 and b.payload["invoiceableHours"] == 0.0
    [b] = bookings(entry, parse_config(section(invoiceable_when_not_billable=True)), STOCKHOLM)
    assert b.payload["invoiceableHours"] == 0.33


def test_unmapped_user_names_user_and_key() -> None:
    entry = parse_time_entry(fixture_json("NEW_TIME_ENTRY"))
    with pytest.raises(ConfigurationError) as info:
        bookings(entry, parse_config(section(users={})), STOCKHOLM)
    msg = str(info.value)
    assert USER_ANNA in msg and "Anna" in msg
    assert f'[targets.blikk.users."{USER_ANNA}"] user_id' in msg


def test_unmapped_project_names_project_and_key() -> None:
    entry = parse_time_entry(fixture_json("NEW_TIME_ENTRY"))
    with pytest.raises(ConfigurationError) as info:
        bookings(entry, parse_config(section(projects={})), STOCKHOLM)
    assert f'[targets.blikk.projects."{PROJECT_WEBSITE}"] project_id' in str(info.value)


def test_missing_required_reference_names_key() -> None:
    entry = parse_time_entry(fixture_json("NEW_TIME_ENTRY"))
    with pytest.raises(ConfigurationError, match="time_article_id"):
        bookings(
            entry, parse_config(section(defaults={"activity_id": 1, "time_code_id": 2})), STOCKHOLM
        )


def test_internal_project_and_no_project_defaults() -> None:
    entry = entry_with(
        "2026-03-10T08:00:00Z",
        "2026-03-10T09:00:00Z",
        projectId=PROJECT_INTERNAL,
        project={"id": PROJECT_INTERNAL},
    )
    [b] = bookings(entry, parse_config(section()), STOCKHOLM)
    assert (b.payload["projectId"], b.payload["internalProjectId"]) == (None, 90)
    entry = entry_with("2026-03-10T08:00:00Z", "2026-03-10T09:00:00Z", projectId=None, project=None)
    defaults = {"activity_id": 1, "time_code_id": 2, "time_article_id": 3, "absence_project_id": 5}
    [b] = bookings(entry, parse_config(section(defaults=defaults)), STOCKHOLM)
    assert b.payload["absenceProjectId"] == 5


def test_running_and_zero_length_book_nothing() -> None:
    running = parse_time_entry(fixture_json("NEW_TIMER_STARTED"))
    assert bookings(running, parse_config(section()), STOCKHOLM) == []
    zero = entry_with("2026-03-10T08:00:00Z", "2026-03-10T08:00:00Z")
    assert bookings(zero, parse_config(section()), STOCKHOLM) == []


def test_entry_ending_at_midnight_is_one_day() -> None:
    entry = entry_with("2026-03-10T21:00:00Z", "2026-03-10T23:00:00Z")
    [b] = bookings(entry, parse_config(section()), STOCKHOLM)
    assert (b.key, b.payload["clockEnd"], b.payload["hours"]) == ("2026-03-10", "23:59", 2.0)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        # 02:40 CEST → 02:10 CET on 2026-10-25: the clock reads backwards.
        ("2026-10-25T00:40:00Z", "2026-10-25T01:10:00Z"),
        # 40 seconds within one minute of the clock.
        ("2026-03-10T08:00:10Z", "2026-03-10T08:00:50Z"),
        # 23:59:30 to midnight: "23:59"-"23:59".
        ("2026-03-10T22:59:30Z", "2026-03-10T23:00:00Z"),
    ],
)
def test_no_clock_times_when_the_end_would_not_follow_the_start(start: str, end: str) -> None:
    entry = entry_with(start, end)
    [b] = bookings(entry, parse_config(section()), STOCKHOLM)
    assert (b.payload["clockStart"], b.payload["clockEnd"]) == (None, None)
    assert b.payload["hours"] == round(entry.seconds / 3600, 2)


def test_marker_matches_whole_token_only() -> None:
    assert has_marker(f"note {marker('abc')}", "abc")
    assert not has_marker(marker("abcd"), "abc")
    assert not has_marker(None, "abc")


@pytest.mark.parametrize(
    "bad",
    [
        {"users": {"u": {"user_id": True}}},
        {"users": {"u": "x12"}},
        {"projects": {"p": {"project_id": 1, "internal_project_id": 2}}},
        {"projects": {"p": {"activity_id": 1}}},
        {"projects": {"p": {"projekt_id": 1}}},
        {"rate_per_second": 0},
        {"invoiceable_when_not_billable": "yes"},
        {"base_url": "ftp://x"},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        parse_config(bad)


def test_config_requires_credentials_without_revealing_them() -> None:
    config = parse_config({"app_id": "app"})
    with pytest.raises(ConfigurationError, match="BLIKK_APP_SECRET"):
        config.require_credentials()
    config = parse_config({"app_id": "app", "app_secret": "s3cr3t-value"})
    config.require_credentials()
    assert "s3cr3t-value" not in repr(config)
