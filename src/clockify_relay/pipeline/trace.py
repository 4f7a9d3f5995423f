"""The event trace: what happened to each event, per target and attempt, kept for a while.

Records are JSON objects appended to a Redis list per event (``trace:<event id>``) with the
trace TTL; the envelope itself is kept beside it (``event:<event id>``) for ``events show``.

Every step of an event passes through :func:`record`, so it is also where each step is logged
(one line with ``event_id``, ``entry_id``, ``event_type``, ``target``) and counted
(metrics.py): routed, delivered, skipped, failed, retried, parked, dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis

from clockify_relay import metrics
from clockify_relay.pipeline.messages import Envelope, encode
from clockify_relay.redis_conn import Keys

log = logging.getLogger("clockify_relay.events")

# outcome → (log level, the line's message); others are logged at INFO as "<stage> <outcome>".
_LINES = {
    ("route", "received"): (logging.INFO, "routed"),
    ("deliver", "applied"): (logging.INFO, "delivered"),
    ("deliver", "deleted"): (logging.INFO, "delivered"),
    ("deliver", "skipped"): (logging.INFO, "skipped"),
    ("deliver", "failed"): (logging.INFO, "attempt failed"),
    ("deliver", "retry"): (logging.INFO, "retried"),
    ("deliver", "parked"): (logging.INFO, "parked"),
    ("deliver", "dead-lettered"): (logging.WARNING, "dead-lettered"),
}
# Trace fields that go into the log line too (never a payload, a response body or a secret).
_LOGGED = ("attempt", "reason", "delay", "error_kind", "error", "status", "targets", "seconds")


def record(
    client: redis.Redis,
    keys: Keys,
    event_id: str,
    ttl: int,
    *,
    envelope: Envelope | None = None,
    **fields: Any,
) -> None:
    """Append one record (``stage``, ``outcome`` and details) to the event's trace, log it and
    count it. ``envelope`` (not stored) names the entry and event type in the log line."""
    entry = {"at": time.time(), **{k: v for k, v in fields.items() if v is not None}}
    key = keys.trace(event_id)
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, encode(entry))
    pipe.expire(key, ttl)
    pipe.execute()
    observe(event_id, envelope, entry)


def observe(event_id: str, envelope: Envelope | None, entry: dict[str, Any]) -> None:
    """Log and count one traced step; never fails the step it reports."""
    try:
        stage = str(entry.get("stage", ""))
        outcome = str(entry.get("outcome", ""))
        target = entry.get("target")
        metrics.observe_step(stage, outcome, target, entry)
        level, message = _LINES.get((stage, outcome), (logging.INFO, f"{stage} {outcome}"))
        if outcome == "dead-lettered" and "error" not in entry:
            entry = {**entry, "error": entry.get("reason")}
        extra: dict[str, Any] = {
            "event_id": event_id,
            "entry_id": envelope.get("entity_id") if envelope else None,
            "event_type": entry.get("event_type")
            or (envelope.get("event_type") if envelope else None),
            "target": target,
            "stage": stage,
            "outcome": outcome,
        }
        extra.update((name, entry[name]) for name in _LOGGED if name in entry)
        log.log(level, message, extra=extra)
    except Exception:  # a log or metric problem must not fail a delivery
        log.warning("could not log or count a trace record", exc_info=True)


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
    return read_many(client, keys, [event_id])[0]


def read_many(
    client: redis.Redis, keys: Keys, event_ids: Sequence[str]
) -> list[tuple[Envelope | None, list[dict[str, Any]]]]:
    """:func:`read` for several events, in one round trip (``events list`` reads a page)."""
    pipe = client.pipeline(transaction=False)
    for event_id in event_ids:
        pipe.get(keys.event(event_id))
        pipe.lrange(keys.trace(event_id), 0, -1)
    replies = pipe.execute()
    result: list[tuple[Envelope | None, list[dict[str, Any]]]] = []
    for raw_envelope, items in zip(replies[::2], replies[1::2], strict=True):
        envelope: Envelope | None = orjson.loads(raw_envelope) if raw_envelope else None
        result.append((envelope, [orjson.loads(item) for item in items]))
    return result
