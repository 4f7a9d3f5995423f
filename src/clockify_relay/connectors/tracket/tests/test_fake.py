"""The Tracket fake against Tracket's "Time entries" document (v1.0), over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from clockify_relay.sandbox.server import SandboxServer

AUTH = {"Authorization": "Bearer sandbox-tracket-token"}
VALID = {
    "itemId": "item-1",
    "userId": "user-1",
    "worklogDate": "2024-10-22T18:45:31.370Z",
    "worklogMinutes": 90,
}


def _url(sandbox: SandboxServer, suffix: str = "") -> str:
    return f"{sandbox.base_urls['tracket']}/worklogs{suffix}"


def _create(http: httpx.Client, sandbox: SandboxServer, **fields: Any) -> httpx.Response:
    return http.post(_url(sandbox), json={**VALID, **fields}, headers=AUTH)


def test_create_and_get(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = _create(http, sandbox, description="work", worklogBillableMinutes=60)
    assert r.status_code == 200
    worklog = r.json()
    assert isinstance(worklog["worklogId"], str) and worklog["worklogId"]
    assert worklog["approvalStatus"] == "open"
    assert worklog["approverUserId"] is None
    assert worklog["createdDate"].endswith("Z")
    assert worklog["updatedDate"] == worklog["createdDate"]
    assert {k: worklog[k] for k in (*VALID, "description", "worklogBillableMinutes")} == {
        **VALID,
        "description": "work",
        "worklogBillableMinutes": 60,
    }
    got = http.get(_url(sandbox, f"/{worklog['worklogId']}"), headers=AUTH)
    assert got.status_code == 200 and got.json() == worklog
    assert sandbox.state()["tracket"]["worklogs"] == [worklog]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "sandbox-tracket-token"},
        {"Authorization": "Basic sandbox-tracket-token"},
    ],
)
def test_auth_required(sandbox: SandboxServer, http: httpx.Client, headers: dict[str, str]) -> None:
    for response in (
        http.get(_url(sandbox), headers=headers),
        http.post(_url(sandbox), json=VALID, headers=headers),
        http.get(_url(sandbox, "/x"), headers=headers),
        http.put(_url(sandbox, "/x"), json={}, headers=headers),
        http.delete(_url(sandbox, "/x"), headers=headers),
    ):
        assert response.status_code == 401
        assert "error" in response.json()
        assert "sandbox-tracket-token" not in response.text
    assert sandbox.state()["tracket"]["worklogs"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"itemId": None}, "itemId"),
        ({"userId": None}, "userId"),
        ({"worklogDate": None}, "worklogDate"),
        ({"worklogMinutes": None}, "worklogMinutes"),
        ({"itemId": 5}, "itemId"),
        ({"worklogDate": "2024-10-22"}, "worklogDate"),
        ({"worklogDate": "2024-10-22T18:45:31"}, "worklogDate"),  # no offset
        ({"worklogDate": "yesterday"}, "worklogDate"),
        ({"worklogMinutes": "90"}, "worklogMinutes"),
        ({"worklogMinutes": -1}, "worklogMinutes"),
        ({"worklogMinutes": True}, "worklogMinutes"),
        ({"worklogBillableMinutes": "x"}, "worklogBillableMinutes"),
        ({"description": 3}, "description"),
        ({"approvalStatus": "approved"}, "approvalStatus"),
    ],
)
def test_invalid_create_is_400(
    sandbox: SandboxServer, http: httpx.Client, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    r = http.post(_url(sandbox), json=body, headers=AUTH)
    assert r.status_code == 400
    assert field in r.json()["fields"]
    assert field in r.json()["error"]
    assert sandbox.state()["tracket"]["worklogs"] == []


def test_non_json_body_is_400(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = http.post(_url(sandbox), content=b"not json", headers=AUTH)
    assert r.status_code == 400
    r = http.post(_url(sandbox), json=[VALID], headers=AUTH)
    assert r.status_code == 400


def test_update(sandbox: SandboxServer, http: httpx.Client) -> None:
    created = _create(http, sandbox).json()
    r = http.put(
        _url(sandbox, f"/{created['worklogId']}"),
        json={"worklogMinutes": 30, "description": "changed"},
        headers=AUTH,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["worklogMinutes"] == 30
    assert body["description"] == "changed"
    assert body["itemId"] == VALID["itemId"]
    assert "approvalStatus" not in body  # as in the doc's PUT response
    assert body["updatedDate"] >= created["updatedDate"]
    [stored] = sandbox.state()["tracket"]["worklogs"]
    assert stored["worklogMinutes"] == 30 and stored["approvalStatus"] == "open"


def test_update_rejects_bad_fields(sandbox: SandboxServer, http: httpx.Client) -> None:
    created = _create(http, sandbox).json()
    url = _url(sandbox, f"/{created['worklogId']}")
    assert http.put(url, json={"worklogDate": "bad"}, headers=AUTH).status_code == 400
    assert http.put(url, json={"itemId": None}, headers=AUTH).status_code == 400
    assert http.put(url, json={"worklogId": "other"}, headers=AUTH).status_code == 400
    assert sandbox.state()["tracket"]["worklogs"] == [created]


def test_unknown_id_is_404(sandbox: SandboxServer, http: httpx.Client) -> None:
    for response in (
        http.get(_url(sandbox, "/nope"), headers=AUTH),
        http.put(_url(sandbox, "/nope"), json={"worklogMinutes": 1}, headers=AUTH),
        http.delete(_url(sandbox, "/nope"), headers=AUTH),
    ):
        assert response.status_code == 404
        assert "error" in response.json()


def test_delete(sandbox: SandboxServer, http: httpx.Client) -> None:
    worklog_id = _create(http, sandbox).json()["worklogId"]
    r = http.delete(_url(sandbox, f"/{worklog_id}"), headers=AUTH)
    assert r.status_code == 200
    assert isinstance(r.json()["message"], str)
    assert sandbox.state()["tracket"]["worklogs"] == []
    assert http.delete(_url(sandbox, f"/{worklog_id}"), headers=AUTH).status_code == 404


def test_cursor_paging_visits_every_worklog_once(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    created = [_create(http, sandbox, description=str(i)).json()["worklogId"] for i in range(7)]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    pages = 0
    while True:
        r = http.get(_url(sandbox), params=params, headers=AUTH)
        assert r.status_code == 200
        body = r.json()
        pages += 1
        seen += [w["worklogId"] for w in body["worklogs"]]
        if "next-cursor" not in body:
            break
        params = {"limit": 3, "cursor": body["next-cursor"]}
    assert pages == 3
    assert seen == created


def test_paging_default_page_size_and_no_cursor_when_done(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    _create(http, sandbox)
    body = http.get(_url(sandbox), headers=AUTH).json()
    assert len(body["worklogs"]) == 1
    assert "next-cursor" not in body


def test_start_date_filter(sandbox: SandboxServer, http: httpx.Client) -> None:
    _create(http, sandbox, worklogDate="2024-01-01T09:00:00Z")
    late = _create(http, sandbox, worklogDate="2024-03-01T09:00:00+01:00").json()
    for start in ("2024-02-01", "2024-02-01T00:00:00Z"):
        body = http.get(_url(sandbox), params={"startDate": start}, headers=AUTH).json()
        assert [w["worklogId"] for w in body["worklogs"]] == [late["worklogId"]]


@pytest.mark.parametrize(
    "params",
    [{"cursor": "abc"}, {"limit": "0"}, {"limit": "x"}, {"startDate": "soon"}],
)
def test_bad_list_parameters_are_400(
    sandbox: SandboxServer, http: httpx.Client, params: dict[str, str]
) -> None:
    r = http.get(_url(sandbox), params=params, headers=AUTH)
    assert r.status_code == 400
    assert "error" in r.json()


def test_full_last_page_has_no_cursor(sandbox: SandboxServer, http: httpx.Client) -> None:
    for _ in range(3):
        _create(http, sandbox)
    body = http.get(_url(sandbox), params={"limit": 3}, headers=AUTH).json()
    assert len(body["worklogs"]) == 3
    assert "next-cursor" not in body


def _allowed(response: httpx.Response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


def test_a_405_lists_every_method_of_its_path(sandbox: SandboxServer, http: httpx.Client) -> None:
    listing = http.patch(_url(sandbox), headers=AUTH)
    assert listing.status_code == 405 and _allowed(listing) >= {"GET", "POST"}
    one = http.post(_url(sandbox, "/w-1"), headers=AUTH)
    assert one.status_code == 405 and _allowed(one) >= {"GET", "PUT", "DELETE"}
