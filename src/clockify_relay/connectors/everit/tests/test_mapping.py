"""Pure Everit mapping and config parsing against recorded Clockify payloads."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from tests.fixture_loader import PROJECT_WEBSITE as PROJECT
from tests.fixture_loader import TAG_MEETING, TAG_REMOTE, TASK_DESIGN, fixture_json
from tests.fixture_loader import USER_ANNA as USER

from clockify_relay.clockify.models import TimeEntry, parse_time_entry
from clockify_relay.connectors.everit.config import DEFAULT_BASE_URL, EveritConfig, parse_config
from clockify_relay.connectors.everit.connector import EveritConnector
from clockify_relay.connectors.everit.mapping import jira_keys, new_worklog, resolve_issue_id
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import Secret, Settings

STOCKHOLM = ZoneInfo("Europe/Stockholm")

# Ids from the recorded fixtures (tests/fixtures/clockify/NEW_TIME_ENTRY.json).


def entry(name: str = "NEW_TIME_ENTRY", **interval: Any) -> TimeEntry:
    """A fixture as a TimeEntry, optionally with timeInterval fields replaced."""
    payload = fixture_json(name)
    payload["timeInterval"].update(interval)
    return parse_time_entry(payload)


def config(**section: Any) -> EveritConfig:
    return parse_config({"api_key": Secret("k"), **section})


MAPPED = {
    "tasks": {TASK_DESIGN: {"issue_id": 10002}},
    "projects": {PROJECT: {"issue_id": 10001}},
    "tags": {TAG_MEETING: {"tag_id": 5}},
}


def test_new_time_entry_maps_to_local_worklog() -> None:
    body = new_worklog(entry(), STOCKHOLM, config(**MAPPED))
    assert body == {
        # Decoded once: "&amp;" → "&", "&lt;v2&gt;" → "<v2>".
        "description": "Kickoff with Nordlys & design review <v2>",
        "durationInSeconds": 5400,
        "isBillable": True,
        "issueId": 10002,  # the task row wins over the project row
        "workDate": "2026-03-10",
        "workStartTime": "09:00",  # 08:00Z in Stockholm (CET, +01:00)
        "worklogTagIds": [5],  # the Remote tag is unmapped and ignored
    }


def test_entry_before_local_midnight_is_one_worklog_on_the_start_day() -> None:
    # 22:15Z to 23:45Z is 23:15 to 00:45 in Stockholm: one worklog on the 10th, full 90 minutes.
    body = new_worklog(entry("NEW_TIME_ENTRY__midnight_stockholm"), STOCKHOLM, config(**MAPPED))
    assert body["workDate"] == "2026-03-10"
    assert body["workStartTime"] == "23:15"
    assert body["durationInSeconds"] == 5400
    assert body["description"] == "Hotfix deploy & smoke test"


def test_owner_zone_decides_date_and_time() -> None:
    # The same instant is 22:15 on the 10th in UTC and 07:15 on the 11th in Tokyo.
    midnight = entry("NEW_TIME_ENTRY__midnight_stockholm")
    body = new_worklog(midnight, ZoneInfo("UTC"), config(**MAPPED))
    assert (body["workDate"], body["workStartTime"]) == ("2026-03-10", "22:15")
    tokyo = new_worklog(midnight, ZoneInfo("Asia/Tokyo"), config(**MAPPED))
    assert (tokyo["workDate"], tokyo["workStartTime"]) == ("2026-03-11", "07:15")


@pytest.mark.parametrize(
    ("start", "end", "local_date", "local_time", "seconds"),
    [
        # Spring forward in Stockholm: 2026-03-29 02:00 CET → 03:00 CEST (01:00Z).
        ("2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z", "2026-03-29", "01:30", 3600),
        ("2026-03-29T01:30:00Z", "2026-03-29T02:00:00Z", "2026-03-29", "03:30", 1800),
        # Fall back: 2026-10-25 03:00 CEST → 02:00 CET (01:00Z); 00:30Z is 02:30 CEST.
        ("2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25", "02:30", 3600),
        ("2026-10-25T01:30:00Z", "2026-10-25T02:30:00Z", "2026-10-25", "02:30", 3600),
    ],
)
def test_dst_dates_use_the_offset_in_force(
    start: str, end: str, local_date: str, local_time: str, seconds: int
) -> None:
    body = new_worklog(entry(start=start, end=end), STOCKHOLM, config(**MAPPED))
    assert (body["workDate"], body["workStartTime"]) == (local_date, local_time)
    # Elapsed time, not wall-clock difference, even across the change.
    assert body["durationInSeconds"] == seconds


def test_html_entities_decoded_once() -> None:
    # The capture holds "&amp;lt;b&amp;gt; &amp;amp;": the person typed "&lt;b&gt; &amp;"
    # literally, so decoding exactly once must leave those entities in place.
    body = new_worklog(
        entry("TIME_ENTRY_DELETED__html_entities"),
        ZoneInfo("Europe/Belgrade"),
        config(defaults={"issue_id": 1}),
    )
    assert body["description"] == 'DSWH2_S4_html_entities &lt;b&gt; &amp; "q" <script>'
    assert body["isBillable"] is False
    assert (body["workDate"], body["workStartTime"]) == ("2026-08-08", "14:40")


def test_rich_capture_keeps_unicode_and_newlines() -> None:
    body = new_worklog(
        entry("TIME_ENTRY_DELETED__rich"),
        ZoneInfo("Europe/Belgrade"),
        config(tasks={"TASK_A": 7}, tags={"TAG_A": 1, "TAG_B": 2}),
    )
    assert body["description"] == (
        "DSWH1_rich™ entry with <b>bold</b> & emoji 🚀\nline two ДСВХ1_рич"  # noqa: RUF001
    )
    assert body["issueId"] == 7
    assert body["worklogTagIds"] == [1, 2]
    # 22:40Z on Aug 7 is 00:40 on Aug 8 in Belgrade (CEST).
    assert (body["workDate"], body["workStartTime"]) == ("2026-08-08", "00:40")


def test_legacy_payload_task_and_tag_ids() -> None:
    body = new_worklog(entry("NEW_TIME_ENTRY__legacy"), STOCKHOLM, config(**MAPPED))
    assert body["issueId"] == 10002
    assert body["worklogTagIds"] == [5]


def test_issue_resolution_order() -> None:
    e = entry()  # description has no Jira key
    assert resolve_issue_id(e, config(**MAPPED)) == 10002
    by_project = config(projects=MAPPED["projects"], defaults={"issue_id": 9})
    assert resolve_issue_id(e, by_project) == 10001
    assert resolve_issue_id(e, config(defaults={"issue_id": 9})) == 9


def test_jira_key_in_description_beats_default() -> None:
    payload = fixture_json("NEW_TIME_ENTRY")
    payload["description"] = "Review of lower-proj-1 and NRD-7, then XNRD-1042 and NRD-1042 again"
    e = parse_time_entry(payload)
    assert jira_keys(e.description) == ["NRD-7", "XNRD-1042", "NRD-1042"]
    cfg = config(issue_keys={"NRD-1042": 501}, defaults={"issue_id": 9})
    # NRD-7 and XNRD-1042 are unmapped; the first MAPPED key wins over the default.
    assert resolve_issue_id(e, cfg) == 501
    # A project row still beats a key in the description.
    cfg = config(issue_keys={"NRD-1042": 501}, projects={PROJECT: 3})
    assert resolve_issue_id(e, cfg) == 3


def test_jira_key_not_matched_inside_words() -> None:
    assert jira_keys("ABC-12x and aABC-13 and (ABC-14) ABC-") == ["ABC-14"]


def test_unmapped_entry_names_the_keys_to_add() -> None:
    payload = fixture_json("NEW_TIME_ENTRY")
    payload["description"] = "Work on NRD-1042"
    with pytest.raises(ConfigurationError) as info:
        new_worklog(parse_time_entry(payload), STOCKHOLM, config())
    message = str(info.value)
    assert "69b00a1e5d4c3b2a19f8e701" in message
    assert "'Website relaunch'" in message and "'Design'" in message
    assert f'[targets.everit.tasks."{TASK_DESIGN}"] issue_id' in message
    assert f'[targets.everit.projects."{PROJECT}"] issue_id' in message
    assert '[targets.everit.issue_keys] "NRD-1042"' in message
    assert "[targets.everit.defaults] issue_id" in message


def test_unmapped_entry_without_task_or_project() -> None:
    payload = fixture_json("NEW_TIME_ENTRY")
    payload.pop("projectId")
    payload["project"] = None
    payload["task"] = None
    with pytest.raises(ConfigurationError) as info:
        new_worklog(parse_time_entry(payload), STOCKHOLM, config())
    assert "no project, no task" in str(info.value)
    assert "tasks." not in str(info.value)


# -- config ---------------------------------------------------------------------------------


def test_config_parses_suggested_toml() -> None:
    cfg = parse_config(
        {
            "enabled": True,
            "api_key": Secret("s3cret"),
            "defaults": {"issue_id": 10000},
            "users": {USER: {"account_id": "557058:abc"}},
            "projects": {PROJECT: {"issue_id": 10001}},
            "tasks": {TASK_DESIGN: {"issue_id": "10002"}},
            "issue_keys": {"proj-12": 10012},
            "tags": {TAG_MEETING: {"tag_id": 5}, TAG_REMOTE: 6},
        }
    )
    assert cfg.base_url == DEFAULT_BASE_URL
    assert cfg.default_issue_id == 10000
    assert cfg.users == {USER: "557058:abc"}
    assert cfg.tasks == {TASK_DESIGN: 10002}
    assert cfg.issue_keys == {"PROJ-12": 10012}
    assert cfg.tags == {TAG_MEETING: 5, TAG_REMOTE: 6}
    assert "s3cret" not in repr(cfg)


def test_missing_api_key_names_env_var() -> None:
    with pytest.raises(ConfigurationError, match="EVERIT_API_KEY"):
        parse_config({"enabled": True})
    with pytest.raises(ConfigurationError, match="EVERIT_API_KEY"):
        parse_config({"api_key": Secret("  ")})


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"projects": {"P": {"issue_id": True}}}, '[targets.everit.projects."P"] issue_id'),
        ({"projects": {"P": {"issueId": 1}}}, '[targets.everit.projects."P"] issue_id is missing'),
        ({"tags": {"T": "five"}}, '[targets.everit.tags."T"] tag_id'),
        ({"users": {"U": {"account_id": ""}}}, '[targets.everit.users."U"] account_id'),
        ({"defaults": {"issue_id": 1.5}}, "[targets.everit.defaults] issue_id"),
        ({"projects": []}, "[targets.everit.projects] must be a table"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"timeout": 0}, "timeout"),
        ({"require_user_mapping": "yes"}, "require_user_mapping"),
        ({"on_behalf_for_delete": 1}, "on_behalf_for_delete"),
    ],
)
def test_bad_config_is_named(section: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config({"api_key": "k", **section})
    assert fragment in str(info.value)


# -- through the connector (zone from the payload or the settings) ---------------------------


def connector(settings: Settings, **section: Any) -> EveritConnector:
    # redis.Redis connects lazily; these tests never touch it.
    return EveritConnector(settings, {"api_key": "k", **section}, redis.Redis())


def test_bookings_use_payload_zone_then_user_zone_then_default() -> None:
    legacy = entry("NEW_TIME_ENTRY__legacy")  # no timeInterval.timeZone
    by_default = connector(Settings(default_timezone="America/New_York"), **MAPPED)
    # 08:00Z on 2026-03-10 is 04:00 EDT (DST began in the US on March 8).
    assert by_default.bookings(legacy)[0].payload["workStartTime"] == "04:00"
    by_user = connector(Settings(raw={"users": {USER: {"timezone": "Europe/Stockholm"}}}), **MAPPED)
    assert by_user.bookings(legacy)[0].payload["workStartTime"] == "09:00"
    # The payload's own zone beats both.
    assert by_default.bookings(entry())[0].payload["workStartTime"] == "09:00"


def test_bookings_one_record_with_empty_key_and_none_for_zero_length() -> None:
    conn = connector(Settings(), **MAPPED)
    bookings = conn.bookings(entry())
    assert [b.key for b in bookings] == [""]
    assert conn.bookings(entry(end="2026-03-10T08:00:00Z", duration="PT0S")) == []


def test_require_user_mapping_refuses_unmapped_user() -> None:
    conn = connector(Settings(), require_user_mapping=True, **MAPPED)
    with pytest.raises(ConfigurationError) as info:
        conn.bookings(entry())
    assert f'[targets.everit.users."{USER}"] account_id' in str(info.value)
    assert "Anna Lindqvist" in str(info.value)
    ok = connector(Settings(), require_user_mapping=True, users={USER: "acc"}, **MAPPED)
    assert len(ok.bookings(entry())) == 1


def test_connector_unknown_zone_is_configuration_error() -> None:
    conn = connector(Settings(default_timezone="Mars/Olympus"), **MAPPED)
    with pytest.raises(ConfigurationError, match="Mars/Olympus"):
        conn.bookings(entry("NEW_TIME_ENTRY__legacy"))
