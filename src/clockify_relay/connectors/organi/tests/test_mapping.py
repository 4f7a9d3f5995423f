"""Pure Organi mapping and config parsing against recorded Clockify payloads."""

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
from clockify_relay.connectors.organi.config import PATH_DEFAULTS, OrganiConfig, parse_config
from clockify_relay.connectors.organi.connector import OrganiConnector
from clockify_relay.connectors.organi.mapping import worklog
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import Secret, Settings

STOCKHOLM = ZoneInfo("Europe/Stockholm")
URL = "https://organi.example/api"

MAPPED: dict[str, Any] = {
    "defaults": {"worklog_type": 1, "performance_type": 10},
    "users": {USER: {"author": "anna.l"}},
    "projects": {PROJECT: {"jira_issue": "WEB-1", "performance_type": 20}},
    "tasks": {TASK_DESIGN: {"jira_issue": "WEB-7"}},
}


def entry(name: str = "NEW_TIME_ENTRY", **interval: Any) -> TimeEntry:
    payload = fixture_json(name)
    payload["timeInterval"].update(interval)
    return parse_time_entry(payload)


def config(**section: Any) -> OrganiConfig:
    return parse_config({"token": Secret("t"), "base_url": URL, **section})


def test_new_time_entry_maps_every_required_field() -> None:
    assert worklog(entry(), STOCKHOLM, config(**MAPPED)) == {
        "worklogType": 1,  # defaults
        "performanceType": 20,  # the project row beats the defaults
        "description": "Kickoff with Nordlys & design review <v2>",  # decoded once
        "author": "anna.l",
        "startDate": "2026-03-10T09:00:00+01:00",
        "endDate": "2026-03-10T10:30:00+01:00",
        "jiraIssue": {"key": "WEB-7"},  # the task row beats the project row
    }


def test_no_jira_issue_when_none_is_mapped() -> None:
    body = worklog(entry(), STOCKHOLM, config(defaults=MAPPED["defaults"], users=MAPPED["users"]))
    assert "jiraIssue" not in body


def test_jira_issue_field_is_configurable() -> None:
    body = worklog(entry(), STOCKHOLM, config(**MAPPED, jira_issue_field="issueKey"))
    assert body["jiraIssue"] == {"issueKey": "WEB-7"}


def test_task_row_types_win() -> None:
    tasks = {TASK_DESIGN: {"worklog_type": 3, "performance_type": 4}}
    body = worklog(entry(), STOCKHOLM, config(**{**MAPPED, "tasks": tasks}))
    assert (body["worklogType"], body["performanceType"]) == (3, 4)
    assert body["jiraIssue"] == {"key": "WEB-1"}  # the task has no issue: the project's applies


@pytest.mark.parametrize(
    ("start", "end", "local_start", "local_end"),
    [
        (
            "2026-06-15T08:00:00Z",
            "2026-06-15T09:00:00Z",
            "2026-06-15T10:00:00+02:00",
            "2026-06-15T11:00:00+02:00",
        ),
        # Across local midnight: one worklog at the local start.
        (
            "2026-03-10T22:15:00Z",
            "2026-03-10T23:45:00Z",
            "2026-03-10T23:15:00+01:00",
            "2026-03-11T00:45:00+01:00",
        ),
        # Across the spring DST change: the end carries the new offset, one real hour later.
        (
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-29T01:30:00+01:00",
            "2026-03-29T03:30:00+02:00",
        ),
    ],
    ids=["summer", "midnight", "dst"],
)
def test_dates_are_local_to_the_owner(
    start: str, end: str, local_start: str, local_end: str
) -> None:
    body = worklog(entry(start=start, end=end), STOCKHOLM, config(**MAPPED))
    assert (body["startDate"], body["endDate"]) == (local_start, local_end)
    assert datetime.fromisoformat(body["startDate"]) == datetime.fromisoformat(start)
    assert datetime.fromisoformat(body["endDate"]) == datetime.fromisoformat(end)


def test_other_zone() -> None:
    body = worklog(entry(), ZoneInfo("America/New_York"), config(**MAPPED))
    assert body["startDate"] == "2026-03-10T04:00:00-04:00"


def test_unmapped_user_names_the_key_to_add() -> None:
    with pytest.raises(ConfigurationError) as info:
        worklog(entry(), STOCKHOLM, config(**{**MAPPED, "users": {}}))
    message = str(info.value)
    assert f'[targets.organi.users."{USER}"] author' in message
    assert "[targets.organi.defaults] author" in message


def test_default_author_applies_to_unmapped_users() -> None:
    section = {**MAPPED, "users": {}, "defaults": {**MAPPED["defaults"], "author": "shared"}}
    assert worklog(entry(), STOCKHOLM, config(**section))["author"] == "shared"


@pytest.mark.parametrize("key", ["worklog_type", "performance_type"])
def test_missing_type_names_the_keys_to_add(key: str) -> None:
    defaults = {k: v for k, v in MAPPED["defaults"].items() if k != key}
    projects = {PROJECT: {"jira_issue": "WEB-1"}}
    with pytest.raises(ConfigurationError) as info:
        worklog(
            entry(), STOCKHOLM, config(**{**MAPPED, "defaults": defaults, "projects": projects})
        )
    message = str(info.value)
    assert f'[targets.organi.tasks."{TASK_DESIGN}"] {key}' in message
    assert f'[targets.organi.projects."{PROJECT}"] {key}' in message
    assert f"[targets.organi.defaults] {key}" in message


def test_zero_length_entry_books_nothing() -> None:
    settings = Settings(targets={"organi": {"token": Secret("t"), "base_url": URL, **MAPPED}})
    connector = OrganiConnector(settings, settings.targets["organi"], redis.Redis())
    stopped = entry(end="2026-03-10T08:00:00Z")
    assert connector.bookings(stopped) == []
    assert len(connector.bookings(entry())) == 1


def test_config_defaults_and_paths() -> None:
    parsed = config()
    assert parsed.paths == PATH_DEFAULTS
    assert parsed.auth_header == "Authorization" and parsed.auth_value() == "Bearer t"
    assert parsed.cache_id is None
    custom = config(paths={"worklog": "/v2/worklogs/{id}"}, auth_header="X-Api-Key", auth_scheme="")
    assert custom.paths["worklog"] == "/v2/worklogs/{id}"
    assert custom.paths["worklogs"] == "/worklog"
    assert custom.auth_value() == "t"


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"base_url": None}, "ORGANI_BASE_URL"),
        ({"token": Secret(" ")}, "ORGANI_TOKEN"),
        ({"paths": {"worklog": "/worklog"}}, "must contain {id}"),
        ({"paths": {"mail": "/mail/{id}"}}, "takes no placeholder"),
        ({"paths": {"mail": "mail"}}, "starting with '/'"),
        ({"auth_header": "X Bad"}, "auth_header"),
        ({"defaults": {"worklog_type": "one"}}, "worklog_type must be a whole number"),
        ({"projects": {PROJECT: "WEB-1"}}, "must be a table"),
        ({"users": {USER: {}}}, "author is missing"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_config_refuses(section: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config({"token": Secret("t"), "base_url": URL, **section})
    assert fragment in str(info.value)
