"""The Everit fake against Everit's "Worklog API" document, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from clockify_relay.sandbox.server import SandboxServer

KEY = "sandbox-everit-key"
HEADERS = {"x-everit-api-key": KEY, "x-requested-by": ""}
NOT_FOUND = "WORKLOG_NOT_FOUND"


def _url(sandbox: SandboxServer) -> str:
    return f"{sandbox.base_urls['everit']}/worklog"


def _create(
    http: httpx.Client,
    sandbox: SandboxServer,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx.Response:
    body = {"workDate": "2024-04-24", "durationInSeconds": 3600, **fields}
    return http.post(_url(sandbox), json=body, headers=headers or HEADERS)


def test_create_get_and_state(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = _create(
        http,
        sandbox,
        headers={**HEADERS, "x-timezone": "Europe/Budapest", "x-everit-on-behalf-account": "acc-1"},
        description="my description",
        isBillable=True,
        worklogTagIds=[1, 5],
        issueId=10182,
        workStartTime="12:00",
    )
    assert r.status_code == 200
    worklog = r.json()
    assert isinstance(worklog["worklogId"], int)
    assert isinstance(worklog["jiraWorklogId"], int)
    assert {
        k: worklog[k]
        for k in (
            "description",
            "durationInSeconds",
            "isBillable",
            "issueId",
            "workDate",
            "worklogTagIds",
            "workStartTime",
        )
    } == {
        "description": "my description",
        "durationInSeconds": 3600,
        "isBillable": True,
        "issueId": 10182,
        "workDate": "2024-04-24",
        "worklogTagIds": [1, 5],
        "workStartTime": "12:00",
    }
    got = http.get(_url(sandbox), params={"worklogId": worklog["worklogId"]}, headers=HEADERS)
    assert got.status_code == 200 and got.json() == worklog
    by_jira = http.get(
        _url(sandbox), params={"jiraWorklogId": worklog["jiraWorklogId"]}, headers=HEADERS
    )
    assert by_jira.json() == worklog
    [stored] = http.get(f"{sandbox.url}/_sandbox/state").json()["everit"]["worklogs"]
    assert stored["worklogId"] == worklog["worklogId"]
    assert stored["_headers"]["x-timezone"] == "Europe/Budapest"
    assert stored["_headers"]["x-everit-on-behalf-account"] == "acc-1"


def test_ids_are_distinct(sandbox: SandboxServer, http: httpx.Client) -> None:
    ids = {_create(http, sandbox).json()["worklogId"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    "headers",
    [
        {"x-requested-by": ""},
        {"x-everit-api-key": "wrong", "x-requested-by": ""},
        {"x-everit-api-key": "", "x-requested-by": ""},
    ],
)
def test_missing_or_wrong_api_key_is_401(
    sandbox: SandboxServer, http: httpx.Client, headers: dict[str, str]
) -> None:
    r = _create(http, sandbox, headers=headers)
    assert r.status_code == 401
    assert KEY not in r.text
    assert sandbox.state()["everit"]["worklogs"] == []


def test_missing_csrf_header_is_400(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = _create(http, sandbox, headers={"x-everit-api-key": KEY})
    assert r.status_code == 400
    assert r.json()["fieldErrors"] == [{"errorType": "Required", "paths": [["x-requested-by"]]}]
    # Reads need no CSRF header.
    r = http.get(_url(sandbox), params={"worklogId": 1}, headers={"x-everit-api-key": KEY})
    assert r.json()["error"]["result"] == NOT_FOUND


def test_csrf_header_may_be_any_text(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = _create(http, sandbox, headers={"x-everit-api-key": KEY, "x-requested-by": "dummy"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"workDate": None}, ("Required", ["workDate"])),
        ({"workDate": "24-04-2024"}, ("InvalidFormat", ["workDate"])),
        ({"workDate": "2024-02-30"}, ("InvalidFormat", ["workDate"])),
        ({"workDate": "2024-04-24T10:00:00Z"}, ("InvalidFormat", ["workDate"])),
        ({"workStartTime": "9:00"}, ("InvalidFormat", ["workStartTime"])),
        ({"workStartTime": "25:00"}, ("InvalidFormat", ["workStartTime"])),
        ({"workStartTime": "09:00:00"}, ("InvalidFormat", ["workStartTime"])),
        ({"durationInSeconds": "3600"}, ("InvalidFormat", ["durationInSeconds"])),
        ({"durationInSeconds": -1}, ("Invalid", ["durationInSeconds"])),
        ({"isBillable": "yes"}, ("InvalidFormat", ["isBillable"])),
        ({"issueId": "PROJ-1"}, ("InvalidFormat", ["issueId"])),
        ({"worklogTagIds": 5}, ("InvalidFormat", ["worklogTagIds"])),
        ({"worklogTagIds": [1, "x"]}, ("InvalidFormat", ["worklogTagIds", "1"])),
        ({"workdate": "2024-04-24"}, ("Invalid", ["workdate"])),
    ],
)
def test_invalid_new_worklog_gets_documented_400(
    sandbox: SandboxServer,
    http: httpx.Client,
    fields: dict[str, Any],
    expected: tuple[str, list[str]],
) -> None:
    r = _create(http, sandbox, **fields)
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"additionalErrors", "fieldErrors"}
    assert {"errorType": expected[0], "paths": [expected[1]]} in body["fieldErrors"]
    assert sandbox.state()["everit"]["worklogs"] == []


def test_malformed_json_is_400(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = http.post(_url(sandbox), content=b"{oops", headers=HEADERS)
    assert r.status_code == 400
    assert "fieldErrors" in r.json()


def test_patch_updates_only_defined_fields(sandbox: SandboxServer, http: httpx.Client) -> None:
    created = _create(http, sandbox, description="before", workStartTime="08:00").json()
    r = http.patch(
        _url(sandbox),
        json={
            "worklogId": created["worklogId"],
            "partialWorklog": {"durationInSeconds": 10800, "description": None},
        },
        headers={**HEADERS, "x-everit-on-behalf-account": "acc-2"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["error"] is None
    assert body["worklog"]["durationInSeconds"] == 10800
    assert body["worklog"]["description"] == "before"  # null leaves it unchanged
    assert body["worklog"]["workStartTime"] == "08:00"
    [stored] = sandbox.state()["everit"]["worklogs"]
    assert stored["_headers"]["x-everit-on-behalf-account"] == "acc-2"


def test_patch_by_jira_worklog_id(sandbox: SandboxServer, http: httpx.Client) -> None:
    created = _create(http, sandbox).json()
    r = http.patch(
        _url(sandbox),
        json={"jiraWorklogId": created["jiraWorklogId"], "partialWorklog": {"issueId": 7}},
        headers=HEADERS,
    )
    assert r.json()["worklog"]["issueId"] == 7


def test_patch_unknown_id_is_200_worklog_not_found(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    r = http.patch(
        _url(sandbox),
        json={"worklogId": 181, "partialWorklog": {"description": "x"}},
        headers=HEADERS,
    )
    assert r.status_code == 200
    assert r.json() == {
        "error": {"message": None, "result": NOT_FOUND, "worklogId": 181},
        "worklog": None,
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"partialWorklog": {}}, ("Required", ["worklogId"])),
        ({"worklogId": 1}, ("Required", ["partialWorklog"])),
        ({"worklogId": "1", "partialWorklog": {}}, ("InvalidFormat", ["worklogId"])),
        (
            {"worklogId": 1, "partialWorklog": {"workDate": "x"}},
            ("InvalidFormat", ["partialWorklog", "workDate"]),
        ),
        # The doc's body shape: the fields go inside partialWorklog, not at the top level.
        ({"worklogId": 1, "description": "x"}, ("Invalid", ["description"])),
    ],
)
def test_invalid_patch_is_400(
    sandbox: SandboxServer,
    http: httpx.Client,
    body: dict[str, Any],
    expected: tuple[str, list[str]],
) -> None:
    _create(http, sandbox)
    r = http.patch(_url(sandbox), json=body, headers=HEADERS)
    assert r.status_code == 400
    assert {"errorType": expected[0], "paths": [expected[1]]} in r.json()["fieldErrors"]


def test_delete_and_delete_again(sandbox: SandboxServer, http: httpx.Client) -> None:
    worklog_id = _create(http, sandbox).json()["worklogId"]
    r = http.delete(_url(sandbox), params={"worklogId": worklog_id}, headers=HEADERS)
    assert (r.status_code, r.json()) == (200, {"error": None})
    assert sandbox.state()["everit"]["worklogs"] == []
    again = http.delete(_url(sandbox), params={"worklogId": worklog_id}, headers=HEADERS)
    assert again.status_code == 200
    assert again.json() == {
        "error": {"message": None, "result": NOT_FOUND, "worklogId": worklog_id},
    }


def test_get_unknown_is_worklog_error(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = http.get(_url(sandbox), params={"worklogId": 123}, headers=HEADERS)
    assert r.status_code == 400
    assert r.json() == {"error": {"message": None, "result": NOT_FOUND, "worklogId": 123}}


@pytest.mark.parametrize("params", [{}, {"worklogId": "abc"}])
def test_id_query_parameter_required_and_numeric(
    sandbox: SandboxServer, http: httpx.Client, params: dict[str, str]
) -> None:
    r = http.delete(_url(sandbox), params=params, headers=HEADERS)
    assert r.status_code == 400
    assert r.json()["fieldErrors"]


def test_forbidden_on_behalf_account_is_479(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = http.put(f"{sandbox.url}/_sandbox/everit/forbidden-accounts", json=["acc-x"])
    assert r.status_code == 200
    r = _create(http, sandbox, headers={**HEADERS, "x-everit-on-behalf-account": "acc-x"})
    assert r.status_code == 479
    ok = _create(http, sandbox, headers={**HEADERS, "x-everit-on-behalf-account": "acc-y"})
    assert ok.status_code == 200
    bad = http.put(f"{sandbox.url}/_sandbox/everit/forbidden-accounts", json={"a": 1})
    assert bad.status_code == 400


@pytest.mark.parametrize("account", [None, "acc-1", "acc-forbidden"])
def test_delete_and_get_accept_the_on_behalf_header_or_none(
    sandbox: SandboxServer, http: httpx.Client, account: str | None
) -> None:
    # The doc lists x-everit-on-behalf-account for POST and PATCH only: DELETE and GET take it
    # or not, and it does not change their answer (not even for a forbidden account).
    http.put(f"{sandbox.url}/_sandbox/everit/forbidden-accounts", json=["acc-forbidden"])
    headers = dict(HEADERS)
    if account is not None:
        headers["x-everit-on-behalf-account"] = account
    worklog_id = _create(http, sandbox).json()["worklogId"]
    got = http.get(_url(sandbox), params={"worklogId": worklog_id}, headers=headers)
    assert got.status_code == 200 and got.json()["worklogId"] == worklog_id
    r = http.delete(_url(sandbox), params={"worklogId": worklog_id}, headers=headers)
    assert (r.status_code, r.json()) == (200, {"error": None})
    [deleted] = sandbox.state()["everit"]["deleted"]
    assert deleted["worklogId"] == worklog_id
    assert deleted["_headers"]["x-everit-on-behalf-account"] == account
    sandbox.reset()
    assert sandbox.state()["everit"]["deleted"] == []


def test_reset_restarts_ids(sandbox: SandboxServer, http: httpx.Client) -> None:
    first = _create(http, sandbox).json()["worklogId"]
    sandbox.reset()
    assert _create(http, sandbox).json()["worklogId"] == first
