"""GET /metrics of the receiver: prometheus_client's exposition of webhook answers (by event
type and status), ack latency and the Redis sizes; 200 with ``redis_up 0`` when Redis is down."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from clockify_relay.asgi import create_app
from clockify_relay.embedded_redis import free_port
from clockify_relay.settings import Settings
from tests.receiver.test_webhook import entry, post


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels (parsing proves the text is valid)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_webhooks_by_event_type_and_status_and_ack_latency(client: TestClient) -> None:
    # Counters belong to the process (other tests post too): compare before and after.
    before = samples(client.get("/metrics").text)
    post(client, entry())  # 202
    post(client, entry())  # 200 duplicate
    post(client, entry(), token="wrong")  # 401
    post(client, entry(), event="SOMETHING_NEW")  # 200 ignored, an unknown type
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    webhooks = "clockify_relay_webhooks_total"
    assert grew(webhooks, event_type="NEW_TIME_ENTRY", status="202") == 1
    assert grew(webhooks, event_type="NEW_TIME_ENTRY", status="200") == 1
    assert grew(webhooks, event_type="NEW_TIME_ENTRY", status="401") == 1
    # A type the relay does not route is one label value, whatever the sender writes.
    assert grew(webhooks, event_type="other", status="200") == 1
    assert not any(("event_type", "SOMETHING_NEW") in labels for (_name, labels) in after)
    ack = "clockify_relay_webhook_ack_seconds"
    assert grew(f"{ack}_count", status="202") == 1
    assert grew(f"{ack}_count", status="401") == 1
    assert value(after, f"{ack}_sum", status="202") > 0
    assert value(after, f"{ack}_bucket", status="202", le="+Inf") >= 1
    # Read from Redis at scrape time: the one queued message.
    assert value(after, "clockify_relay_queue_depth") == 1
    assert value(after, "clockify_relay_dead_letters") == 0
    assert value(after, "clockify_relay_parked") == 0
    assert value(after, "clockify_relay_redis_up") == 1


def test_redis_down_is_redis_up_0_and_still_200(receiver_settings: Settings) -> None:
    down = receiver_settings.with_changes(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.2
    )
    with TestClient(create_app(down)) as client:
        assert post(client, entry()).status_code == 503
        response = client.get("/metrics")
    assert response.status_code == 200
    found = samples(response.text)
    assert value(found, "clockify_relay_redis_up") == 0
    assert ("clockify_relay_queue_depth", frozenset()) not in found
    assert (
        value(found, "clockify_relay_webhooks_total", event_type="NEW_TIME_ENTRY", status="503")
        >= 1
    )
