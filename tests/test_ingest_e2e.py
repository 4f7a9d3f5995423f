"""End to end: Clockify POST → receiver on uvicorn → Redis → a real Celery worker process."""

from __future__ import annotations

import httpx
import redis

from clockify_relay.pipeline import trace
from clockify_relay.redis_conn import Keys
from tests.processes import relay_env, start_receiver, start_worker, wait_until

TOKEN = "e2e-token"


def test_posted_event_is_processed_by_a_worker(redis_url: str, key_prefix: str) -> None:
    env = relay_env(redis_url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS=TOKEN)
    keys = Keys(key_prefix)
    client = redis.Redis.from_url(redis_url)
    receiver, url = start_receiver(env)
    worker = start_worker(env)
    try:
        response = httpx.post(
            url + "/webhooks/clockify",
            content=(
                b'{"id": "e2e-entry-1", "workspaceId": "WS1", "description": "&lt;b&gt;",'
                b' "timeInterval": {"start": "2026-11-20T08:00:00Z"}}'
            ),
            headers={"Clockify-Webhook-Event-Type": "NEW_TIME_ENTRY", "Clockify-Signature": TOKEN},
        )
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]

        envelope, records = wait_until(
            lambda: (r := trace.read(client, keys, event_id))[1] and r, what="trace record"
        )
        assert envelope is not None
        assert envelope["entity_id"] == "e2e-entry-1"
        assert envelope["payload"]["description"] == "&lt;b&gt;"
        assert records[0]["stage"] == "route"
        assert records[0]["sequence"] == 1
        # The message was acked: nothing left queued or unacked under our prefix.
        wait_until(lambda: client.llen(f"{key_prefix}relay") == 0, what="queue drained")
        wait_until(lambda: client.hlen(f"{key_prefix}unacked") == 0, what="message acked")
        assert TOKEN not in worker.log() + receiver.log()
    finally:
        worker.stop()
        receiver.stop()
        client.close()
