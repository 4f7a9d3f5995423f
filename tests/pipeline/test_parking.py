"""Parked deliveries: due ones move to the queue atomically, others wait."""

from __future__ import annotations

import time

import orjson
import redis

from clockify_relay.pipeline import parking
from clockify_relay.pipeline.messages import DELIVER_TASK, QUEUE
from clockify_relay.redis_conn import Keys


def test_release_moves_only_due_messages(redis_client: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    parking.park(redis_client, keys, 0, ["everit", {"event_id": "due"}], {"attempt": 2})
    parking.park(redis_client, keys, 3600, ["everit", {"event_id": "later"}], {"attempt": 2})
    assert parking.release_due(redis_client, keys) == 1
    [raw] = redis_client.lrange(f"{key_prefix}{QUEUE}", 0, -1)
    message = orjson.loads(raw)
    assert message["headers"]["task"] == DELIVER_TASK
    args, kwargs, _ = orjson.loads(message["body"])
    assert args == ["everit", {"event_id": "due"}]
    assert kwargs == {"attempt": 2}
    assert parking.parked_count(redis_client, keys) == 1
    # Nothing is due twice: a second release moves nothing.
    assert parking.release_due(redis_client, keys) == 0
    assert parking.release_due(redis_client, keys, now=time.time() + 3601) == 1
    assert parking.parked_count(redis_client, keys) == 0


def test_release_handles_more_than_one_batch(redis_client: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    for i in range(parking.RELEASE_BATCH + 7):
        parking.park(redis_client, keys, 0, ["everit", {"event_id": str(i)}], {})
    assert parking.release_due(redis_client, keys) == parking.RELEASE_BATCH + 7
    assert redis_client.llen(f"{key_prefix}{QUEUE}") == parking.RELEASE_BATCH + 7
