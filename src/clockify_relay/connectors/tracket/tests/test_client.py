"""The Tracket connector against the sandbox's Tracket fake over real HTTP."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
import redis
from tests.fixture_loader import PROJECT_WEBSITE as PROJECT
from tests.fixture_loader import TASK_DESIGN, fixture_json
from tests.fixture_loader import USER_ANNA as USER

from clockify_relay.clockify.models import TimeEntry, parse_time_entry
from clockify_relay.connectors.base import Booking
from clockify_relay.connectors.registry import connector_class
from clockify_relay.connectors.tracket.connector import TracketConnector
from clockify_relay.errors import (
    ConfigurationError,
    PermanentError,
    RelayError,
    TransientError,
    UnknownOutcomeError,
)
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, Settings

pytestmark = pytest.mark.integration

TOKEN = "sandbox-tracket-token"
WRONG_TOKEN = "wrong-tracket-token-0123456789"


def load_entry(name: str = "NEW_TIME_ENTRY", **changes: Any) -> TimeEntry:
    payload = fixture_json(name)
    payload.update(changes)
    return parse_time_entry(payload)


@pytest.fixture
def tracket_url(sandbox: SandboxServer) -> str:
    sandbox.reset()
    return sandbox.base_urls["tracket"]


def make(url: str, token: str = TOKEN, **section: Any) -> TracketConnector:
    """A connector built the way the engine builds it (registry, Settings, section)."""
    merged: dict[str, Any] = {
        "token": Secret(token),
        "base_url": url,
        "timeout": 2,
        "users": {USER: {"user_id": "tk-anna"}},
        "projects": {PROJECT: {"item_id": "item-web", "worklog_category": "cat-dev"}},
        "tasks": {TASK_DESIGN: {"item_id": "item-design"}},
        **section,
    }
    settings = Settings(targets={"tracket": merged})
    cls = connector_class("tracket")
    connector = cls(settings, settings.targets["tracket"], redis.Redis())
    assert isinstance(connector, TracketConnector)
    return connector


def worklogs(sandbox: SandboxServer) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = sandbox.state()["tracket"]["worklogs"]
    return records


def assert_no_secret(error: RelayError) -> None:
    text = " ".join(str(part) for part in (error, error.message, error.response_excerpt))
    for secret in (TOKEN, WRONG_TOKEN):
        assert secret not in text


def test_create_update_delete_round_trip(sandbox: SandboxServer, tracket_url: str) -> None:
    conn = make(tracket_url)
    entry = load_entry()
    [booking] = conn.bookings(entry)
    remote_id = conn.create(entry, booking)

    [record] = worklogs(sandbox)
    assert record["worklogId"] == remote_id
    assert record["itemId"] == "item-design"
    assert record["userId"] == "tk-anna"
    assert record["description"] == "Kickoff with Nordlys & design review <v2>"
    assert record["worklogCategory"] == "cat-dev"
    assert record["worklogDate"] == "2026-03-10T09:00:00+01:00"
    assert (record["worklogMinutes"], record["worklogBillableMinutes"]) == (90.0, 90.0)

    updated = load_entry("TIME_ENTRY_UPDATED", billable=False)
    assert conn.update(updated, remote_id, conn.bookings(updated)[0]) == remote_id
    [record] = worklogs(sandbox)
    assert (record["worklogMinutes"], record["worklogBillableMinutes"]) == (120.0, 0)
    assert record["description"].endswith("notes sent")

    conn.delete(updated, remote_id)
    assert worklogs(sandbox) == []
    conn.close()


def test_update_of_lost_worklog_recreates_it(sandbox: SandboxServer, tracket_url: str) -> None:
    conn = make(tracket_url)
    entry = load_entry()
    [booking] = conn.bookings(entry)
    new_id = conn.update(entry, "gone-worklog-id", booking)
    assert new_id != "gone-worklog-id"
    assert [w["worklogId"] for w in worklogs(sandbox)] == [new_id]


def test_delete_of_missing_worklog_counts_as_done(tracket_url: str) -> None:
    make(tracket_url).delete(load_entry(), "gone-worklog-id")


def test_delete_of_worklog_deleted_behind_our_back_counts_as_gone(
    sandbox: SandboxServer, tracket_url: str
) -> None:
    conn = make(tracket_url)
    entry = load_entry()
    remote_id = conn.create(entry, conn.bookings(entry)[0])
    # Someone deletes it in Tracket itself.
    gone = httpx.delete(
        f"{tracket_url}/worklogs/{remote_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert gone.status_code == 200
    conn.delete(entry, remote_id)  # confirmed missing: no error
    assert worklogs(sandbox) == []


@pytest.mark.parametrize("wrong", ["/tracket/api/2.0", "/tracket", "/tracket/api/1.0/v1"])
def test_delete_at_a_wrong_base_url_is_a_configuration_error(
    sandbox: SandboxServer, tracket_url: str, wrong: str
) -> None:
    # A wrong or retired path answers 404 to everything: that is no proof the worklog is gone.
    entry = load_entry()
    remote_id = make(tracket_url).create(entry, make(tracket_url).bookings(entry)[0])
    misconfigured = make(sandbox.url + wrong)
    with pytest.raises(ConfigurationError) as info:
        misconfigured.delete(entry, remote_id)
    assert "TRACKET_BASE_URL" in str(info.value)
    assert sandbox.url + wrong in str(info.value)
    assert_no_secret(info.value)
    assert [w["worklogId"] for w in worklogs(sandbox)] == [remote_id]


def test_probe_at_a_wrong_base_url_is_a_configuration_error(sandbox: SandboxServer) -> None:
    with pytest.raises(ConfigurationError, match="TRACKET_BASE_URL"):
        make(sandbox.url + "/tracket/api/2.0").probe()


def test_odd_remote_id_stays_in_its_path_segment(sandbox: SandboxServer, tracket_url: str) -> None:
    # "../worklogs" must not escape /worklogs/{id}: quoted, it is just an unknown id → 404.
    conn = make(tracket_url)
    entry = load_entry()
    kept = conn.create(entry, conn.bookings(entry)[0])
    conn.delete(entry, "x/../" + kept)
    assert [w["worklogId"] for w in worklogs(sandbox)] == [kept]


def test_wrong_token_is_permanent_and_not_echoed(tracket_url: str) -> None:
    conn = make(tracket_url, token=WRONG_TOKEN)
    entry = load_entry()
    with pytest.raises(PermanentError) as info:
        conn.create(entry, conn.bookings(entry)[0])
    assert info.value.status == 401
    assert "TRACKET_TOKEN" in str(info.value)
    assert_no_secret(info.value)
    with pytest.raises(PermanentError):
        conn.probe()


def test_wrong_auth_scheme_is_refused(tracket_url: str) -> None:
    # The fake wants "Bearer"; a configured "Token" scheme is refused like a bad token.
    conn = make(tracket_url, auth_scheme="Token")
    with pytest.raises(PermanentError) as info:
        conn.probe()
    assert info.value.status == 401
    assert_no_secret(info.value)


def test_probe_accepts_working_token(tracket_url: str) -> None:
    assert make(tracket_url).probe() == f"token accepted at {tracket_url}"


def test_validation_400_is_permanent_and_names_fields(
    sandbox: SandboxServer, tracket_url: str
) -> None:
    conn = make(tracket_url)
    entry = load_entry()
    bad = Booking(key="", payload={**conn.bookings(entry)[0].payload, "worklogDate": "2026-03-10"})
    with pytest.raises(PermanentError) as info:
        conn.create(entry, bad)
    assert info.value.status == 400
    assert "worklogDate" in str(info.value)
    assert_no_secret(info.value)
    assert worklogs(sandbox) == []


def test_503_is_transient(sandbox: SandboxServer, tracket_url: str) -> None:
    sandbox.inject_fault("tracket", status=503)
    conn = make(tracket_url)
    entry = load_entry()
    with pytest.raises(TransientError) as info:
        conn.delete(entry, "some-id")
    assert info.value.status == 503
    assert_no_secret(info.value)


def test_429_carries_retry_after(sandbox: SandboxServer, tracket_url: str) -> None:
    sandbox.inject_fault("tracket", status=429, retry_after=12)
    conn = make(tracket_url)
    entry = load_entry()
    with pytest.raises(TransientError) as info:
        conn.create(entry, conn.bookings(entry)[0])
    assert info.value.retry_after == 12
    assert worklogs(sandbox) == []


def test_timeout_is_transient(sandbox: SandboxServer, tracket_url: str) -> None:
    sandbox.inject_fault("tracket", timeout=5)
    conn = make(tracket_url, timeout=0.3)
    entry = load_entry()
    with pytest.raises(TransientError, match="Timeout") as info:
        conn.update(entry, "some-id", conn.bookings(entry)[0])
    assert_no_secret(info.value)


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = make(f"http://127.0.0.1:{port}/api/1.0")
    entry = load_entry()
    with pytest.raises(TransientError, match="ConnectError"):
        conn.create(entry, conn.bookings(entry)[0])


def test_success_without_worklog_id_is_unknown_outcome(
    sandbox: SandboxServer, tracket_url: str
) -> None:
    sandbox.inject_fault("tracket", status=201, body={"itemId": "item-design"})
    conn = make(tracket_url)
    entry = load_entry()
    with pytest.raises(UnknownOutcomeError):
        conn.create(entry, conn.bookings(entry)[0])


def test_other_4xx_on_update_is_permanent(sandbox: SandboxServer, tracket_url: str) -> None:
    sandbox.inject_fault("tracket", status=409, body={"message": "worklog is approved"})
    conn = make(tracket_url)
    entry = load_entry()
    with pytest.raises(PermanentError, match="worklog is approved") as info:
        conn.update(entry, "some-id", conn.bookings(entry)[0])
    assert info.value.status == 409
