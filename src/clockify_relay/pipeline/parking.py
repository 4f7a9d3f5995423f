"""Long waits parked in Redis instead of long Celery countdowns (ARCHITECTURE §3).

Kombu's Redis transport re-delivers any message not acked within ``visibility_timeout``,
countdown messages included (celery#2481). So a delivery that must wait longer than a short
countdown is parked: the complete Celery message goes into a sorted set scored by when it is
due, and the periodic ``release_parked`` task moves due messages to the queue with one atomic
Lua script — nothing lost, nothing doubled, safe even if two schedulers ran by mistake.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import redis

from clockify_relay.pipeline.messages import DELIVER_TASK, QUEUE, task_message
from clockify_relay.redis_conn import Keys

RELEASE_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, message in ipairs(due) do
  redis.call('LPUSH', KEYS[2], message)
  redis.call('ZREM', KEYS[1], message)
end
return #due
"""
RELEASE_BATCH = 500


def deliver_message(args: list[Any], kwargs: dict[str, Any]) -> bytes:
    """A complete Celery message for ``deliver(*args, **kwargs)``."""
    task_id = str(uuid.uuid4())
    body = orjson.dumps(
        [args, kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    )
    head, tail = task_message(DELIVER_TASK, task_id, body, b"")
    return head + tail


def park(
    client: redis.Redis, keys: Keys, delay: float, args: list[Any], kwargs: dict[str, Any]
) -> float:
    """Park a delivery for ``delay`` seconds; returns when it is due (epoch seconds)."""
    due = time.time() + delay
    client.zadd(keys.parked, {deliver_message(args, kwargs): due})
    return due


def release_due(client: redis.Redis, keys: Keys, now: float | None = None) -> int:
    """Move every due parked delivery to the queue; returns how many moved."""
    now = time.time() if now is None else now
    moved = 0
    while True:
        batch = int(
            client.eval(RELEASE_SCRIPT, 2, keys.parked, f"{keys.prefix}{QUEUE}", now, RELEASE_BATCH)
        )
        moved += batch
        if batch < RELEASE_BATCH:
            return moved


def parked_count(client: redis.Redis, keys: Keys) -> int:
    return int(client.zcard(keys.parked))
