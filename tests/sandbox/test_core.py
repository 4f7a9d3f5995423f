"""Control endpoints, faults, counters and the server lifecycle, over real HTTP."""

from __future__ import annotations

import base64
import time

import httpx
import orjson
import pytest

from clockify_relay.sandbox.app import build_app, fake_classes
from clockify_relay.sandbox.core import FaultError, SandboxConfig, parse_fault
from clockify_relay.sandbox.server import SandboxServer

TRACKET_AUTH = {"Authorization": "Bearer sandbox-tracket-token"}
BLIKK_BASIC = {
    "Authorization": "Basic " + base64.b64encode(b"sandbox-blikk-app:sandbox-blikk-secret").decode()
}


def _tracket_list(
    http: httpx.Client, sandbox: SandboxServer, timeout: float = 5.0
) -> httpx.Response:
    return http.get(
        f"{sandbox.base_urls['tracket']}/worklogs", headers=TRACKET_AUTH, timeout=timeout
    )


def test_state_shape(sandbox: SandboxServer, http: httpx.Client) -> None:
    state = http.get(f"{sandbox.url}/_sandbox/state").json()
    assert state["everit"]["worklogs"] == []
    assert state["tracket"]["worklogs"] == []
    assert state["clockify"]["time_entries"] == []
    assert state["faults"] == []
    assert set(state["requests"]) == {fake.name for fake in fake_classes()}
    assert all(count == 0 for count in state["requests"].values())
    # The in-process view is the same document.
    assert sandbox.state() == state


def test_base_urls_and_config(sandbox: SandboxServer) -> None:
    assert sandbox.base_urls["everit"] == (f"{sandbox.url}/everit/timetracker/api/latest/public")
    assert sandbox.base_urls["tracket"] == f"{sandbox.url}/tracket/api/1.0"
    assert sandbox.base_urls["clockify"] == f"{sandbox.url}/clockify/api"
    assert sandbox.url.startswith("http://127.0.0.1:")
    assert sandbox.config.everit_api_key == "sandbox-everit-key"


def test_requests_are_counted_per_target_and_control_is_not(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    for _ in range(3):
        assert _tracket_list(http, sandbox).status_code == 200
    http.get(f"{sandbox.base_urls['everit']}/worklog?worklogId=1")  # 401, still counted
    http.get(f"{sandbox.url}/_sandbox/state")
    requests = http.get(f"{sandbox.url}/_sandbox/state").json()["requests"]
    assert requests["tracket"] == 3
    assert requests["everit"] == 1
    assert requests["clockify"] == 0


def test_fault_status_count_then_ok(sandbox: SandboxServer, http: httpx.Client) -> None:
    response = http.post(
        f"{sandbox.url}/_sandbox/faults",
        json={"target": "tracket", "status": 503, "count": 2, "retry_after": 7},
    )
    assert response.status_code == 201
    statuses = []
    for _ in range(3):
        r = _tracket_list(http, sandbox)
        statuses.append(r.status_code)
        if r.status_code == 503:
            assert r.headers["retry-after"] == "7"
    assert statuses == [503, 503, 200]
    assert http.get(f"{sandbox.url}/_sandbox/state").json()["faults"] == []


def test_fault_applies_only_to_its_target(sandbox: SandboxServer, http: httpx.Client) -> None:
    sandbox.inject_fault("everit", status=500, count=1)
    assert _tracket_list(http, sandbox).status_code == 200
    # Control endpoints are never faulted.
    assert http.get(f"{sandbox.url}/_sandbox/state").status_code == 200
    assert http.get(f"{sandbox.base_urls['everit']}/worklog").status_code == 500


def test_fault_custom_body(sandbox: SandboxServer, http: httpx.Client) -> None:
    sandbox.inject_fault("tracket", status=429, body={"error": "slow down"}, retry_after=2)
    r = _tracket_list(http, sandbox)
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (
        429,
        {"error": "slow down"},
        "2",
    )


def test_faults_apply_in_order(sandbox: SandboxServer, http: httpx.Client) -> None:
    sandbox.inject_fault("tracket", status=502, count=1)
    sandbox.inject_fault("tracket", status=504, count=1)
    assert [_tracket_list(http, sandbox).status_code for _ in range(3)] == [502, 504, 200]


def test_fault_for_seconds_expires(sandbox: SandboxServer, http: httpx.Client) -> None:
    sandbox.inject_fault("tracket", status=503, seconds=0.4)
    assert _tracket_list(http, sandbox).status_code == 503
    assert _tracket_list(http, sandbox).status_code == 503
    time.sleep(0.5)
    assert _tracket_list(http, sandbox).status_code == 200


def test_fault_latency_delays_then_answers_normally(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    sandbox.inject_fault("tracket", latency=0.3)
    started = time.monotonic()
    assert _tracket_list(http, sandbox).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    _tracket_list(http, sandbox)
    assert time.monotonic() - started < 0.3  # count defaulted to one request


def test_fault_timeout_makes_client_time_out(sandbox: SandboxServer, http: httpx.Client) -> None:
    http.post(f"{sandbox.url}/_sandbox/faults", json={"target": "tracket", "timeout": True})
    with pytest.raises(httpx.ReadTimeout):
        _tracket_list(http, sandbox, timeout=0.3)
    # Reset releases the held request; the next one is served.
    sandbox.reset()
    assert _tracket_list(http, sandbox).status_code == 200


def test_state_is_pretty_printed(sandbox: SandboxServer, http: httpx.Client) -> None:
    response = http.get(f"{sandbox.url}/_sandbox/state")
    assert response.text.startswith('{\n  "')
    assert response.content == orjson.dumps(
        sandbox.state(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    )


def test_a_blikk_fault_limited_to_a_path_spares_the_token_request(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    added = http.post(
        f"{sandbox.url}/_sandbox/faults",
        json={"target": "blikk", "status": 503, "path": "/v1/Core/TimeReports", "count": 2},
    )
    assert added.status_code == 201
    base = sandbox.base_urls["blikk"]
    token = http.post(f"{base}/v1/Auth/Token", headers=BLIKK_BASIC)
    assert token.status_code == 200  # not a credentials error in disguise
    bearer = {"Authorization": f"Bearer {token.json()['accessToken']}"}
    # A prefix on whole segments: the collection and its items, not a longer name.
    assert http.get(f"{base}/v1/Core/TimeReportsX", headers=bearer).status_code == 404
    assert http.get(f"{base}/v1/Core/TimeReports/7", headers=bearer).status_code == 503
    assert http.get(f"{base}/v1/Core/TimeReports", headers=bearer).status_code == 503
    # Spent: the fake answers again (Blikk says 400 for an unknown report id).
    assert http.get(f"{base}/v1/Core/TimeReports/7", headers=bearer).status_code == 400
    assert sandbox.state()["faults"] == []


def test_a_fault_limited_to_a_method_and_path_spares_other_requests(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    fault_id = sandbox.inject_fault("tracket", status=500, method="post", path="/worklogs/")
    [shown] = sandbox.state()["faults"]
    assert shown["id"] == fault_id
    assert (shown["method"], shown["path"]) == ("POST", "/worklogs")
    assert _tracket_list(http, sandbox).status_code == 200  # GET of the same path
    created = http.post(
        f"{sandbox.base_urls['tracket']}/worklogs",
        headers=TRACKET_AUTH,
        json={
            "itemId": "i",
            "userId": "u",
            "worklogDate": "2024-01-01T10:00:00Z",
            "worklogMinutes": 5,
        },
    )
    assert created.status_code == 500
    assert sandbox.state()["tracket"]["worklogs"] == []


def test_a_fault_without_path_or_method_hits_every_request_of_its_target(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    sandbox.inject_fault("blikk", status=503)
    [shown] = sandbox.state()["faults"]
    assert (shown["method"], shown["path"]) == (None, None)
    token = http.post(f"{sandbox.base_urls['blikk']}/v1/Auth/Token", headers=BLIKK_BASIC)
    assert token.status_code == 503


@pytest.mark.parametrize(
    "spec",
    [
        {"target": "nope", "status": 503},
        {"status": 503},
        {"target": "everit"},
        {"target": "everit", "status": 99},
        {"target": "everit", "status": "503"},
        {"target": "everit", "status": 503, "count": 0},
        {"target": "everit", "status": 503, "count": 1.5},
        {"target": "everit", "status": 503, "count": True},
        {"target": "everit", "status": 503, "seconds": -1},
        {"target": "everit", "latency": "slow"},
        {"target": "everit", "status": 503, "surprise": 1},
        {"target": "everit", "status": 503, "path": "worklog"},
        {"target": "everit", "status": 503, "path": 5},
        {"target": "everit", "status": 503, "path": "/work log"},
        {"target": "everit", "status": 503, "method": "GE T"},
        {"target": "everit", "status": 503, "method": 1},
        ["everit"],
    ],
)
def test_invalid_fault_is_rejected(
    sandbox: SandboxServer, http: httpx.Client, spec: object
) -> None:
    r = http.post(f"{sandbox.url}/_sandbox/faults", json=spec)
    assert r.status_code == 400
    assert "error" in r.json()
    assert http.get(f"{sandbox.url}/_sandbox/state").json()["faults"] == []


def test_fault_endpoint_rejects_malformed_json(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = http.post(f"{sandbox.url}/_sandbox/faults", content=b"{not json")
    assert r.status_code == 400


def test_inject_fault_raises_on_bad_spec(sandbox: SandboxServer) -> None:
    with pytest.raises(FaultError):
        sandbox.inject_fault("everit")
    with pytest.raises(FaultError):
        parse_fault({"target": "x", "status": 500}, ["everit"])


def test_reset_clears_records_faults_counters(sandbox: SandboxServer, http: httpx.Client) -> None:
    r = http.post(
        f"{sandbox.base_urls['tracket']}/worklogs",
        headers=TRACKET_AUTH,
        json={
            "itemId": "i",
            "userId": "u",
            "worklogDate": "2024-01-01T10:00:00Z",
            "worklogMinutes": 5,
        },
    )
    assert r.status_code == 200
    sandbox.inject_fault("everit", status=503, count=3)
    assert http.post(f"{sandbox.url}/_sandbox/reset").status_code == 200
    state = http.get(f"{sandbox.url}/_sandbox/state").json()
    assert state["tracket"]["worklogs"] == []
    assert state["faults"] == []
    assert state["requests"]["tracket"] == 0


def test_delete_faults(sandbox: SandboxServer, http: httpx.Client) -> None:
    sandbox.inject_fault("tracket", status=503, count=5)
    assert http.delete(f"{sandbox.url}/_sandbox/faults").status_code == 200
    assert _tracket_list(http, sandbox).status_code == 200


def test_the_faults_endpoint_answers_405_listing_both_its_methods(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    response = http.get(f"{sandbox.url}/_sandbox/faults")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"POST", "DELETE"}


def test_apps_do_not_share_state() -> None:
    first, second = build_app(), build_app()
    first.state.sandbox.count_request("everit")
    assert second.state.sandbox.requests()["everit"] == 0


def test_server_on_given_port_and_custom_config() -> None:
    config = SandboxConfig(tracket_token="other-token")
    with SandboxServer(config) as probe:
        port = probe.port
    # The port was just freed; reuse it explicitly.
    with SandboxServer(config, port=port) as server, httpx.Client(timeout=5) as http:
        assert server.url == f"http://127.0.0.1:{port}"
        url = f"{server.base_urls['tracket']}/worklogs"
        assert http.get(url, headers=TRACKET_AUTH).status_code == 401
        ok = http.get(url, headers={"Authorization": "Bearer other-token"})
        assert ok.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=1)


def test_stop_is_idempotent() -> None:
    server = SandboxServer().start()
    server.stop()
    server.stop()
