"""The Organi fake against Organi's Time API document (1.5.27), over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from clockify_relay.sandbox.server import SandboxServer

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer sandbox-organi-token"}
VALID = {
    "worklogType": 1,
    "performanceType": 2,
    "description": "work",
    "author": "anna",
    "startDate": "2026-03-10T09:00:00+01:00",
    "endDate": "2026-03-10T10:30:00+01:00",
}


def url(sandbox: SandboxServer, path: str) -> str:
    return f"{sandbox.base_urls['organi']}{path}"


def create(http: httpx.Client, sandbox: SandboxServer, **fields: Any) -> httpx.Response:
    return http.post(url(sandbox, "/worklog"), json={**VALID, **fields}, headers=AUTH)


def behave(http: httpx.Client, sandbox: SandboxServer, **changes: Any) -> httpx.Response:
    return http.put(f"{sandbox.url}/_sandbox/organi/behaviour", json=changes)


def status(
    http: httpx.Client,
    sandbox: SandboxServer,
    path: str,
    ids: list[int],
    status_id: int,
    **extra: Any,
) -> httpx.Response:
    body = {"worklogIds": ids, "statusId": status_id, **extra}
    return http.put(url(sandbox, path), json=body, headers=AUTH)


def test_worklog_round_trip(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = create(http, sandbox, jiraIssue={"key": "WEB-1"})
    assert r.status_code == 200
    worklog = r.json()
    assert isinstance(worklog["worklogId"], int)
    assert {k: worklog[k] for k in VALID} == VALID
    wid = worklog["worklogId"]
    got = http.get(url(sandbox, f"/worklog/{wid}"), headers=AUTH)
    assert got.json() == worklog
    r = http.put(
        url(sandbox, "/worklog"), json={**VALID, "worklogId": wid, "description": "x"}, headers=AUTH
    )
    assert r.status_code == 200 and r.json()["description"] == "x"
    assert "jiraIssue" not in r.json()  # an update replaces the worklog
    [state] = sandbox.state()["organi"]["worklogs"]
    assert (state["worklogId"], state["description"]) == (wid, "x")
    r = http.delete(url(sandbox, f"/worklog/{wid}"), params={"cacheId": "c"}, headers=AUTH)
    assert (r.status_code, r.json()) == (200, {})
    assert http.get(url(sandbox, f"/worklog/{wid}"), headers=AUTH).status_code == 404
    assert sandbox.state()["organi"] == {"worklogs": [], "statusUpdates": [], "mailings": []}


@pytest.mark.parametrize(
    "request_args",
    [
        {"method": "POST", "path": "/worklog", "json": VALID},
        {"method": "GET", "path": "/worklogType"},
        {"method": "PUT", "path": "/status/worklog", "json": {"worklogIds": [1], "statusId": 1}},
        {"method": "POST", "path": "/mail?list=weekly"},
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-Api-Key": "sandbox-organi-token"}],
    ids=["none", "wrong", "other-header"],
)
def test_auth_is_enforced(
    sandbox: SandboxServer,
    http: httpx.Client,
    request_args: dict[str, Any],
    headers: dict[str, str],
) -> None:
    method, path = request_args["method"], request_args["path"]
    r = http.request(method, url(sandbox, path), json=request_args.get("json"), headers=headers)
    assert r.status_code == 401
    assert "wrong" not in r.text
    assert sandbox.state()["organi"] == {"worklogs": [], "statusUpdates": [], "mailings": []}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"author": None}, "author"),
        ({"worklogType": None}, "worklogType"),
        ({"performanceType": "dev"}, "performanceType"),
        ({"startDate": "2026-03-10T09:00:00"}, "startDate"),  # no offset
        ({"endDate": "2026-03-10T08:00:00+01:00"}, "endDate"),  # before the start
        ({"worklogId": 5}, "unknown fields"),
        ({"jiraIssue": "WEB-1"}, "jiraIssue"),
    ],
)
def test_create_refuses_invalid_bodies(
    sandbox: SandboxServer, http: httpx.Client, change: dict[str, Any], fragment: str
) -> None:
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    r = http.post(url(sandbox, "/worklog"), json=body, headers=AUTH)
    assert r.status_code == 400
    assert fragment in r.json()["message"]
    assert sandbox.state()["organi"]["worklogs"] == []


def test_update_needs_a_known_worklog_id(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = http.put(url(sandbox, "/worklog"), json=VALID, headers=AUTH)
    assert r.status_code == 400 and "worklogId" in r.json()["message"]
    r = http.put(url(sandbox, "/worklog"), json={**VALID, "worklogId": 999}, headers=AUTH)
    assert r.status_code == 404


def test_cache_id_required_by_default_optional_on_request(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    wid = create(http, sandbox).json()["worklogId"]
    r = http.delete(url(sandbox, f"/worklog/{wid}"), headers=AUTH)
    assert r.status_code == 400 and "cacheId" in r.json()["message"]
    assert behave(http, sandbox, cache_id="optional").status_code == 200
    assert http.delete(url(sandbox, f"/worklog/{wid}"), headers=AUTH).status_code == 200


def test_delete_of_a_missing_worklog_plays_both_readings(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    target = url(sandbox, "/worklog/4242")
    assert http.delete(target, params={"cacheId": "c"}, headers=AUTH).status_code == 404
    behave(http, sandbox, delete_missing="200")
    r = http.delete(target, params={"cacheId": "c"}, headers=AUTH)
    assert (r.status_code, r.json()) == (200, {})


def test_create_answer_without_id_and_text_errors(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    assert behave(http, sandbox, create_response="no-id", error_body="text").status_code == 200
    r = create(http, sandbox)
    assert r.status_code == 200 and "worklogId" not in r.json()
    [stored] = sandbox.state()["organi"]["worklogs"]
    assert isinstance(stored["worklogId"], int)  # created all the same
    r = http.post(url(sandbox, "/worklog"), json={}, headers=AUTH)
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain")
    sandbox.reset()  # back to the document's reading
    assert "worklogId" in create(http, sandbox).json()


def test_behaviour_control_refuses_unknown_values(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    assert behave(http, sandbox, delete_missing="410").status_code == 400
    assert behave(http, sandbox, colour="red").status_code == 400
    assert behave(http, sandbox, status_outcomes={"1": "maybe"}).status_code == 400


def test_status_updates_answer_per_id_and_are_recorded(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    a, b, c = (create(http, sandbox).json()["worklogId"] for _ in range(3))
    behave(http, sandbox, status_outcomes={str(c): "denied"})
    r = status(http, sandbox, "/status/worklog", [a, b, c, 9999], 4, comment="ok")
    assert r.json() == {"success": [str(a), str(b)], "failed": ["9999"], "denied": [str(c)]}
    r = status(http, sandbox, "/status/confirmation", [a], 7)
    assert r.json() == {"success": [str(a)], "failed": [], "denied": []}
    state = sandbox.state()["organi"]
    assert [(u["worklogIds"], u["statusId"], u["comment"]) for u in state["statusUpdates"]] == [
        ([a, b, c, 9999], 4, "ok"),
        ([a], 7, None),
    ]
    assert [w["currentStatusTypeId"] for w in state["worklogs"]] == [4, 4, None]
    [row] = http.get(url(sandbox, f"/status/worklog/{a}"), headers=AUTH).json()
    assert row["statusType"]["statusTypeId"] == 4 and row["comments"] == [{"comment": "ok"}]
    [conf] = http.get(url(sandbox, f"/status/confirmation/{a}"), headers=AUTH).json()
    assert conf["statusType"]["statusTypeId"] == 7


def test_undo_reverts_the_last_change(sandbox: SandboxServer, http: httpx.Client) -> None:
    wid = create(http, sandbox).json()["worklogId"]
    status(http, sandbox, "/status/worklog", [wid], 4)
    status(http, sandbox, "/status/worklog", [wid], 11)
    # Undoing a status the worklog is not in fails.
    r = status(http, sandbox, "/status/worklog/undo", [wid], 4)
    assert r.json()["failed"] == [str(wid)]
    r = status(http, sandbox, "/status/worklog/undo", [wid], 11, orderNumber="PO-1")
    assert r.json()["success"] == [str(wid)]
    history = http.get(url(sandbox, f"/status/worklog/{wid}"), headers=AUTH).json()
    assert [h["statusType"]["statusTypeId"] for h in history] == [4]
    assert sandbox.state()["organi"]["worklogs"][0]["currentStatusTypeId"] == 4


@pytest.mark.parametrize(
    ("path", "status_id"),
    [
        ("/status/worklog", 6),  # a confirmation status
        ("/status/worklog/undo", 1),
        ("/status/confirmation", 4),
        ("/status/confirmation/undo", 10),
    ],
)
def test_status_enums_are_enforced(
    sandbox: SandboxServer, http: httpx.Client, path: str, status_id: int
) -> None:
    r = status(http, sandbox, path, [1], status_id)
    assert r.status_code == 400 and "statusId" in r.json()["message"]
    assert sandbox.state()["organi"]["statusUpdates"] == []


def test_status_body_is_checked(sandbox: SandboxServer, http: httpx.Client) -> None:
    assert status(http, sandbox, "/status/worklog", [], 1).status_code == 400
    assert status(http, sandbox, "/status/confirmation", [1], 7, orderNumber="x").status_code == 400
    r = status(http, sandbox, "/status/worklog", [1], 5, invoiceDate="2026-01-01")
    assert r.status_code == 400


def test_history_of_an_unknown_worklog_is_404(sandbox: SandboxServer, http: httpx.Client) -> None:
    assert http.get(url(sandbox, "/status/worklog/77"), headers=AUTH).status_code == 404


def test_mail_trigger(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = http.post(url(sandbox, "/mail"), params={"list": "weekly-approvals"}, headers=AUTH)
    assert (r.status_code, r.json()) == (200, {})
    assert http.post(url(sandbox, "/mail"), headers=AUTH).status_code == 400
    assert sandbox.state()["organi"]["mailings"] == [{"list": "weekly-approvals"}]


def test_worklog_types(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = http.get(url(sandbox, "/worklogType"), headers=AUTH)
    assert r.status_code == 200 and r.json()[0]["worklogTypeId"] == 1
