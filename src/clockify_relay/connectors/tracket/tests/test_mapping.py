"""Pure Tracket mapping and config parsing against recorded Clockify payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from tests.fixture_loader import PROJECT_WEBSITE as PROJECT
from tests.fixture_loader import TASK_DESIGN, fixture_json
from tests.fixture_loader import USER_ANNA as USER

from clockify_relay.clockify.models import TimeEntry, parse_time_entry
from clockify_relay.connectors.tracket.config import (
    DEFAULT_BASE_URL,
    ItemRow,
    TracketConfig,
    parse_config,
)
from clockify_relay.connectors.tracket.connector import TracketConnector
from clockify_relay.connectors.tracket.mapping import resolve_category, resolve_item_id, worklog
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import Secret, Settings

STOCKHOLM = ZoneInfo("Europe/Stockholm")

MAPPED: dict[str, Any] = {
    "users": {USER: {"user_id": "tk-anna"}},
    "projects": {PROJECT: {"item_id": "item-web", "worklog_category": "cat-dev"}},
    "tasks": {TASK_DESIGN: {"item_id": "item-design"}},
}


def entry(name: str = "NEW_TIME_ENTRY", **interval: Any) -> TimeEntry:
    payload = fixture_json(name)
    payload["timeInterval"].update(interval)
    return parse_time_entry(payload)


def config(**section: Any) -> TracketConfig:
    return parse_config({"token": Secret("t"), **section})


def test_new_time_entry_maps_to_local_worklog() -> None:
    assert worklog(entry(), STOCKHOLM, config(**MAPPED)) == {
        "itemId": "item-design",  # task row beats the project row
        "userId": "tk-anna",
        "description": "Kickoff with Nordlys & design review <v2>",
        "worklogCategory": "cat-dev",  # the task row has none: the project's applies
        "worklogDate": "2026-03-10T09:00:00+01:00",
        "worklogMinutes": 90.0,
        "worklogBillableMinutes": 90.0,
    }


def test_entry_before_local_midnight_is_one_worklog_at_local_start() -> None:
    body = worklog(entry("NEW_TIME_ENTRY__midnight_stockholm"), STOCKHOLM, config(**MAPPED))
    assert body["worklogDate"] == "2026-03-10T23:15:00+01:00"
    assert body["worklogMinutes"] == 90.0
    # Same instant as the payload's start, so nothing is lost by sending local time.
    assert (
        datetime.fromisoformat(body["worklogDate"])
        == entry("NEW_TIME_ENTRY__midnight_stockholm").start
    )


@pytest.mark.parametrize(
    ("start", "end", "local", "minutes"),
    [
        ("2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z", "2026-03-29T01:30:00+01:00", 60.0),
        ("2026-03-29T01:30:00Z", "2026-03-29T02:00:00Z", "2026-03-29T03:30:00+02:00", 30.0),
        ("2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:30:00+02:00", 60.0),
        ("2026-10-25T01:30:00Z", "2026-10-25T02:30:00Z", "2026-10-25T02:30:00+01:00", 60.0),
    ],
)
def test_dst_dates_carry_the_offset_in_force(
    start: str, end: str, local: str, minutes: float
) -> None:
    body = worklog(entry(start=start, end=end), STOCKHOLM, config(**MAPPED))
    assert body["worklogDate"] == local
    assert body["worklogMinutes"] == minutes


def test_fractional_minutes_and_not_billable() -> None:
    payload = fixture_json("NEW_TIME_ENTRY")
    payload["billable"] = False
    payload["timeInterval"].update(
        start="2026-03-10T08:00:00.500Z", end="2026-03-10T08:01:01.500Z", duration="PT1M1S"
    )
    body = worklog(parse_time_entry(payload), STOCKHOLM, config(**MAPPED))
    assert body["worklogMinutes"] == pytest.approx(61 / 60, abs=1e-4)
    assert body["worklogBillableMinutes"] == 0
    # Sub-second precision is dropped from the date-time.
    assert body["worklogDate"] == "2026-03-10T09:00:00+01:00"


def test_html_entities_decoded_once() -> None:
    body = worklog(
        entry("TIME_ENTRY_DELETED__html_entities"),
        ZoneInfo("Europe/Belgrade"),
        config(defaults={"item_id": "i", "user_id": "u"}),
    )
    assert body["description"] == 'DSWH2_S4_html_entities &lt;b&gt; &amp; "q" <script>'
    assert body["worklogBillableMinutes"] == 0
    assert body["worklogCategory"] is None
    assert body["worklogDate"] == "2026-08-08T14:40:00+02:00"


def test_item_resolution_order() -> None:
    e = entry()
    assert resolve_item_id(e, config(**MAPPED)) == "item-design"
    no_task = {**MAPPED, "tasks": {}, "defaults": {"item_id": "item-default"}}
    assert resolve_item_id(e, config(**no_task)) == "item-web"
    only_default = {"defaults": {"item_id": "item-default"}}
    assert resolve_item_id(e, config(**only_default)) == "item-default"
    # A task row that only sets a category does not stop the search for an item.
    category_only = {
        "tasks": {TASK_DESIGN: {"worklog_category": "cat-t"}},
        "projects": {PROJECT: "item-web"},
    }
    cfg = config(**category_only)
    assert resolve_item_id(e, cfg) == "item-web"
    assert resolve_category(e, cfg) == "cat-t"


def test_unmapped_item_names_the_keys_to_add() -> None:
    with pytest.raises(ConfigurationError) as info:
        worklog(entry(), STOCKHOLM, config(users=MAPPED["users"]))
    message = str(info.value)
    assert "69b00a1e5d4c3b2a19f8e701" in message
    assert "'Website relaunch'" in message and "'Design'" in message
    assert f'[targets.tracket.tasks."{TASK_DESIGN}"] item_id' in message
    assert f'[targets.tracket.projects."{PROJECT}"] item_id' in message
    assert "[targets.tracket.defaults] item_id" in message


def test_unmapped_user_names_clockify_user() -> None:
    with pytest.raises(ConfigurationError) as info:
        worklog(entry(), STOCKHOLM, config(projects=MAPPED["projects"]))
    message = str(info.value)
    assert USER in message and "Anna Lindqvist" in message
    assert f'[targets.tracket.users."{USER}"] user_id' in message
    assert "[targets.tracket.defaults] user_id" in message
    # The default user covers everyone without a row.
    body = worklog(
        entry(), STOCKHOLM, config(projects=MAPPED["projects"], defaults={"user_id": "tk-x"})
    )
    assert body["userId"] == "tk-x"


# -- config ---------------------------------------------------------------------------------


def test_config_defaults_and_rows() -> None:
    cfg = parse_config(
        {
            "token": Secret("tok-123"),
            "defaults": {"item_id": 42, "worklog_category": "c"},
            "users": {USER: "tk-anna"},
            **{k: v for k, v in MAPPED.items() if k != "users"},
        }
    )
    assert cfg.base_url == DEFAULT_BASE_URL
    assert cfg.auth_header == "Authorization"
    assert cfg.auth_value() == "Bearer tok-123"
    assert cfg.default_item_id == "42"
    assert cfg.users == {USER: "tk-anna"}
    assert cfg.projects[PROJECT] == ItemRow("item-web", "cat-dev")
    assert "tok-123" not in repr(cfg)


def test_custom_auth_header_and_bare_token() -> None:
    cfg = parse_config({"token": "tok", "auth_header": "X-Api-Key", "auth_scheme": ""})
    assert (cfg.auth_header, cfg.auth_value()) == ("X-Api-Key", "tok")


def test_missing_token_names_env_var() -> None:
    with pytest.raises(ConfigurationError, match="TRACKET_TOKEN"):
        parse_config({"enabled": True})


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"projects": {"P": {}}}, '[targets.tracket.projects."P"] needs item_id'),
        ({"tasks": {"T": {"item_id": True}}}, '[targets.tracket.tasks."T"] item_id'),
        ({"users": {"U": {"id": "x"}}}, '[targets.tracket.users."U"] user_id is missing'),
        ({"users": {"U": ""}}, '[targets.tracket.users."U"] user_id must not be empty'),
        ({"defaults": {"user_id": []}}, "[targets.tracket.defaults] user_id"),
        ({"auth_header": "Authorization: Bearer"}, "auth_header"),
        ({"base_url": "tracket.dev"}, "base_url"),
        ({"timeout": "soon"}, "timeout"),
    ],
)
def test_bad_config_is_named(section: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config({"token": "t", **section})
    assert fragment in str(info.value)


# -- through the connector ------------------------------------------------------------------


def test_bookings_through_connector() -> None:
    legacy = entry("NEW_TIME_ENTRY__legacy")  # no timeInterval.timeZone
    settings = Settings(default_timezone="Asia/Kolkata")
    conn = TracketConnector(settings, {"token": "t", **MAPPED}, redis.Redis())
    [booking] = conn.bookings(legacy)
    assert booking.key == ""
    assert booking.payload["worklogDate"] == "2026-03-10T13:30:00+05:30"
    assert booking.payload["itemId"] == "item-design"
    assert conn.bookings(entry(end="2026-03-10T08:00:00Z", duration="PT0S")) == []
