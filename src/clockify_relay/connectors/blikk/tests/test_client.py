"""The Blikk connector against the real sandbox over HTTP, with a real Redis."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from tests.fixture_loader import PROJECT_WEBSITE, USER_ANNA, fixture_json

from clockify_relay.clockify.models import TimeEntry, parse_time_entry
from clockify_relay.connectors.base import Booking
from clockify_relay.connectors.blikk.connector import BlikkConnector
from clockify_relay.connectors.blikk.fake import BlikkFake
from clockify_relay.connectors.blikk.lookups import list_lookups, list_users
from clockify_relay.errors import ConfigurationError, PermanentError, RelayError, TransientError
from clockify_relay.sandbox.core import SandboxConfig
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, Settings

pytestmark = pytest.mark.integration

SECRET = "sandbox-blikk-secret"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(server: SandboxServer) -> SandboxServer:
    # No wait for the previous test's requests to leave Blikk's one-second window: the reset
    # empties the fake's windows (and tokens), and each test's key prefix gives it a rate
    # schedule and a token cache of its own.
    server.reset()
    return server


def section(sandbox: SandboxServer, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "app_id": "sandbox-blikk-app",
        "app_secret": Secret(SECRET),
        "base_url": sandbox.base_urls["blikk"],
        "defaults": {"activity_id": 1, "time_code_id": 1, "time_article_id": 1},
        "users": {USER_ANNA: {"user_id": 3}},
        "projects": {PROJECT_WEBSITE: {"project_id": 1}},
    }
    base.update(extra)
    return base


@pytest.fixture
def connector(
    sandbox: SandboxServer, settings: Settings, redis_client: redis.Redis
) -> Iterator[BlikkConnector]:
    conn = BlikkConnector(settings, section(sandbox), redis_client)
    yield conn
    conn.close()


def fake(sandbox: SandboxServer) -> BlikkFake:
    blikk = sandbox.sandbox.fakes["blikk"]
    assert isinstance(blikk, BlikkFake)
    return blikk


def reports(sandbox: SandboxServer) -> list[dict[str, Any]]:
    return list(sandbox.state()["blikk"]["timereports"])


def midnight_entry() -> TimeEntry:
    return parse_time_entry(fixture_json("NEW_TIME_ENTRY__midnight_stockholm"))


def assert_paced(sandbox: SandboxServer) -> None:
    state = sandbox.state()["blikk"]
    assert state["rejected_429"] == 0
    assert state["max_requests_in_any_second"] <= 4


def assert_no_secrets(exc: RelayError, *secrets: str) -> None:
    for text in (str(exc), exc.message, exc.response_excerpt or ""):
        for secret in secrets:
            assert secret not in text


def cached_token(connector: BlikkConnector, redis_client: redis.Redis) -> str:
    raw = redis_client.get(connector.client.tokens.key)
    assert raw is not None
    token = json.loads(raw)["token"]
    assert isinstance(token, str)
    return token


def test_create_update_delete_per_day(connector: BlikkConnector, sandbox: SandboxServer) -> None:
    entry = midnight_entry()
    first, second = connector.bookings(entry)
    ids = [connector.create(entry, b) for b in (first, second)]
    stored = {r["id"]: r for r in reports(sandbox)}
    assert sorted(stored) == sorted(int(i) for i in ids)
    day1 = stored[int(ids[0])]
    assert (day1["date"], day1["clockStart"], day1["clockEnd"]) == ("2026-03-10", "23:15", "23:59")
    assert day1["hours"] == 0.75 and day1["user"]["id"] == 3
    assert day1["internalComment"] == f"clockify:{entry.id}"

    changed = dataclasses.replace(entry, description="Edited")
    [b1, _] = connector.bookings(changed)
    assert connector.update(changed, ids[0], b1) == ids[0]
    assert {r["id"]: r for r in reports(sandbox)}[int(ids[0])]["comment"] == "Edited"

    for remote_id in ids:
        connector.delete(entry, remote_id)
    assert reports(sandbox) == []
    assert_paced(sandbox)


def test_update_of_attested_report_is_permanent(
    connector: BlikkConnector, sandbox: SandboxServer
) -> None:
    entry = midnight_entry()
    booking = connector.bookings(entry)[0]
    remote_id = connector.create(entry, booking)
    httpx.post(f"{sandbox.url}/_sandbox/blikk/timereports/{remote_id}/attest")
    with pytest.raises(PermanentError, match="attested") as info:
        connector.update(entry, remote_id, booking)
    assert not isinstance(info.value, TransientError)
    with pytest.raises(PermanentError, match="attested"):
        connector.delete(entry, remote_id)
    other = connector.create(entry, booking)
    httpx.post(f"{sandbox.url}/_sandbox/blikk/timereports/{other}/invoice", json={"invoiceId": 9})
    with pytest.raises(PermanentError, match="invoiced"):
        connector.delete(entry, other)
    assert len(reports(sandbox)) == 2


def test_missing_report_delete_is_done_and_update_recreates(
    connector: BlikkConnector, sandbox: SandboxServer
) -> None:
    entry = midnight_entry()
    booking = connector.bookings(entry)[0]
    connector.delete(entry, "987654")  # no error
    new_id = connector.update(entry, "987654", booking)
    assert new_id != "987654"
    [stored] = reports(sandbox)
    assert str(stored["id"]) == new_id and stored["internalComment"] == f"clockify:{entry.id}"


@pytest.mark.parametrize("write_response", ["detail", "empty"])
def test_create_returns_the_reports_id_with_or_without_a_body(
    connector: BlikkConnector, sandbox: SandboxServer, write_response: str
) -> None:
    # Blikk documents "200 OK" and no body for a create; without an id in the answer the report
    # is found by its clockify:<entry id> marker.
    fake(sandbox).set_write_response(write_response)
    entry = midnight_entry()
    first, second = connector.bookings(entry)
    first_id = connector.create(entry, first)
    second_id = connector.create(entry, second)
    stored = {r["date"]: str(r["id"]) for r in reports(sandbox)}
    assert stored == {"2026-03-10": first_id, "2026-03-11": second_id}
    # An update of a report Blikk lost re-creates it, and learns the new id the same way.
    fake(sandbox).reports.pop(int(first_id))
    again = connector.update(entry, first_id, first)
    assert again == {r["date"]: str(r["id"]) for r in reports(sandbox)}["2026-03-10"]
    assert again != first_id
    assert_paced(sandbox)


def test_create_without_id_and_not_found_is_an_unknown_outcome(
    connector: BlikkConnector, sandbox: SandboxServer
) -> None:
    fake(sandbox).set_write_response("empty")
    connector.client.tokens.get()  # take the token now: the next requests are POST, then search
    # The POST passes (a latency-only fault answers normally), the marker search gets a 503.
    sandbox.inject_fault("blikk", latency=0.01, count=1)
    sandbox.inject_fault("blikk", status=503, count=1)
    entry = midnight_entry()
    with pytest.raises(TransientError) as info:
        connector.create(entry, connector.bookings(entry)[0])
    # A 2xx was received: the report may exist, so the engine must keep "create pending".
    assert info.value.outcome_unknown
    assert "clockify:" + entry.id in str(info.value)
    assert len(reports(sandbox)) == 1


def test_validation_error_is_permanent_with_model_state(
    connector: BlikkConnector, sandbox: SandboxServer
) -> None:
    entry = midnight_entry()
    booking = connector.bookings(entry)[0]
    bad = Booking(booking.key, {**booking.payload, "userId": 999})
    with pytest.raises(PermanentError, match="userId") as info:
        connector.create(entry, bad)
    assert info.value.status == 400
    remote_id = connector.create(entry, booking)
    with pytest.raises(PermanentError, match="userId"):
        connector.update(entry, remote_id, bad)  # report exists, not attested: validation


def test_token_expiry_mid_run_loses_nothing(settings: Settings, redis_client: redis.Redis) -> None:
    with SandboxServer(SandboxConfig(blikk_token_ttl=2.0)) as sandbox:
        conn = BlikkConnector(settings, section(sandbox), redis_client)
        entry = midnight_entry()
        booking = conn.bookings(entry)[0]
        created = []
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            created.append(conn.create(entry, booking))
        conn.close()
        stored = reports(sandbox)
        assert sorted(int(i) for i in created) == sorted(r["id"] for r in stored)
        state = sandbox.state()["blikk"]
        assert state["tokens_issued"] >= 2
        assert state["rejected_429"] == 0 and state["max_requests_in_any_second"] <= 4


def test_401_refreshes_once_and_retries(
    connector: BlikkConnector, sandbox: SandboxServer, redis_client: redis.Redis
) -> None:
    entry = midnight_entry()
    booking = connector.bookings(entry)[0]
    connector.create(entry, booking)
    old = cached_token(connector, redis_client)
    fake(sandbox).expire_tokens()
    connector.create(entry, booking)
    assert cached_token(connector, redis_client) != old
    assert len(reports(sandbox)) == 2
    assert sandbox.state()["blikk"]["tokens_issued"] == 2


def test_persistent_401_is_configuration_error_without_token(
    connector: BlikkConnector, sandbox: SandboxServer, redis_client: redis.Redis
) -> None:
    entry = midnight_entry()
    booking = connector.bookings(entry)[0]
    connector.create(entry, booking)
    token = cached_token(connector, redis_client)
    # The call is refused, and so is the token request that follows (credentials revoked).
    sandbox.inject_fault("blikk", status=401, count=2, body={"message": "Invalid token"})
    with pytest.raises(ConfigurationError, match="BLIKK_APP_SECRET") as info:
        connector.create(entry, booking)
    assert_no_secrets(info.value, SECRET, token)
    assert len(reports(sandbox)) == 1


def test_stale_cached_token_is_replaced(
    connector: BlikkConnector, sandbox: SandboxServer, redis_client: redis.Redis
) -> None:
    # A token another worker cached that Blikk no longer knows: one 401, refresh, retry.
    stale = {"token": "pk_stale.pa_stale", "expires_at": time.time() + 3600, "lifetime": 3600}
    redis_client.set(connector.client.tokens.key, json.dumps(stale))
    entry = midnight_entry()
    connector.create(entry, connector.bookings(entry)[0])
    assert cached_token(connector, redis_client) != "pk_stale.pa_stale"
    assert len(reports(sandbox)) == 1


def test_injected_429_gives_exact_wait_and_holds_off_everyone(
    connector: BlikkConnector, sandbox: SandboxServer
) -> None:
    entry = midnight_entry()
    booking = connector.bookings(entry)[0]
    connector.create(entry, booking)
    sandbox.inject_fault("blikk", status=429, body={"waitInSeconds": 3}, retry_after=3)
    with pytest.raises(TransientError) as info:
        connector.create(entry, booking)
    assert info.value.retry_after == 3.0 and info.value.status == 429
    # The shared schedule is pushed out, so the next caller (any worker) waits ~3 s.
    assert 2.5 <= connector.client.limiter.reserve().wait <= 3.0


def test_real_429_from_bursting(
    connector: BlikkConnector, sandbox: SandboxServer, redis_client: redis.Redis
) -> None:
    entry = midnight_entry()
    booking = connector.bookings(entry)[0]
    connector.create(entry, booking)
    token = cached_token(connector, redis_client)
    # Someone outside the relay burns the token's budget for this second.
    with httpx.Client(base_url=sandbox.base_urls["blikk"]) as http:
        for _ in range(4):
            http.get(
                "/v1/Admin/Users", params={"page": 1}, headers={"Authorization": f"Bearer {token}"}
            )
    with pytest.raises(TransientError) as info:
        connector.create(entry, booking)
    assert info.value.retry_after == 1.0
    assert_no_secrets(info.value, SECRET, token)


def test_wrong_secret_is_configuration_error_without_secret(
    sandbox: SandboxServer, settings: Settings, redis_client: redis.Redis
) -> None:
    wrong = "definitely-wrong-secret"
    conn = BlikkConnector(settings, section(sandbox, app_secret=Secret(wrong)), redis_client)
    with pytest.raises(ConfigurationError, match="BLIKK_APP_SECRET") as info:
        conn.probe()
    assert_no_secrets(info.value, wrong)
    conn.close()


def test_missing_credentials_refused_at_construction(
    sandbox: SandboxServer, settings: Settings, redis_client: redis.Redis
) -> None:
    with pytest.raises(ConfigurationError, match="BLIKK_APP_ID"):
        BlikkConnector(settings, section(sandbox, app_id=""), redis_client)


def test_find_reconciles_by_marker(connector: BlikkConnector, sandbox: SandboxServer) -> None:
    entry = midnight_entry()
    first, second = connector.bookings(entry)
    assert connector.find(entry, first) is None
    other = dataclasses.replace(entry, id="someone-else")
    connector.create(other, connector.bookings(other)[0])
    created = connector.create(entry, first)
    assert connector.find(entry, first) == created
    # The other day of the same entry has no report yet.
    assert connector.find(entry, second) is None


def test_token_shared_between_workers(
    connector: BlikkConnector,
    sandbox: SandboxServer,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    connector.probe()
    other = BlikkConnector(settings, section(sandbox), redis_client)
    assert other.probe() == (
        f"credentials accepted at {sandbox.base_urls['blikk']}: app 'sandbox-blikk-app', "
        "3 users visible"
    )
    other.close()
    assert sandbox.state()["blikk"]["tokens_issued"] == 1
    # Neither the app id nor the token appears in key names.
    token = cached_token(connector, redis_client)
    for key in (connector.client.tokens.key, connector.client.limiter.key):
        assert token not in key and SECRET not in key and "sandbox-blikk-app" not in key


def test_lookups_page_through_every_registry(
    connector: BlikkConnector, sandbox: SandboxServer
) -> None:
    for n in range(120):
        httpx.post(
            f"{sandbox.url}/_sandbox/blikk/registries/users",
            json={"id": 100 + n, "firstName": "User", "lastName": str(n)},
        )
    users = list_users(connector.client)
    assert len(users) == 123
    assert {"id": 3, "name": "Anna Lindqvist"} in users
    assert {"id": 219, "name": "User 119"} in users
    lookups = list_lookups(connector)
    assert set(lookups) == {
        "users",
        "projects",
        "internal_projects",
        "absence_projects",
        "activities",
        "time_codes",
        "time_articles",
    }
    assert lookups["projects"][0] == {"id": 1, "name": "26 Website relaunch"}
    assert lookups["time_codes"][0]["name"] == "Normal"
    assert_paced(sandbox)
