"""The Everit connector against the sandbox's Everit fake over real HTTP."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
import redis
from tests.fixture_loader import TAG_MEETING, TASK_DESIGN, fixture_json
from tests.fixture_loader import USER_ANNA as USER

from clockify_relay.clockify.models import TimeEntry, parse_time_entry
from clockify_relay.connectors.base import Booking
from clockify_relay.connectors.everit.connector import EveritConnector
from clockify_relay.connectors.registry import connector_class
from clockify_relay.errors import (
    PermanentError,
    RelayError,
    TransientError,
    UnknownOutcomeError,
)
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, Settings

pytestmark = pytest.mark.integration

API_KEY = "sandbox-everit-key"
WRONG_KEY = "wrong-everit-key-0123456789"
ACCOUNT = "557058:anna"


def load_entry(name: str = "NEW_TIME_ENTRY", **changes: Any) -> TimeEntry:
    payload = fixture_json(name)
    payload.update(changes)
    return parse_time_entry(payload)


@pytest.fixture
def everit_url(sandbox: SandboxServer) -> str:
    sandbox.reset()
    return sandbox.base_urls["everit"]


def make(url: str, api_key: str = API_KEY, **section: Any) -> EveritConnector:
    """A connector built the way the engine builds it (registry, Settings, section)."""
    merged: dict[str, Any] = {
        "api_key": Secret(api_key),
        "base_url": url,
        "timeout": 2,
        "users": {USER: {"account_id": ACCOUNT}},
        "tasks": {TASK_DESIGN: {"issue_id": 10002}},
        "tags": {TAG_MEETING: {"tag_id": 5}},
        **section,
    }
    settings = Settings(targets={"everit": merged})
    cls = connector_class("everit")
    connector = cls(settings, settings.targets["everit"], redis.Redis())
    assert isinstance(connector, EveritConnector)
    return connector


def worklogs(sandbox: SandboxServer) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = sandbox.state()["everit"]["worklogs"]
    return records


def assert_no_secret(error: RelayError, *secrets: str) -> None:
    text = " ".join(str(part) for part in (error, error.message, error.response_excerpt))
    for secret in (API_KEY, WRONG_KEY, *secrets):
        assert secret not in text


def test_create_update_delete_round_trip(sandbox: SandboxServer, everit_url: str) -> None:
    conn = make(everit_url)
    entry = load_entry()
    [booking] = conn.bookings(entry)
    remote_id = conn.create(entry, booking)

    [record] = worklogs(sandbox)
    assert str(record["worklogId"]) == remote_id
    assert record["description"] == "Kickoff with Nordlys & design review <v2>"
    assert record["durationInSeconds"] == 5400
    assert record["issueId"] == 10002
    assert (record["workDate"], record["workStartTime"]) == ("2026-03-10", "09:00")
    assert record["worklogTagIds"] == [5]
    assert record["isBillable"] is True
    assert record["_headers"] == {
        "x-timezone": "Europe/Stockholm",
        "x-everit-on-behalf-account": ACCOUNT,
        "x-requested-by": "clockify-relay",
    }

    updated = load_entry("TIME_ENTRY_UPDATED")
    [new_booking] = conn.bookings(updated)
    assert conn.update(updated, remote_id, new_booking) == remote_id
    [record] = worklogs(sandbox)
    assert record["durationInSeconds"] == 7200
    assert record["description"].endswith("– notes sent")  # noqa: RUF001

    # An update that removes every tag and the description clears them on Everit too.
    cleared = load_entry("TIME_ENTRY_UPDATED", tags=[], description="")
    assert conn.update(cleared, remote_id, conn.bookings(cleared)[0]) == remote_id
    [record] = worklogs(sandbox)
    assert (record["worklogTagIds"], record["description"]) == ([], "")

    conn.delete(updated, remote_id)
    assert worklogs(sandbox) == []
    conn.close()


def test_without_user_mapping_no_on_behalf_header(sandbox: SandboxServer, everit_url: str) -> None:
    conn = make(everit_url, users={})
    entry = load_entry()
    conn.create(entry, conn.bookings(entry)[0])
    assert worklogs(sandbox)[0]["_headers"]["x-everit-on-behalf-account"] is None


def deleted(sandbox: SandboxServer) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = sandbox.state()["everit"]["deleted"]
    return records


def test_delete_sends_no_on_behalf_header_by_default(
    sandbox: SandboxServer, everit_url: str
) -> None:
    # Everit documents x-everit-on-behalf-account for POST and PATCH, not for DELETE.
    conn = make(everit_url)
    entry = load_entry()
    remote_id = conn.create(entry, conn.bookings(entry)[0])
    assert worklogs(sandbox)[0]["_headers"]["x-everit-on-behalf-account"] == ACCOUNT
    conn.delete(entry, remote_id)
    [gone] = deleted(sandbox)
    assert gone["worklogId"] == int(remote_id)
    assert gone["_headers"]["x-everit-on-behalf-account"] is None
    assert gone["_headers"]["x-timezone"] == "Europe/Stockholm"  # documented for DELETE


def test_delete_sends_the_on_behalf_header_when_configured(
    sandbox: SandboxServer, everit_url: str
) -> None:
    conn = make(everit_url, on_behalf_for_delete=True)
    entry = load_entry()
    remote_id = conn.create(entry, conn.bookings(entry)[0])
    conn.delete(entry, remote_id)
    [gone] = deleted(sandbox)
    assert gone["_headers"]["x-everit-on-behalf-account"] == ACCOUNT


def test_update_of_lost_worklog_recreates_it(sandbox: SandboxServer, everit_url: str) -> None:
    conn = make(everit_url)
    entry = load_entry()
    [booking] = conn.bookings(entry)
    first = conn.create(entry, booking)
    conn.delete(entry, first)  # someone deleted it in Everit
    new_id = conn.update(entry, first, booking)
    assert new_id != first
    assert [str(w["worklogId"]) for w in worklogs(sandbox)] == [new_id]


def test_delete_of_missing_worklog_counts_as_done(everit_url: str) -> None:
    conn = make(everit_url)
    conn.delete(load_entry(), "4242")  # WORKLOG_NOT_FOUND → no error


def test_non_numeric_remote_id_is_permanent(everit_url: str) -> None:
    conn = make(everit_url)
    entry = load_entry()
    with pytest.raises(PermanentError, match="not an Everit worklogId"):
        conn.update(entry, "abc", conn.bookings(entry)[0])
    with pytest.raises(PermanentError):
        conn.delete(entry, "abc")


def test_wrong_api_key_is_permanent_and_not_echoed(everit_url: str) -> None:
    conn = make(everit_url, api_key=WRONG_KEY)
    entry = load_entry()
    with pytest.raises(PermanentError) as info:
        conn.create(entry, conn.bookings(entry)[0])
    assert info.value.status == 401
    assert "EVERIT_API_KEY" in str(info.value)
    assert_no_secret(info.value)
    with pytest.raises(PermanentError) as probe_info:
        conn.probe()
    assert probe_info.value.status == 401


def test_probe_accepts_working_key(everit_url: str) -> None:
    assert make(everit_url).probe() == f"API key accepted at {everit_url}"


def test_missing_permission_479_is_permanent(sandbox: SandboxServer, everit_url: str) -> None:
    response = httpx.put(
        f"{sandbox.url}/_sandbox/everit/forbidden-accounts", json=[ACCOUNT], timeout=5
    )
    assert response.status_code == 200
    conn = make(everit_url)
    entry = load_entry()
    with pytest.raises(PermanentError) as info:
        conn.create(entry, conn.bookings(entry)[0])
    assert info.value.status == 479
    assert "permission" in str(info.value)
    assert_no_secret(info.value)


def test_validation_400_lists_field_errors(sandbox: SandboxServer, everit_url: str) -> None:
    conn = make(everit_url)
    entry = load_entry()
    bad = Booking(
        key="",
        payload={
            **conn.bookings(entry)[0].payload,
            "workDate": "10/03/2026",
            "workStartTime": "25:99",
        },
    )
    with pytest.raises(PermanentError) as info:
        conn.create(entry, bad)
    message = str(info.value)
    assert info.value.status == 400
    assert "InvalidFormat at workDate" in message
    assert "InvalidFormat at workStartTime" in message
    assert_no_secret(info.value)
    assert worklogs(sandbox) == []


def test_400_additional_errors_are_listed(sandbox: SandboxServer, everit_url: str) -> None:
    sandbox.inject_fault(
        "everit",
        status=400,
        body={
            "additionalErrors": [{"errorType": "PeriodicLimit", "extra": "2026-03"}],
            "fieldErrors": [{"errorType": "MaxHoursPerDay", "paths": [["durationInSeconds"]]}],
        },
    )
    conn = make(everit_url)
    entry = load_entry()
    with pytest.raises(PermanentError) as info:
        conn.create(entry, conn.bookings(entry)[0])
    assert "MaxHoursPerDay at durationInSeconds" in str(info.value)
    assert "PeriodicLimit (2026-03)" in str(info.value)


def test_503_is_transient(sandbox: SandboxServer, everit_url: str) -> None:
    sandbox.inject_fault("everit", status=503)
    conn = make(everit_url)
    entry = load_entry()
    with pytest.raises(TransientError) as info:
        conn.create(entry, conn.bookings(entry)[0])
    assert info.value.status == 503
    assert_no_secret(info.value)
    # The fault was one request long: the retry goes through.
    assert conn.create(entry, conn.bookings(entry)[0])


def test_429_carries_retry_after(sandbox: SandboxServer, everit_url: str) -> None:
    sandbox.inject_fault("everit", status=429, retry_after=7)
    conn = make(everit_url)
    entry = load_entry()
    with pytest.raises(TransientError) as info:
        conn.update(entry, "1", conn.bookings(entry)[0])
    assert info.value.status == 429
    assert info.value.retry_after == 7


def test_timeout_is_transient(sandbox: SandboxServer, everit_url: str) -> None:
    sandbox.inject_fault("everit", timeout=5)
    conn = make(everit_url, timeout=0.3)
    entry = load_entry()
    with pytest.raises(TransientError, match="Timeout") as info:
        conn.create(entry, conn.bookings(entry)[0])
    assert_no_secret(info.value)


def test_connection_refused_is_transient() -> None:
    # A port nothing listens on: bind one and close it again.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = make(f"http://127.0.0.1:{port}/public")
    entry = load_entry()
    with pytest.raises(TransientError, match="ConnectError"):
        conn.create(entry, conn.bookings(entry)[0])


def test_success_without_worklog_id_is_unknown_outcome(
    sandbox: SandboxServer, everit_url: str
) -> None:
    sandbox.inject_fault("everit", status=200, body={"description": "x"})
    conn = make(everit_url)
    entry = load_entry()
    with pytest.raises(UnknownOutcomeError):
        conn.create(entry, conn.bookings(entry)[0])


def test_other_patch_error_result_is_permanent(sandbox: SandboxServer, everit_url: str) -> None:
    sandbox.inject_fault(
        "everit",
        status=200,
        body={"error": {"message": "locked period", "result": "WORKLOG_LOCKED"}, "worklog": None},
    )
    conn = make(everit_url)
    entry = load_entry()
    with pytest.raises(PermanentError, match=r"WORKLOG_LOCKED.*locked period"):
        conn.update(entry, "1", conn.bookings(entry)[0])
