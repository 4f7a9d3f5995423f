"""Logs and metrics of real processes: a receiver and Celery workers against the sandbox.

The processes' output is not a terminal, so they log JSON: every line is parsed."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from clockify_relay.admin.tokens import mint_admin_token
from clockify_relay.embedded_redis import free_port
from clockify_relay.pipeline import trace
from clockify_relay.redis_conn import Keys
from clockify_relay.sandbox.server import SandboxServer
from tests.fixture_loader import fixture_json
from tests.pipeline.test_delivery_e2e import relay_config
from tests.processes import RelayProcess, relay_env, start_receiver, start_worker, wait_until

TOKEN = "obs-webhook-token-5f1c9a"
ADMIN_SECRET = "obs-admin-secret-77d2e0b4-long-enough-for-hs256"
REDIS_PASSWORD = "obs-redis-password-c3a9"
pytestmark = pytest.mark.integration


def with_password(url: str) -> str:
    """The Redis URL with a password in it (Redis's default user takes any: nopass)."""
    scheme, _, rest = url.partition("://")
    if scheme != "redis" or "@" in rest:
        return url
    return f"redis://default:{REDIS_PASSWORD}@{rest}"


def json_lines(process: RelayProcess) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as JSON. The one exception: the notices
    Celery prints from its signal handlers (no logging there) when it shuts down."""
    lines = []
    for line in process.log().splitlines():
        if not line.strip() or re.fullmatch(r"worker: [^{].*", line):
            continue
        try:
            lines.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return lines


def entry_body(entry_id: str) -> bytes:
    payload = copy.deepcopy(fixture_json("NEW_TIME_ENTRY"))
    payload["id"] = entry_id
    return orjson.dumps(payload)


class Relay:
    def __init__(
        self,
        redis_url: str,
        key_prefix: str,
        sandbox: SandboxServer,
        config: Path,
        concurrency: int = 1,
        **extra: str,
    ) -> None:
        self.env = relay_env(
            with_password(redis_url),
            key_prefix,
            CLOCKIFY_WEBHOOK_TOKENS=TOKEN,
            RELAY_CONFIG=str(config),
            EVERIT_API_KEY=sandbox.config.everit_api_key,
            RELAY_ADMIN_JWT_SECRET=ADMIN_SECRET,
            RELAY_VISIBILITY_TIMEOUT="16",
            **extra,
        )
        self.sandbox = sandbox
        self.redis = redis.Redis.from_url(redis_url)
        self.keys = Keys(key_prefix)
        self.receiver, self.url = start_receiver(self.env)
        try:
            self.worker = start_worker(self.env, concurrency)
        except BaseException:
            self.receiver.stop()
            raise

    def post(self, entry_id: str) -> str:
        response = httpx.post(
            self.url + "/webhooks/clockify",
            content=entry_body(entry_id),
            headers={"Clockify-Webhook-Event-Type": "NEW_TIME_ENTRY", "Clockify-Signature": TOKEN},
        )
        assert response.status_code == 202, response.text
        return str(response.json()["event_id"])

    def settled(self, event_id: str) -> bool:
        done = {"applied", "deleted", "skipped", "dead-lettered"}
        records = trace.read(self.redis, self.keys, event_id)[1]
        return any(r.get("stage") == "deliver" and r.get("outcome") in done for r in records)

    def wait(self, *event_ids: str, timeout: float = 60) -> None:
        for event_id in event_ids:
            wait_until(
                lambda event_id=event_id: self.settled(event_id),
                timeout=timeout,
                what=f"event {event_id}",
            )

    def stop(self) -> None:
        self.worker.stop()
        self.receiver.stop()
        self.redis.close()


@pytest.fixture
def relay(
    redis_url: str, key_prefix: str, sandbox: SandboxServer, tmp_path: Path
) -> Iterator[Relay]:
    sandbox.reset()
    running = Relay(redis_url, key_prefix, sandbox, relay_config(tmp_path, sandbox))
    yield running
    running.stop()


def test_every_step_is_a_json_line_and_no_secret_is_logged(relay: Relay) -> None:
    delivered = relay.post("obs-entry-delivered")
    relay.wait(delivered)
    relay.sandbox.inject_fault("everit", status=503, count=1, retry_after=0.2)
    retried = relay.post("obs-entry-retried")
    relay.wait(retried)
    relay.sandbox.inject_fault(
        "everit",
        status=401,
        count=1,
        body={"error": "bad key", "apiKey": relay.sandbox.config.everit_api_key},
    )
    dead = relay.post("obs-entry-dead")
    relay.wait(dead)
    admin = httpx.get(
        relay.url + "/admin/dlq",
        headers={"Authorization": f"Bearer {mint_admin_token(ADMIN_SECRET, 'ops-anna', 60)}"},
    )
    assert admin.status_code == 200, admin.text
    refused = httpx.post(
        relay.url + "/webhooks/clockify",
        content=b'{"id": "x", "secret-looking": "body-text-7731"}',
        headers={"Clockify-Webhook-Event-Type": "NEW_TIME_ENTRY", "Clockify-Signature": "wrong"},
    )
    assert refused.status_code == 401
    relay.worker.stop()  # every line written
    relay.receiver.stop()

    worker = json_lines(relay.worker)
    receiver = json_lines(relay.receiver)
    for line in worker + receiver:
        assert {"ts", "level", "logger", "message"} <= line.keys(), line

    def step(message: str, event_id: str) -> dict[str, Any]:
        found = [w for w in worker if w["message"] == message and w.get("event_id") == event_id]
        assert found, f"no {message!r} line for {event_id}: {worker}"
        return found[0]

    ids = {"entry_id": "obs-entry-delivered", "event_type": "NEW_TIME_ENTRY"}
    assert ids.items() <= step("routed", delivered).items()
    assert {**ids, "target": "everit", "level": "INFO"}.items() <= step(
        "delivered", delivered
    ).items()
    retry_line = step("retried", retried)
    assert retry_line["target"] == "everit" and retry_line["delay"] > 0
    assert step("attempt failed", retried)["status"] == 503

    # (a) the dead letter: a WARNING with event id, entry id, target and error.
    letter = step("dead-lettered", dead)
    assert letter["level"] == "WARNING"
    assert letter["entry_id"] == "obs-entry-dead"
    assert letter["target"] == "everit"
    assert letter["event_type"] == "NEW_TIME_ENTRY"
    assert letter["error"]

    # (d) Celery's per-task "succeeded" lines are gone (they claimed success for the dead
    # letter too); the worker's own start-up lines are still there.
    assert not [w for w in worker if "succeeded" in w["message"]]
    assert not [w for w in worker if w["logger"] == "celery.app.trace" and w["level"] == "INFO"]
    assert any(w["message"].endswith("ready.") for w in worker)

    # The receiver: received with ids, the refusal without the body, the admin's subject.
    [received] = [r for r in receiver if r["message"] == "received" and r["event_id"] == dead]
    assert received["entry_id"] == "obs-entry-dead" and received["event_type"] == "NEW_TIME_ENTRY"
    [refusal] = [r for r in receiver if r["message"] == "webhook refused"]
    assert refusal["status"] == 401 and refusal["reason"]
    [audit] = [r for r in receiver if r.get("admin_subject") == "ops-anna"]
    assert audit["message"] == "admin GET /admin/dlq by ops-anna"

    # Never a secret: tokens, API keys, Authorization headers, passwords in Redis URLs.
    text = relay.worker.log() + relay.receiver.log()
    for secret in (
        TOKEN,
        ADMIN_SECRET,
        REDIS_PASSWORD,
        relay.sandbox.config.everit_api_key,
        "Bearer ",
        "body-text-7731",
    ):
        assert secret not in text, secret


def metric_sum(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_two_pool_processes_add_up_in_one_scrape(
    redis_url: str, key_prefix: str, sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.reset()
    # Every Everit call takes 0.3 s: while one pool process waits, the other takes the next.
    sandbox.inject_fault("everit", latency=0.3, seconds=120)
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    relay = Relay(
        redis_url,
        key_prefix,
        sandbox,
        relay_config(tmp_path, sandbox),
        concurrency=2,
        RELAY_WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    try:
        events = [relay.post(f"obs-pool-{uuid.uuid4().hex[:8]}") for _ in range(8)]
        relay.wait(*events)
        # Each pool process writes its own file; both took deliveries.
        writers = {path.name for path in metrics_dir.glob("counter_*.db")}
        assert len(writers) >= 2, writers
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert metric_sum(text, "clockify_relay_deliveries_total", target="everit") == 8
        assert metric_sum(text, "clockify_relay_deliveries_total", outcome="applied") == 8
        assert metric_sum(text, "clockify_relay_events_routed_total") == 8
        assert metric_sum(text, "clockify_relay_delivery_seconds_count", target="everit") == 8
        assert metric_sum(text, "clockify_relay_redis_up") == 1
        assert metric_sum(text, "clockify_relay_queue_depth") == 0
    finally:
        relay.stop()
