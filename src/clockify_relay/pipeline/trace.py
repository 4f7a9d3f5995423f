"""The event trace: what happened to each event, per target and attempt, kept for a while.

Records are JSON objects appended to a Redis list per event (``trace:<event id>``) with the
trace TTL; the envelope itself is kept beside it (``event:<event id>``) for ``events show``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

from clockify_relay.pipeline.messages import Envelope, encode
from clockify_relay.redis_conn import Keys


def record(client: redis.Redis, keys: Keys, event_id: str, ttl: int, **fields: Any) -> None:
    """Append one record (``stage``, ``outcome`` and details) to the event's trace."""
    entry = {"at": time.time(), **{k: v for k, v in fields.items() if v is not None}}
    key = keys.trace(event_id)
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, encode(entry))
    pipe.expire(key, ttl)
    pipe.execute()


def index_event(client: redis.Redis, keys: Keys, event_id: str, ttl: int) -> None:
    """List the event by the time it was routed (``events list``); older ones than the trace
    TTL leave the index as new ones arrive."""
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.zadd(keys.events, {event_id: now})
    pipe.zremrangebyscore(keys.events, "-inf", now - ttl)
    pipe.execute()


def store_envelope(client: redis.Redis, keys: Keys, envelope: Envelope, ttl: int) -> None:
    """Keep the envelope so the trace can show what came in."""
    client.set(keys.event(str(envelope["event_id"])), encode(envelope), ex=ttl)


def read(
    client: redis.Redis, keys: Keys, event_id: str
) -> tuple[Envelope | None, list[dict[str, Any]]]:
    """The stored envelope (or None once expired) and the trace records of one event."""
    raw_envelope = client.get(keys.event(event_id))
    envelope: Envelope | None = orjson.loads(raw_envelope) if raw_envelope else None
    records = [orjson.loads(item) for item in client.lrange(keys.trace(event_id), 0, -1)]
    return envelope, records
