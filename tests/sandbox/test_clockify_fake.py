"""The Clockify REST fake (time entry re-read, key and workspace probes), over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from clockify_relay.sandbox.clockify import REST_KEYS, ClockifyFake
from clockify_relay.sandbox.server import SandboxServer
from tests.fixture_loader import fixture_json

KEY = {"X-Api-Key": "sandbox-clockify-key"}
WS = "64a687e29ae1f428e7ebe303"
ENTRY: dict[str, Any] = {
    "id": "64c777ddd3fcab07cfbb210c",
    "workspaceId": WS,
    "userId": "5a0ab5acb07987125438b60f",
    "description": "Sample",
    "billable": True,
    "projectId": "25b687e29ae1f428e7ebe123",
    "tagIds": [],
    "timeInterval": {
        "start": "2024-01-01T08:00:00Z",
        "end": "2024-01-01T09:30:00Z",
        "duration": "PT1H30M",
    },
    "type": "REGULAR",
}


def _entry_url(sandbox: SandboxServer, ws: str = WS, entry_id: str = ENTRY["id"]) -> str:
    return f"{sandbox.base_urls['clockify']}/v1/workspaces/{ws}/time-entries/{entry_id}"


def _seed(http: httpx.Client, sandbox: SandboxServer, entry: dict[str, Any]) -> httpx.Response:
    return http.put(f"{sandbox.url}/_sandbox/clockify/time-entries", json=entry)


def test_get_time_entry(sandbox: SandboxServer, http: httpx.Client) -> None:
    assert _seed(http, sandbox, ENTRY).status_code == 200
    r = http.get(_entry_url(sandbox), headers=KEY)
    assert r.status_code == 200
    body = r.json()
    # The documented response: its keys only, the duration as seconds in a string.
    assert list(body) == list(REST_KEYS)
    assert body["timeInterval"] == {
        "duration": "5400",
        "end": "2024-01-01T09:30:00Z",
        "start": "2024-01-01T08:00:00Z",
    }
    assert {k: body[k] for k in ENTRY if k != "timeInterval"} == {
        k: v for k, v in ENTRY.items() if k != "timeInterval"
    }
    assert body["taskId"] is None and body["kioskId"] is None
    assert sandbox.state()["clockify"]["time_entries"] == [ENTRY]


def test_webhook_shaped_seed_is_answered_in_rest_form(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    # A webhook body carries timeZone, offsets, zoned times and nested objects; the REST API
    # answers none of them ("Get a specific time entry on workspace").
    webhook = fixture_json("NEW_TIME_ENTRY")
    assert webhook["timeInterval"]["timeZone"] == "Europe/Stockholm"
    assert _seed(http, sandbox, webhook).status_code == 200
    url = _entry_url(sandbox, ws=webhook["workspaceId"], entry_id=webhook["id"])
    body = http.get(url, headers=KEY).json()
    assert list(body) == list(REST_KEYS)
    assert body["timeInterval"] == {
        "duration": "5400",
        "end": webhook["timeInterval"]["end"],
        "start": webhook["timeInterval"]["start"],
    }
    assert body["projectId"] == webhook["project"]["id"]
    assert body["taskId"] == webhook["task"]["id"]
    assert body["userId"] == webhook["userId"]
    assert body["tagIds"] == [t["id"] for t in webhook["tags"]]


def test_running_entry_has_no_duration(sandbox: SandboxServer, http: httpx.Client) -> None:
    running = {
        **ENTRY,
        "timeInterval": {"start": "2024-01-01T08:00:00Z", "end": None, "duration": None},
    }
    _seed(http, sandbox, running)
    interval = http.get(_entry_url(sandbox), headers=KEY).json()["timeInterval"]
    assert interval == {"duration": None, "end": None, "start": "2024-01-01T08:00:00Z"}


def test_put_replaces(sandbox: SandboxServer, http: httpx.Client) -> None:
    _seed(http, sandbox, ENTRY)
    _seed(http, sandbox, {**ENTRY, "description": "changed"})
    assert http.get(_entry_url(sandbox), headers=KEY).json()["description"] == "changed"
    assert len(sandbox.state()["clockify"]["time_entries"]) == 1


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "wrong"}, {"X-Addon-Token": "x"}])
def test_wrong_or_missing_key_is_401(
    sandbox: SandboxServer, http: httpx.Client, headers: dict[str, str]
) -> None:
    _seed(http, sandbox, ENTRY)
    for url in (
        _entry_url(sandbox),
        f"{sandbox.base_urls['clockify']}/v1/user",
        f"{sandbox.base_urls['clockify']}/v1/workspaces/{WS}",
    ):
        r = http.get(url, headers=headers)
        assert r.status_code == 401
        assert set(r.json()) == {"message", "code"}


def test_unknown_entry_is_404(sandbox: SandboxServer, http: httpx.Client) -> None:
    _seed(http, sandbox, ENTRY)
    r = http.get(_entry_url(sandbox, entry_id="missing"), headers=KEY)
    assert r.status_code == 404
    assert set(r.json()) == {"message", "code"}
    # The entry exists, but not in that workspace.
    assert http.get(_entry_url(sandbox, ws="other"), headers=KEY).status_code == 404


def test_delete_entry(sandbox: SandboxServer, http: httpx.Client) -> None:
    _seed(http, sandbox, ENTRY)
    control = f"{sandbox.url}/_sandbox/clockify/time-entries/{ENTRY['id']}"
    assert http.delete(control).status_code == 200
    assert http.get(_entry_url(sandbox), headers=KEY).status_code == 404
    assert http.delete(control).status_code == 404


def test_user_probe(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = http.get(f"{sandbox.base_urls['clockify']}/v1/user", headers=KEY)
    assert r.status_code == 200
    assert r.json()["id"] and r.json()["status"] == "ACTIVE"


def test_workspace_probe(sandbox: SandboxServer, http: httpx.Client) -> None:
    url = f"{sandbox.base_urls['clockify']}/v1/workspaces"
    assert http.get(f"{url}/{WS}", headers=KEY).status_code == 403
    _seed(http, sandbox, ENTRY)
    r = http.get(f"{url}/{WS}", headers=KEY)
    assert (r.status_code, r.json()["id"]) == (200, WS)
    assert http.put(f"{sandbox.url}/_sandbox/clockify/workspaces/ws2").status_code == 200
    assert http.get(f"{url}/ws2", headers=KEY).status_code == 200
    sandbox.reset()
    assert http.get(f"{url}/ws2", headers=KEY).status_code == 403


@pytest.mark.parametrize(
    "entry",
    [
        {**ENTRY, "id": ""},
        {k: v for k, v in ENTRY.items() if k != "workspaceId"},
        {**ENTRY, "timeInterval": {"end": "2024-01-01T09:30:00Z"}},
        {**ENTRY, "timeInterval": {"start": "2024-01-01T08:00:00"}},
        {**ENTRY, "timeInterval": {"start": "2024-01-01T08:00:00Z", "end": "later"}},
        [ENTRY],
    ],
)
def test_seeding_rejects_malformed_entries(
    sandbox: SandboxServer, http: httpx.Client, entry: Any
) -> None:
    assert _seed(http, sandbox, entry).status_code == 400
    assert sandbox.state()["clockify"]["time_entries"] == []


def test_in_process_seeding(sandbox: SandboxServer, http: httpx.Client) -> None:
    fake = sandbox.sandbox.fakes["clockify"]
    assert isinstance(fake, ClockifyFake)
    fake.put_time_entry(ENTRY)
    assert http.get(_entry_url(sandbox), headers=KEY).status_code == 200
    with pytest.raises(ValueError):
        fake.put_time_entry({"id": "x"})


def test_clockify_faults(sandbox: SandboxServer, http: httpx.Client) -> None:
    _seed(http, sandbox, ENTRY)
    sandbox.inject_fault("clockify", status=503, count=1)
    assert http.get(_entry_url(sandbox), headers=KEY).status_code == 503
    assert http.get(_entry_url(sandbox), headers=KEY).status_code == 200
    # Seeding is a control route: not counted.
    assert sandbox.state()["requests"]["clockify"] == 2
