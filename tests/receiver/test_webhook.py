"""Every answer of POST /webhooks/clockify, against a real Redis."""

from __future__ import annotations

import orjson
import redis
from starlette.testclient import TestClient

from clockify_relay.asgi import create_app
from clockify_relay.settings import Settings
from tests.receiver.conftest import ENTRY_TOKEN, TOKEN, queued_envelopes

URL = "/webhooks/clockify"


def entry(entry_id: str = "66a1b2c3d4e5f60718293a4b", description: str = "work") -> bytes:
    return orjson.dumps(
        {
            "id": entry_id,
            "workspaceId": "WS1",
            "userId": "U1",
            "description": description,
            "timeInterval": {
                "start": "2026-11-20T08:00:00Z",
                "end": "2026-11-20T09:00:00Z",
                "duration": "PT1H",
            },
        }
    )


def post(
    client: TestClient,
    body: bytes,
    event: str | None = "NEW_TIME_ENTRY",
    token: str | None = TOKEN,
    path: str = URL,
) -> object:
    headers = {"Content-Type": "application/json"}
    if event is not None:
        headers["Clockify-Webhook-Event-Type"] = event
    if token is not None:
        headers["Clockify-Signature"] = token
    return client.post(path, content=body, headers=headers)


def test_accepted_event_is_queued_with_its_envelope(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    body = entry()
    response = post(client, body)
    assert response.status_code == 202
    data = response.json()
    assert data["status"] == "queued"
    [envelope] = queued_envelopes(redis_client, key_prefix)
    assert envelope["event_id"] == data["event_id"]
    assert envelope["event_type"] == "NEW_TIME_ENTRY"
    assert envelope["workspace_id"] == "WS1"
    assert envelope["entity_id"] == "66a1b2c3d4e5f60718293a4b"
    assert envelope["sequence"] == 1
    assert envelope["payload"] == orjson.loads(body)
    assert envelope["received_at"].endswith("+00:00")


def test_header_names_are_case_insensitive_and_double_slash_is_tolerated(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    response = client.post(
        "http://testserver//webhooks/clockify",
        content=entry(),
        headers={"clockify-webhook-event-type": "NEW_TIME_ENTRY", "CLOCKIFY-SIGNATURE": TOKEN},
    )
    assert response.status_code == 202
    assert len(queued_envelopes(redis_client, key_prefix)) == 1


def test_same_body_twice_is_queued_once(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    first = post(client, entry())
    second = post(client, entry())
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    assert len(queued_envelopes(redis_client, key_prefix)) == 1


def test_changed_body_of_same_entry_is_queued_again(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    assert post(client, entry(description="a")).status_code == 202
    assert post(client, entry(description="b")).status_code == 202
    envelopes = queued_envelopes(redis_client, key_prefix)
    assert [e["sequence"] for e in envelopes] == [1, 2]


def test_edit_back_and_forth_is_not_swallowed(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    for description in ("A", "B", "A"):
        assert post(client, entry(description=description), "TIME_ENTRY_UPDATED").status_code == 202
    envelopes = queued_envelopes(redis_client, key_prefix)
    assert [e["payload"]["description"] for e in envelopes] == ["A", "B", "A"]
    assert [e["sequence"] for e in envelopes] == [1, 2, 3]


def test_same_body_under_another_event_type_is_not_a_duplicate(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    assert post(client, entry(), "NEW_TIME_ENTRY").status_code == 202
    assert post(client, entry(), "TIME_ENTRY_DELETED").status_code == 202
    assert len(queued_envelopes(redis_client, key_prefix)) == 2


def test_dedup_window_expiry_lets_a_repeat_through(
    receiver_settings: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    with TestClient(create_app(receiver_settings.with_changes(dedup_window=60))) as client:
        assert post(client, entry()).status_code == 202
        for key in redis_client.scan_iter(f"{key_prefix}dedup:*"):
            assert 0 < redis_client.ttl(key) <= 60
            redis_client.delete(key)  # what expiry does after the window
        assert post(client, entry()).status_code == 202


def test_known_but_unrouted_event_is_ignored_without_queueing(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    response = post(client, b'{"id": "p1", "name": "Project"}', "NEW_PROJECT")
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert queued_envelopes(redis_client, key_prefix) == []


def test_ignored_event_still_needs_a_valid_token(client: TestClient) -> None:
    assert post(client, b"{}", "NEW_PROJECT", token="nope").status_code == 401


def test_bad_input_gets_400_and_nothing_is_queued(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    cases = [
        (b"{not json", "NEW_TIME_ENTRY", "not valid JSON"),
        (b"[1, 2]", "NEW_TIME_ENTRY", "JSON object"),
        (b'"text"', "TIME_ENTRY_UPDATED", "JSON object"),
        (b'{"description": "no id"}', "NEW_TIME_ENTRY", "no id"),
        (b'{"id": ""}', "NEW_APPROVAL_REQUEST", "no id"),
        (b'{"id": 42}', "TIME_ENTRY_DELETED", "no id"),
        (b'{"id": "e1"}', "NEW_TIME_ENTRY", "no timeInterval.start"),
        (b'{"id": "e1", "timeInterval": {"start": null}}', "TIMER_STOPPED", "timeInterval.start"),
        (b'{"id": "e1", "timeInterval": []}', "TIME_ENTRY_UPDATED", "timeInterval.start"),
        (b"", "NEW_TIME_ENTRY", "not valid JSON"),
        (b"\xff\xfe", "NEW_TIME_ENTRY", "not valid JSON"),
    ]
    for body, event, message in cases:
        response = post(client, body, event)
        assert response.status_code == 400, body
        assert message in response.json()["error"]
    response = post(client, entry(), event=None)
    assert response.status_code == 400
    assert "Clockify-Webhook-Event-Type" in response.json()["error"]
    assert queued_envelopes(redis_client, key_prefix) == []


def test_missing_or_wrong_token_is_401_and_token_is_not_echoed(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    missing = post(client, entry(), token=None)
    assert missing.status_code == 401
    assert missing.json()["error"]
    wrong = post(client, entry(), token="guessed-secret-value")
    assert wrong.status_code == 401
    assert "guessed-secret-value" not in wrong.text
    assert TOKEN not in wrong.text
    assert queued_envelopes(redis_client, key_prefix) == []


def test_bound_token_only_signs_its_event_type(client: TestClient) -> None:
    assert post(client, entry(), "TIME_ENTRY_UPDATED", token=ENTRY_TOKEN).status_code == 202
    refused = post(client, entry(), "NEW_TIME_ENTRY", token=ENTRY_TOKEN)
    assert refused.status_code == 401
    assert ENTRY_TOKEN not in refused.text


def test_nothing_configured_fails_closed(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = post(client, entry())
    assert response.status_code == 401


def test_wrong_method_is_405(client: TestClient) -> None:
    response = client.get(URL)
    assert response.status_code == 405
    assert response.json()["error"]


def test_body_over_limit_is_413_without_queueing(
    receiver_settings: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    with TestClient(create_app(receiver_settings.with_changes(max_body_bytes=200))) as client:
        big = entry(description="x" * 500)
        assert post(client, big).status_code == 413

        # Without a Content-Length the limit holds while streaming.
        def chunks() -> object:
            yield big[:100]
            yield big[100:]

        response = client.post(
            URL,
            content=chunks(),  # type: ignore[arg-type]
            headers={"Clockify-Webhook-Event-Type": "NEW_TIME_ENTRY", "Clockify-Signature": TOKEN},
        )
        assert response.status_code == 413
        assert "200 bytes" in response.json()["error"]
        assert post(client, entry()).status_code == 202
    assert len(queued_envelopes(redis_client, key_prefix)) == 1


def test_redis_unreachable_is_503_with_retry_after(receiver_settings: Settings) -> None:
    from clockify_relay.embedded_redis import free_port

    down = receiver_settings.with_changes(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(down)) as client:
        response = post(client, entry())
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert response.json()["error"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert client.get("/healthz").status_code == 200


def test_readyz_with_redis(client: TestClient) -> None:
    assert client.get("/readyz").json() == {"status": "ready"}


def test_addon_jwt_through_the_endpoint(
    settings: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    claims = {
        "iss": "clockify",
        "sub": "relay-addon",
        "type": "addon",
        "workspaceId": "WS1",
        "addonId": "A1",
    }
    addon_settings = settings.with_changes(
        addon_key="relay-addon", addon_public_key_pem=public_pem, workspace_ids=frozenset({"WS1"})
    )
    with TestClient(create_app(addon_settings)) as client:
        good = jwt.encode(claims, private, algorithm="RS256")
        assert post(client, entry(), token=good).status_code == 202
        other_ws = jwt.encode(dict(claims, workspaceId="WS2"), private, algorithm="RS256")
        refused = post(client, entry(description="x"), token=other_ws)
        assert refused.status_code == 401
        assert other_ws not in refused.text
        forged = jwt.encode(claims, "not-the-key-" * 4, algorithm="HS256")
        assert post(client, entry(description="y"), token=forged).status_code == 401
        # The body's workspaceId must be a string equal to the claim: a number, a list, an
        # object, true, null or no workspaceId at all cannot prove the body's workspace.
        for workspace in (6470, ["WS1"], {"id": "WS1"}, True, None, "MISSING"):
            payload = orjson.loads(entry(description=f"ws {workspace}"))
            if workspace == "MISSING":
                del payload["workspaceId"]
            else:
                payload["workspaceId"] = workspace
            refused = post(client, orjson.dumps(payload), token=good)
            assert refused.status_code == 401, workspace
            assert "workspace" in refused.json()["error"]
        # An ignored event type's body is not read: the claim alone names the workspace.
        assert post(client, b"{}", event="NEW_PROJECT", token=good).status_code == 200
    assert len(queued_envelopes(redis_client, key_prefix)) == 1


def test_a_non_string_workspace_id_is_400_with_a_plain_token(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    for workspace in (6470, ["WS1"], {"id": "WS1"}, True):
        payload = orjson.loads(entry())
        payload["workspaceId"] = workspace
        response = post(client, orjson.dumps(payload))
        assert response.status_code == 400, workspace
        assert "workspaceId must be a string" in response.json()["error"]
    assert queued_envelopes(redis_client, key_prefix) == []


def nested(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_bodies_a_worker_could_not_process_are_400_and_never_queued(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    """A 202 is a promise: every limit stated in README is refused here, at ingest."""

    def with_changes(**changes: object) -> bytes:
        payload = orjson.loads(entry())
        payload.update(changes)
        return orjson.dumps(payload)

    def with_interval(start: str, end: str | None) -> bytes:
        return with_changes(timeInterval={"start": start, "end": end, "duration": None})

    def nested_text(depth: int) -> bytes:
        return entry()[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"

    cases = [
        # Integers beyond signed 64 bits (orjson reads them as floats; Celery as ints).
        (entry()[:-1] + b', "n": 18446744073709551616}', "64-bit"),
        (entry()[:-1] + b', "n": -9223372036854775809}', "64-bit"),
        (entry()[:-1] + b', "n": 9223372036854775808}', "64-bit"),
        # Nesting past the limit, and far past it (Celery's decoder would fail and drop it).
        (with_changes(customFieldValues=nested(33)), "nested deeper than 32"),
        (nested_text(300), "nested deeper than 32"),
        (nested_text(1000), "nested deeper than 32"),
        # Dates no mapper can book.
        (with_interval("0001-01-01T00:00:00Z", "0001-01-01T01:00:00Z"), "outside the years"),
        (with_interval("9999-12-31T23:00:00Z", "9999-12-31T23:30:00Z"), "outside the years"),
        (with_interval("2026-11-20T09:00:00Z", "2026-11-20T08:00:00Z"), "ends before it starts"),
        (with_interval("2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z"), "longer than"),
        (with_interval("2026-11-20T08:00:00", None), "without offset"),
        (with_changes(timeInterval={"start": "2026-11-20T08:00:00Z", "duration": "P"}), "duration"),
    ]
    for body, message in cases:
        response = post(client, body)
        assert response.status_code == 400, body[:80]
        assert message in response.json()["error"], response.json()
    bad_approval = orjson.dumps({"id": "a1", "workspaceId": "WS1", "status": {"state": "MAYBE"}})
    response = post(client, bad_approval, event="APPROVAL_REQUEST_STATUS_UPDATED")
    assert response.status_code == 400
    assert "unknown state" in response.json()["error"]
    assert queued_envelopes(redis_client, key_prefix) == []
    # The limits themselves are accepted.
    at_limit = with_changes(n=2**63 - 1, m=-(2**63) + 1, customFieldValues=nested(31))
    assert post(client, at_limit).status_code == 202
