"""The Organi client and connector against the sandbox's Organi fake over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from tests.fixture_loader import PROJECT_WEBSITE as PROJECT
from tests.fixture_loader import USER_ANNA as USER
from tests.fixture_loader import fixture_json

from clockify_relay.clockify.models import TimeEntry, parse_time_entry
from clockify_relay.connectors.organi.api import (
    ConfirmationStatus,
    OrganiClient,
    StatusResult,
    WorklogStatus,
)
from clockify_relay.connectors.organi.config import parse_config
from clockify_relay.connectors.organi.connector import OrganiConnector
from clockify_relay.connectors.organi.fake import OrganiFake
from clockify_relay.connectors.registry import connector_class
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

TOKEN = "sandbox-organi-token"
WRONG_TOKEN = "wrong-organi-token-0123456789"


def load_entry(name: str = "NEW_TIME_ENTRY") -> TimeEntry:
    return parse_time_entry(fixture_json(name))


@pytest.fixture
def organi_url(sandbox: SandboxServer) -> str:
    sandbox.reset()
    return sandbox.base_urls["organi"]


def fake(sandbox: SandboxServer) -> OrganiFake:
    organi = sandbox.sandbox.fakes["organi"]
    assert isinstance(organi, OrganiFake)
    return organi


def section(url: str, token: str = TOKEN, **extra: Any) -> dict[str, Any]:
    return {
        "token": Secret(token),
        "base_url": url,
        "timeout": 2,
        "cache_id": "cache-1",
        "defaults": {"worklog_type": 1, "performance_type": 2},
        "users": {USER: {"author": "anna"}},
        "projects": {PROJECT: {"jira_issue": "WEB-1"}},
        **extra,
    }


def make(url: str, token: str = TOKEN, **extra: Any) -> OrganiConnector:
    """A connector built the way the engine builds it (registry, Settings, section)."""
    settings = Settings(targets={"organi": section(url, token, **extra)})
    connector = connector_class("organi")(settings, settings.targets["organi"], redis.Redis())
    assert isinstance(connector, OrganiConnector)
    return connector


@pytest.fixture
def client(organi_url: str) -> Iterator[OrganiClient]:
    organi = OrganiClient(parse_config(section(organi_url)))
    yield organi
    organi.close()


def worklogs(sandbox: SandboxServer) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = sandbox.state()["organi"]["worklogs"]
    return records


def assert_no_secret(error: RelayError) -> None:
    text = " ".join(str(part) for part in (error, error.message, error.response_excerpt))
    for secret in (TOKEN, WRONG_TOKEN):
        assert secret not in text


def new_worklog(conn: OrganiConnector) -> str:
    entry = load_entry()
    [booking] = conn.bookings(entry)
    return conn.create(entry, booking)


# -- worklogs -------------------------------------------------------------------------------


def test_create_update_delete_round_trip(sandbox: SandboxServer, organi_url: str) -> None:
    conn = make(organi_url)
    remote_id = new_worklog(conn)
    [stored] = worklogs(sandbox)
    assert str(stored["worklogId"]) == remote_id
    assert stored["author"] == "anna" and stored["jiraIssue"] == {"key": "WEB-1"}
    updated = load_entry("TIME_ENTRY_UPDATED")
    [booking] = conn.bookings(updated)
    assert conn.update(updated, remote_id, booking) == remote_id
    [after] = worklogs(sandbox)
    assert after["description"].endswith("notes sent")
    conn.delete(updated, remote_id)
    assert worklogs(sandbox) == []
    assert sandbox.state()["requests"]["organi"] == 3


def test_update_of_a_lost_worklog_recreates_it(sandbox: SandboxServer, organi_url: str) -> None:
    conn = make(organi_url)
    first = new_worklog(conn)
    fake(sandbox).reset()
    entry = load_entry()
    [booking] = conn.bookings(entry)
    again = conn.update(entry, first, booking)
    [stored] = worklogs(sandbox)
    assert again == str(stored["worklogId"])


def test_delete_of_a_missing_worklog_counts_as_done_in_both_readings(
    sandbox: SandboxServer, organi_url: str
) -> None:
    conn = make(organi_url)
    assert conn.client.delete_worklog("4242") is False  # 404, GET 404, worklog types listed
    fake(sandbox).set_behaviour({"delete_missing": "200"})
    assert conn.client.delete_worklog("4242") is True


def test_delete_without_cache_id_when_organi_needs_one_names_the_key(
    sandbox: SandboxServer, organi_url: str
) -> None:
    conn = make(organi_url)
    remote_id = new_worklog(conn)
    no_cache = make(organi_url, cache_id=None)
    with pytest.raises(ConfigurationError, match=r"\[targets.organi\] cache_id"):
        no_cache.client.delete_worklog(remote_id)
    assert len(worklogs(sandbox)) == 1
    fake(sandbox).set_behaviour({"cache_id": "optional"})
    assert no_cache.client.delete_worklog(remote_id) is True
    assert worklogs(sandbox) == []


def test_delete_at_a_wrong_base_url_is_a_configuration_error(
    sandbox: SandboxServer, organi_url: str
) -> None:
    remote_id = new_worklog(make(organi_url))
    wrong = make(sandbox.url + "/organi/v9")
    with pytest.raises(ConfigurationError, match="ORGANI_BASE_URL"):
        wrong.client.delete_worklog(remote_id)
    assert len(worklogs(sandbox)) == 1


def test_success_without_worklog_id_is_unknown_outcome(
    sandbox: SandboxServer, organi_url: str
) -> None:
    fake(sandbox).set_behaviour({"create_response": "no-id"})
    with pytest.raises(UnknownOutcomeError, match="--force"):
        new_worklog(make(organi_url))
    assert len(worklogs(sandbox)) == 1


def test_numeric_string_id_in_the_answer_is_accepted(
    sandbox: SandboxServer, organi_url: str
) -> None:
    sandbox.inject_fault("organi", status=200, body={"worklogId": "77"}, method="POST")
    assert new_worklog(make(organi_url)) == "77"


def test_configured_paths_are_used(sandbox: SandboxServer, organi_url: str) -> None:
    conn = make(organi_url, paths={"worklogs": "/elsewhere"})
    with pytest.raises(PermanentError) as info:
        new_worklog(conn)
    assert info.value.status in (404, 405) and "/elsewhere" in str(info.value)


# -- auth and the error taxonomy ------------------------------------------------------------


def test_wrong_token_is_permanent_and_not_echoed(sandbox: SandboxServer, organi_url: str) -> None:
    with pytest.raises(PermanentError) as info:
        new_worklog(make(organi_url, token=WRONG_TOKEN))
    assert info.value.status == 401 and "ORGANI_TOKEN" in str(info.value)
    assert_no_secret(info.value)
    assert worklogs(sandbox) == []


@pytest.mark.parametrize(
    "auth", [{"auth_scheme": "Token"}, {"auth_header": "X-Api-Key"}], ids=["scheme", "header"]
)
def test_other_auth_header_or_scheme_is_refused_by_the_fake(
    organi_url: str, auth: dict[str, str]
) -> None:
    with pytest.raises(PermanentError) as info:
        make(organi_url, **auth).probe()
    assert info.value.status == 401
    assert_no_secret(info.value)


def test_probe_accepts_a_working_token(organi_url: str) -> None:
    assert "2 worklog types" in make(organi_url).probe()


def test_validation_400_is_permanent_with_the_message(
    sandbox: SandboxServer, client: OrganiClient
) -> None:
    with pytest.raises(PermanentError) as info:
        client.create_worklog({"author": "anna"})
    assert info.value.status == 400
    assert "missing required fields" in str(info.value)


def test_text_error_body_is_shown(sandbox: SandboxServer, client: OrganiClient) -> None:
    fake(sandbox).set_behaviour({"error_body": "text"})
    with pytest.raises(PermanentError, match="missing required fields"):
        client.create_worklog({"author": "anna"})


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_transient(sandbox: SandboxServer, organi_url: str, status: int) -> None:
    sandbox.inject_fault("organi", status=status)
    with pytest.raises(TransientError) as info:
        new_worklog(make(organi_url))
    assert info.value.status == status and not info.value.outcome_unknown


def test_429_carries_retry_after(sandbox: SandboxServer, client: OrganiClient) -> None:
    sandbox.inject_fault("organi", status=429, retry_after=12)
    with pytest.raises(TransientError) as info:
        client.set_worklog_status([1], WorklogStatus.APPROVED)
    assert info.value.retry_after == 12


def test_other_4xx_is_permanent_with_its_message(
    sandbox: SandboxServer, client: OrganiClient
) -> None:
    sandbox.inject_fault("organi", status=409, body={"message": "worklog is approved"})
    with pytest.raises(PermanentError, match="worklog is approved") as info:
        client.update_worklog("5", {"author": "a"})
    assert info.value.status == 409 and not isinstance(info.value, UnknownOutcomeError)


def test_timeout_is_transient_with_unknown_outcome(sandbox: SandboxServer, organi_url: str) -> None:
    sandbox.inject_fault("organi", timeout=5)
    with pytest.raises(TransientError, match="Timeout") as info:
        new_worklog(make(organi_url, timeout=0.5))
    assert info.value.outcome_unknown


def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError, match="ConnectError"):
        new_worklog(make(f"http://127.0.0.1:{port}"))


# -- statuses and mailings ------------------------------------------------------------------


def test_set_worklog_status_parses_the_three_lists(
    sandbox: SandboxServer, organi_url: str, client: OrganiClient
) -> None:
    conn = make(organi_url)
    a, b, c = (new_worklog(conn) for _ in range(3))
    fake(sandbox).set_behaviour({"status_outcomes": {c: "denied"}})
    result = client.set_worklog_status(
        [a, int(b), c, "9999"],
        WorklogStatus.INVOICED,
        "monthly run",
        order_number="PO-1",
        invoice_number="INV-9",
        invoice_date=datetime(2026, 3, 31, tzinfo=UTC),
    )
    assert result == StatusResult(success=(a, b), failed=("9999",), denied=(c,))
    [call] = sandbox.state()["organi"]["statusUpdates"]
    assert call["worklogIds"] == [int(a), int(b), int(c), 9999]  # numbers, as documented
    assert (call["statusId"], call["comment"]) == (5, "monthly run")
    assert (call["orderNumber"], call["invoiceNumber"]) == ("PO-1", "INV-9")
    assert call["invoiceDate"] == "2026-03-31T00:00:00+00:00"


def test_status_without_comment_sends_none(sandbox: SandboxServer, client: OrganiClient) -> None:
    client.set_confirmation_status([3], ConfirmationStatus.APPROVED)
    [call] = sandbox.state()["organi"]["statusUpdates"]
    assert call == {"operation": "confirmation", "worklogIds": [3], "statusId": 7, "comment": None}


def test_undo_and_history(sandbox: SandboxServer, organi_url: str, client: OrganiClient) -> None:
    wid = new_worklog(make(organi_url))
    client.set_worklog_status([wid], WorklogStatus.APPROVED, "fine")
    client.set_worklog_status([wid], WorklogStatus.PRE_INVOICED)
    history = client.worklog_status_history(wid)
    assert [h.raw["statusType"]["statusTypeId"] for h in history] == [4, 11]
    assert history[0].author == "sandbox" and history[0].status_date
    assert client.undo_worklog_status([wid], WorklogStatus.PRE_INVOICED, order_number="PO") == (
        StatusResult(success=(wid,), failed=(), denied=())
    )
    assert len(client.worklog_status_history(wid)) == 1
    client.set_confirmation_status([wid], ConfirmationStatus.APPROVED, "customer ok")
    [confirmation] = client.confirmation_status_history(wid)
    assert confirmation.raw["comments"] == [{"comment": "customer ok"}]
    result = client.undo_confirmation_status([wid], ConfirmationStatus.APPROVED)
    assert result.success == (wid,)
    assert client.confirmation_status_history(wid) == []


@pytest.mark.parametrize(
    ("call", "status_id"),
    [
        ("set_worklog_status", 6),
        ("undo_worklog_status", 1),
        ("set_confirmation_status", 4),
        ("undo_confirmation_status", 10),
    ],
)
def test_status_outside_the_documented_enum_is_refused_before_sending(
    sandbox: SandboxServer, client: OrganiClient, call: str, status_id: int
) -> None:
    with pytest.raises(PermanentError, match="statusId"):
        getattr(client, call)([1], status_id)
    assert sandbox.state()["requests"]["organi"] == 0


@pytest.mark.parametrize(
    "body",
    [{"success": ["1"], "failed": []}, {"success": "1", "failed": [], "denied": []}, []],
    ids=["missing-denied", "not-a-list", "not-an-object"],
)
def test_status_answer_without_the_lists_is_an_unknown_outcome(
    sandbox: SandboxServer, client: OrganiClient, body: Any
) -> None:
    sandbox.inject_fault("organi", status=200, body=body)
    with pytest.raises(UnknownOutcomeError, match="unknown"):
        client.set_worklog_status([1], WorklogStatus.TO_APPROVE)


def test_numeric_ids_in_the_status_answer_become_strings(
    sandbox: SandboxServer, client: OrganiClient
) -> None:
    sandbox.inject_fault("organi", status=200, body={"success": [1], "failed": [], "denied": [2]})
    assert client.set_worklog_status([1, 2], 1) == StatusResult(("1",), (), ("2",))


def test_history_of_an_unknown_worklog_is_permanent(client: OrganiClient) -> None:
    with pytest.raises(PermanentError) as info:
        client.worklog_status_history(4242)
    assert info.value.status == 404


def test_send_mailing(sandbox: SandboxServer, client: OrganiClient) -> None:
    assert client.send_mailing("weekly approvals") == {}
    assert sandbox.state()["organi"]["mailings"] == [{"list": "weekly approvals"}]
    with pytest.raises(PermanentError):
        client.send_mailing(" ")
