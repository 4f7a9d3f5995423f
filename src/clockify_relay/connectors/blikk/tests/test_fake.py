"""The Blikk fake over real HTTP: auth, expiry, sliding-window 429, validation, paging."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from clockify_relay.sandbox.core import SandboxConfig
from clockify_relay.sandbox.server import SandboxServer

APP_ID = "sandbox-blikk-app"
APP_SECRET = "sandbox-blikk-secret"


def basic(app_id: str = APP_ID, secret: str = APP_SECRET) -> dict[str, str]:
    raw = base64.b64encode(f"{app_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def report(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "date": "2026-03-10 00:00:00",
        "clockStart": "09:00",
        "clockEnd": "10:30",
        "hours": 1.5,
        "invoiceableHours": 1.5,
        "comment": "Kickoff",
        "internalComment": "clockify:e1",
        "userId": 3,
        "projectId": 1,
        "activityId": 1,
        "timeCodeId": 1,
        "timeArticleId": 1,
    }
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def unlimited() -> Iterator[SandboxServer]:
    """A sandbox whose Blikk allows many requests per second, for CRUD tests."""
    with SandboxServer(SandboxConfig(blikk_rate_per_second=10_000)) as server:
        yield server


class Api:
    """A tiny authenticated HTTP helper for one sandbox."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.base = server.base_urls["blikk"]
        self.http = httpx.Client(base_url=self.base, timeout=5.0)
        self.token = self.http.post("/v1/Auth/Token", headers=basic()).json()["accessToken"]

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.http.request(method, path, headers=headers, **kwargs)

    def control(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(f"{self.server.url}/_sandbox/blikk{path}", **kwargs)


@pytest.fixture
def api(unlimited: SandboxServer) -> Iterator[Api]:
    unlimited.reset()
    client = Api(unlimited)
    yield client
    client.http.close()


def test_token_issued_for_basic_credentials(unlimited: SandboxServer) -> None:
    with httpx.Client(base_url=unlimited.base_urls["blikk"], timeout=5) as http:
        r = http.post("/v1/Auth/Token", headers=basic())
        assert r.status_code == 200
        body = r.json()
        assert body["objectName"] == "auth.token"
        assert body["accessToken"].startswith("pk_") and ".pa_" in body["accessToken"]
        assert body["expires"].endswith(" +00:00")
        assert http.post("/v1/Auth/Token", headers=basic(secret="wrong")).status_code == 401
        assert http.post("/v1/Auth/Token", headers=basic(app_id="other")).status_code == 401
        assert http.post("/v1/Auth/Token").status_code == 401
        assert http.post("/v1/Auth/Token", headers={"Authorization": "Basic !!"}).status_code == 401


def test_bearer_required(api: Api) -> None:
    r = api.http.get("/v1/Core/TimeReports", params={"page": 1})
    assert r.status_code == 401 and r.json() == {"message": "Invalid token"}
    r = api.http.get(
        "/v1/Core/TimeReports", params={"page": 1}, headers={"Authorization": "Bearer nope"}
    )
    assert r.status_code == 401
    assert api("GET", "/v1/Core/TimeReports", params={"page": 1}).status_code == 200


def test_tokens_really_expire() -> None:
    with SandboxServer(SandboxConfig(blikk_token_ttl=1.0)) as server:
        client = Api(server)
        assert client("GET", "/v1/Admin/Users", params={"page": 1}).status_code == 200
        time.sleep(1.1)
        assert client("GET", "/v1/Admin/Users", params={"page": 1}).status_code == 401
        client.http.close()


def test_expire_control_invalidates_tokens(api: Api) -> None:
    assert api.control("/tokens/expire").json() == {"expired": 1}
    assert api("GET", "/v1/Admin/Users", params={"page": 1}).status_code == 401


def test_fifth_request_within_a_sliding_second_is_429() -> None:
    with SandboxServer() as server:
        client = Api(server)  # the token request counts for the app id, not for the token
        statuses = [client("GET", "/v1/Admin/Users", params={"page": 1}) for _ in range(5)]
        assert [r.status_code for r in statuses[:4]] == [200] * 4
        refused = statuses[4]
        assert refused.status_code == 429
        wait = refused.json()["waitInSeconds"]
        assert wait >= 1 and refused.headers["Retry-After"] == str(wait)
        state = server.state()["blikk"]
        assert state["rejected_429"] == 1
        assert state["max_requests_in_any_second"] == 5
        # No token in the state, only a digest label.
        assert all(client.token not in key for key in state["requests_per_token"])
        time.sleep(1.0)
        assert client("GET", "/v1/Admin/Users", params={"page": 1}).status_code == 200
        client.http.close()


def test_sliding_window_not_calendar_seconds() -> None:
    # 4 requests late in one window and 1 just after: a fixed-second counter would let the
    # fifth pass when a second boundary falls between; the sliding window must not.
    with SandboxServer() as server:
        client = Api(server)
        time.sleep(1.0)
        for _ in range(4):
            assert client("GET", "/v1/Admin/Users", params={"page": 1}).status_code == 200
        time.sleep(0.5)
        assert client("GET", "/v1/Admin/Users", params={"page": 1}).status_code == 429
        client.http.close()


def test_paced_requests_are_never_refused_and_measured() -> None:
    with SandboxServer() as server:
        client = Api(server)
        time.sleep(1.0)
        for _ in range(8):
            assert client("GET", "/v1/Admin/Users", params={"page": 1}).status_code == 200
            time.sleep(0.26)
        state = server.state()["blikk"]
        assert state["rejected_429"] == 0
        assert state["max_requests_in_any_second"] <= 4
        client.http.close()


def test_token_endpoint_rate_limited_per_app() -> None:
    with SandboxServer() as server, httpx.Client(base_url=server.base_urls["blikk"]) as http:
        codes = [http.post("/v1/Auth/Token", headers=basic()).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 200, 429]


def test_create_get_update_delete(api: Api) -> None:
    created = api("POST", "/v1/Core/TimeReports", json=report())
    assert created.status_code == 200
    body = created.json()
    assert body["objectName"] == "timereport.detail"
    assert body["date"] == "2026-03-10" and body["hours"] == 1.5
    assert body["user"]["id"] == 3 and body["project"]["id"] == 1
    assert body["contact"]["name"] == "Nordlys AB"
    rid = body["id"]
    assert api("GET", f"/v1/Core/TimeReports/{rid}").json()["internalComment"] == "clockify:e1"
    updated = api("PUT", f"/v1/Core/TimeReports/{rid}", json=report(hours=2.0, comment="x"))
    assert updated.status_code == 200 and updated.json()["hours"] == 2.0
    assert updated.json()["updatedDate"] is not None
    [stored] = api.server.state()["blikk"]["timereports"]
    assert stored["comment"] == "x"
    deleted = api("DELETE", f"/v1/Core/TimeReports/{rid}")
    assert deleted.status_code == 200 and deleted.content == b""
    assert api.server.state()["blikk"]["timereports"] == []


def test_bare_200_on_create_and_update_when_configured(api: Api) -> None:
    # The doc shows "200 OK" and no body for POST/PUT /v1/Core/TimeReports.
    answer = api.http.put(
        f"{api.server.url}/_sandbox/blikk/write-response", json={"write_response": "empty"}
    )
    assert answer.status_code == 200 and answer.json() == {"write_response": "empty"}
    created = api("POST", "/v1/Core/TimeReports", json=report())
    assert (created.status_code, created.content) == (200, b"")
    [stored] = api.server.state()["blikk"]["timereports"]
    assert stored["internalComment"] == "clockify:e1"
    updated = api("PUT", f"/v1/Core/TimeReports/{stored['id']}", json=report(hours=2.0))
    assert (updated.status_code, updated.content) == (200, b"")
    assert api.server.state()["blikk"]["timereports"][0]["hours"] == 2.0
    # Refusals keep their documented bodies.
    refused = api("POST", "/v1/Core/TimeReports", json=report(userId=999))
    assert refused.status_code == 400 and "userId" in refused.json()["modelState"]
    # A reset brings back the default (the detail object).
    api.server.reset()
    assert api.server.state()["blikk"]["write_response"] == "detail"


def test_write_response_control_rejects_unknown_modes(api: Api) -> None:
    url = f"{api.server.url}/_sandbox/blikk/write-response"
    for body in ({"write_response": "nothing"}, {}, ["empty"]):
        assert api.http.put(url, json=body).status_code == 400
    assert api.server.state()["blikk"]["write_response"] == "detail"


def test_unknown_report_is_400_not_404(api: Api) -> None:
    for method in ("GET", "DELETE"):
        assert api(method, "/v1/Core/TimeReports/424242").status_code == 400
    assert api("PUT", "/v1/Core/TimeReports/424242", json=report()).status_code == 400


def test_missing_required_fields_give_model_state(api: Api) -> None:
    r = api("POST", "/v1/Core/TimeReports", json={"date": "2026-03-10", "hours": 1})
    assert r.status_code == 400
    body = r.json()
    assert body["message"] == "The request is invalid."
    assert {"userId", "activityId", "timeCodeId", "timeArticleId", "invoiceableHours"} <= set(
        body["modelState"]
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"userId": 999}, "userId"),
        ({"projectId": 999}, "projectId"),
        ({"clockStart": "9:00"}, "clockStart"),
        ({"hours": "1.5"}, "hours"),
        ({"date": "10/03/2026"}, "date"),
        ({"timeArticleId": True}, "timeArticleId"),
    ],
)
def test_invalid_values_are_400(api: Api, changes: dict[str, Any], field: str) -> None:
    r = api("POST", "/v1/Core/TimeReports", json=report(**changes))
    assert r.status_code == 400 and field in r.json()["modelState"]
    assert api.server.state()["blikk"]["timereports"] == []


@pytest.mark.parametrize(
    ("start", "end"), [("23:15", "00:00"), ("10:00", "10:00"), ("10:30", "09:00")]
)
def test_clock_end_not_after_start_is_400(api: Api, start: str, end: str) -> None:
    r = api("POST", "/v1/Core/TimeReports", json=report(clockStart=start, clockEnd=end))
    assert r.status_code == 400
    assert r.json()["message"] == "The request is invalid."
    assert list(r.json()["modelState"]) == ["clockEnd"]
    rid = api("POST", "/v1/Core/TimeReports", json=report()).json()["id"]
    put = api("PUT", f"/v1/Core/TimeReports/{rid}", json=report(clockStart=start, clockEnd=end))
    assert put.status_code == 400 and "clockEnd" in put.json()["modelState"]
    [kept] = api.server.state()["blikk"]["timereports"]
    assert (kept["clockStart"], kept["clockEnd"]) == ("09:00", "10:30")


def test_clock_times_are_optional_and_may_end_at_23_59(api: Api) -> None:
    late = api("POST", "/v1/Core/TimeReports", json=report(clockStart="23:15", clockEnd="23:59"))
    assert late.status_code == 200
    bare = api("POST", "/v1/Core/TimeReports", json=report(clockStart=None, clockEnd=None))
    assert bare.status_code == 200 and bare.json()["clockEnd"] is None


def test_attested_or_invoiced_reports_refuse_changes(api: Api) -> None:
    rid = api("POST", "/v1/Core/TimeReports", json=report()).json()["id"]
    assert api.control(f"/timereports/{rid}/attest").status_code == 200
    assert api("PUT", f"/v1/Core/TimeReports/{rid}", json=report(hours=3)).status_code == 400
    assert api("DELETE", f"/v1/Core/TimeReports/{rid}").status_code == 400
    got = api("GET", f"/v1/Core/TimeReports/{rid}").json()
    assert got["attestedDate"] is not None and got["hours"] == 1.5
    other = api("POST", "/v1/Core/TimeReports", json=report()).json()["id"]
    api.control(f"/timereports/{other}/invoice", json={"invoiceId": 77})
    assert api("DELETE", f"/v1/Core/TimeReports/{other}").status_code == 400
    assert api("GET", f"/v1/Core/TimeReports/{other}").json()["invoiceId"] == 77


def test_list_filters_and_paging(api: Api) -> None:
    for day in ("2026-03-09", "2026-03-10", "2026-03-10", "2026-03-11"):
        api("POST", "/v1/Core/TimeReports", json=report(date=day))
    api("POST", "/v1/Core/TimeReports", json=report(date="2026-03-10", userId=2))
    params = {
        "page": 1,
        "pageSize": 1,
        "filter.userIds": "3",
        "filter.from": "2026-03-10",
        "filter.to": "2026-03-10",
    }
    first = api("GET", "/v1/Core/TimeReports", params=params).json()
    assert (first["totalItemCount"], first["totalPages"], first["itemCount"]) == (2, 2, 1)
    assert first["items"][0]["objectName"] == "timereport.list"
    second = api("GET", "/v1/Core/TimeReports", params={**params, "page": 2}).json()
    assert second["items"][0]["id"] != first["items"][0]["id"]
    third = api("GET", "/v1/Core/TimeReports", params={**params, "page": 3}).json()
    assert third["items"] == [] and third["itemCount"] == 0
    both = api("GET", "/v1/Core/TimeReports", params={"page": 1, "filter.userIds": "2,3"}).json()
    assert both["totalItemCount"] == 5


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"page": 0},
        {"page": 1, "pageSize": 101},
        {"page": 1, "filter.userIds": "a"},
        {"page": 1, "sortBy": "nope"},
        {"page": 1, "filter.from": "yesterday"},
    ],
)
def test_list_bad_parameters_are_400(api: Api, params: dict[str, Any]) -> None:
    r = api("GET", "/v1/Core/TimeReports", params=params)
    assert r.status_code == 400 and r.json()["modelState"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/Admin/Users",
        "/v1/Core/Projects",
        "/v1/Admin/Activities",
        "/v1/Admin/TimeCodes",
        "/v1/Admin/TimeArticles",
        "/v1/Admin/InternalProjects",
        "/v1/Admin/AbsenceProjects",
    ],
)
def test_registries_are_paged_lists(api: Api, path: str) -> None:
    body = api("GET", path, params={"page": 1}).json()
    assert body["objectName"] == "generic.pagedlist" and body["items"]
    assert all("id" in item for item in body["items"])
    assert api("GET", path).status_code == 400


def test_control_adds_registry_records(api: Api) -> None:
    r = api.control("/registries/activities", json={"id": 50, "name": "Support"})
    assert r.status_code == 201
    items = api("GET", "/v1/Admin/Activities", params={"page": 1, "pageSize": 100}).json()["items"]
    assert {"id": 50, "name": "Support"}.items() <= items[-1].items()
    assert api("POST", "/v1/Core/TimeReports", json=report(activityId=50)).status_code == 200
    assert api.control("/registries/nope", json={}).status_code == 404


def test_a_405_lists_every_method_of_its_path(api: Api) -> None:
    def allowed(response: httpx.Response) -> set[str]:
        assert response.status_code == 405
        return {method.strip() for method in response.headers["allow"].split(",")}

    assert allowed(api("PATCH", "/v1/Core/TimeReports")) >= {"GET", "POST"}
    assert allowed(api("POST", "/v1/Core/TimeReports/7")) >= {"GET", "PUT", "DELETE"}
