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


# -- users, per-user listing, webhooks (operator commands) --------------------------------------

API = "sandbox-api"


def _api(sandbox: SandboxServer, path: str) -> str:
    return f"{sandbox.base_urls['clockify']}/v1/workspaces/{WS}{path}"


def _fake(sandbox: SandboxServer) -> ClockifyFake:
    fake = sandbox.sandbox.fakes["clockify"]
    assert isinstance(fake, ClockifyFake)
    return fake


def _entry_at(entry_id: str, user: str, start: str, end: str) -> dict[str, Any]:
    return {**ENTRY, "id": entry_id, "userId": user, "timeInterval": {"start": start, "end": end}}


def test_users_listed_seeded_and_from_entries(sandbox: SandboxServer, http: httpx.Client) -> None:
    _fake(sandbox).put_user(WS, "u-seeded", name="Ann", email="ann@example.com")
    _seed(http, sandbox, _entry_at("e1", "u-entry", "2024-01-01T08:00:00Z", "2024-01-01T09:00:00Z"))
    r = http.get(_api(sandbox, "/users"), headers=KEY)
    assert r.status_code == 200
    users = r.json()
    assert [u["id"] for u in users] == ["u-seeded", "u-entry"]  # by email, as documented
    assert set(users[0]) == {
        "activeWorkspace",
        "customFields",
        "defaultWorkspace",
        "email",
        "id",
        "memberships",
        "name",
        "profilePicture",
        "settings",
        "status",
    }
    page = http.get(_api(sandbox, "/users"), params={"page": 2, "page-size": 1}, headers=KEY)
    assert [u["id"] for u in page.json()] == ["u-entry"]
    assert http.get(_api(sandbox, "/users")).status_code == 401


def test_user_time_entries_paged_and_bounded(sandbox: SandboxServer, http: httpx.Client) -> None:
    fake = _fake(sandbox)
    for day in range(1, 6):
        fake.put_time_entry(
            _entry_at(f"e{day}", "u1", f"2024-01-0{day}T08:00:00Z", f"2024-01-0{day}T09:00:00Z")
        )
    fake.put_time_entry(_entry_at("other", "u2", "2024-01-02T08:00:00Z", "2024-01-02T09:00:00Z"))
    url = _api(sandbox, "/user/u1/time-entries")
    params = {"start": "2024-01-02T00:00:00Z", "end": "2024-01-04T23:59:59Z"}
    body = http.get(url, params=params, headers=KEY).json()
    assert [e["id"] for e in body] == ["e4", "e3", "e2"]  # newest first
    assert list(body[0]) == list(REST_KEYS)
    first = http.get(url, params={**params, "page-size": 2}, headers=KEY).json()
    second = http.get(url, params={**params, "page-size": 2, "page": 2}, headers=KEY).json()
    assert [e["id"] for e in first + second] == ["e4", "e3", "e2"]
    bad = http.get(url, params={"start": "yesterday"}, headers=KEY)
    assert bad.status_code == 400 and set(bad.json()) == {"message", "code"}


def _create(http: httpx.Client, sandbox: SandboxServer, event: str, **extra: Any) -> httpx.Response:
    spec = {
        "name": f"hook {event[:20]}",
        "triggerSource": [WS],
        "triggerSourceType": "WORKSPACE_ID",
        "url": "https://relay.example.com/webhooks/clockify",
        "webhookEvent": event,
        **extra,
    }
    return http.post(_api(sandbox, "/webhooks"), json=spec, headers=KEY)


def test_webhook_lifecycle(sandbox: SandboxServer, http: httpx.Client) -> None:
    _fake(sandbox).add_workspace(WS)
    created = _create(http, sandbox, "NEW_TIME_ENTRY")
    assert created.status_code == 201
    hook = created.json()
    assert list(hook) == [
        "authToken",
        "enabled",
        "id",
        "name",
        "triggerSource",
        "triggerSourceType",
        "url",
        "userId",
        "webhookEvent",
        "workspaceId",
    ]
    assert hook["enabled"] is True and hook["webhookEvent"] == "NEW_TIME_ENTRY"
    listed = http.get(_api(sandbox, "/webhooks"), headers=KEY).json()
    assert listed == {"webhooks": [hook], "workspaceWebhookCount": 1}
    assert http.get(_api(sandbox, f"/webhooks/{hook['id']}"), headers=KEY).json() == hook
    rotated = http.patch(_api(sandbox, f"/webhooks/{hook['id']}/token"), headers=KEY).json()
    assert rotated["authToken"] != hook["authToken"] and rotated["id"] == hook["id"]
    assert http.delete(_api(sandbox, f"/webhooks/{hook['id']}"), headers=KEY).status_code == 200
    gone = http.get(_api(sandbox, f"/webhooks/{hook['id']}"), headers=KEY)
    assert gone.status_code == 404 and set(gone.json()) == {"message", "code"}


@pytest.mark.parametrize(
    "extra",
    [{"name": "x"}, {"name": "n" * 31}, {"webhookEvent": "NOPE"}, {"triggerSourceType": "X"}],
)
def test_webhook_create_validates(
    sandbox: SandboxServer, http: httpx.Client, extra: dict[str, Any]
) -> None:
    _fake(sandbox).add_workspace(WS)
    assert _create(http, sandbox, "NEW_TIME_ENTRY", **extra).status_code == 400


def test_webhook_limits_per_admin_and_workspace(sandbox: SandboxServer, http: httpx.Client) -> None:
    fake = _fake(sandbox)
    fake.add_workspace(WS)
    for _ in range(10):
        assert _create(http, sandbox, "NEW_TIME_ENTRY").status_code == 201
    refused = _create(http, sandbox, "NEW_TIME_ENTRY")
    assert refused.status_code == 400
    assert "up to 10 webhooks each" in refused.json()["message"]
    # Another admin's webhooks count toward the workspace's 100.
    sandbox.reset()
    fake.add_workspace(WS)
    for _ in range(100):
        fake.add_webhook(WS, "NEW_TIME_ENTRY", "https://x.example", user_id="other-admin")
    refused = _create(http, sandbox, "NEW_TIME_ENTRY")
    assert refused.status_code == 400 and "100 webhooks" in refused.json()["message"]


def test_webhook_logs_filter_and_page(sandbox: SandboxServer, http: httpx.Client) -> None:
    fake = _fake(sandbox)
    fake.add_workspace(WS)
    hook = _create(http, sandbox, "NEW_TIME_ENTRY").json()
    control = f"{sandbox.url}/_sandbox/clockify/webhook-logs"
    for status in (200, 503, 202, 401):
        r = http.post(
            control,
            json={
                "webhookId": hook["id"],
                "requestBody": {"id": str(status)},
                "statusCode": status,
            },
        )
        assert r.status_code == 201
    url = _api(sandbox, f"/webhooks/{hook['id']}/logs")
    everything = http.post(url, json={"status": "ALL"}, headers=KEY).json()
    assert [e["statusCode"] for e in everything] == [200, 503, 202, 401]
    assert list(everything[0]) == [
        "id",
        "requestBody",
        "respondedAt",
        "responseBody",
        "statusCode",
        "webhookId",
    ]
    assert everything[1]["requestBody"] == '{"id":"503"}'
    failed = http.post(url, json={"status": "FAILED"}, headers=KEY).json()
    assert [e["statusCode"] for e in failed] == [503, 401]
    newest = http.post(url, json={"sortByNewest": True}, headers=KEY).json()
    assert newest[0]["statusCode"] == 401
    paged = http.post(url, params={"page": 1, "size": 3}, json={}, headers=KEY).json()
    assert [e["statusCode"] for e in paged] == [401]
    future = http.post(url, json={"from": "2999-01-01T00:00:00Z"}, headers=KEY).json()
    assert future == []


def test_deliver_sends_with_the_token_and_logs(sandbox: SandboxServer, http: httpx.Client) -> None:
    fake = _fake(sandbox)
    fake.add_workspace(WS)
    # The sandbox's own GET-only state route answers a POST with 405: a failed delivery.
    hook = _create(http, sandbox, "NEW_TIME_ENTRY", url=f"{sandbox.url}/_sandbox/state").json()
    statuses = fake.deliver("NEW_TIME_ENTRY", ENTRY)
    assert statuses == [405]
    logs = sandbox.state()["clockify"]["webhook_logs"]
    assert [(e["webhookId"], e["statusCode"]) for e in logs] == [(hook["id"], 405)]
    assert fake.deliver("TIME_ENTRY_UPDATED", ENTRY) == []  # no webhook for that event


def test_rate_limit_answers_too_many_requests(sandbox: SandboxServer, http: httpx.Client) -> None:
    fake = _fake(sandbox)
    fake.add_workspace(WS)
    assert (
        http.put(
            f"{sandbox.url}/_sandbox/clockify/rate-limit", json={"rate_per_second": 3}
        ).status_code
        == 200
    )
    answers = [http.get(_api(sandbox, "/users"), headers=KEY).status_code for _ in range(5)]
    assert answers.count(429) >= 1
    assert sandbox.state()["clockify"]["too_many_requests"] == answers.count(429)
