"""Redis connections and the key layout. Every key lives under one prefix (default ``relay:``)
so tests and tenants can share a Redis server."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

from clockify_relay.pipeline.messages import QUEUE
from clockify_relay.settings import Settings

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Keys:
    """Names of every Redis key the relay writes, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def sequence(self, workspace_id: str, entity_id: str) -> str:
        """Per-entry arrival counter (INCR)."""
        return f"{self.prefix}seq:{workspace_id}:{entity_id}"

    def dedup(self, workspace_id: str, event_type: str, entity_id: str) -> str:
        """Digest + event id of the last accepted body of this entry and event type."""
        return f"{self.prefix}dedup:{workspace_id}:{event_type}:{entity_id}"

    def trace(self, event_id: str) -> str:
        """List of trace records of one event (JSON each)."""
        return f"{self.prefix}trace:{event_id}"

    def event(self, event_id: str) -> str:
        """The stored envelope of one event (for ``events show`` and replays)."""
        return f"{self.prefix}event:{event_id}"

    def entry_state(self, target: str, entry_id: str) -> str:
        """Hash: ID map, last applied sequence, tombstone, pending create, booked owner."""
        return f"{self.prefix}state:{target}:{entry_id}"

    def owner_days(self, target: str, owner: str) -> str:
        """Sorted set: the owner's entries booked on the target, scored by the local day of the
        booking (``date.toordinal()``); approvals find their worklogs through it."""
        return f"{self.prefix}days:{target}:{owner}"

    def approval(self, target: str, request_id: str) -> str:
        """Hash: one approval request's last applied state on the target (owner, days, state,
        note, ``updatedAt``) and, per worklog, the state already set (``wl:<id>``) or denied."""
        return f"{self.prefix}approval:{target}:{request_id}"

    def owner_approvals(self, target: str, owner: str) -> str:
        """Set: the approval request ids seen for an owner (late worklogs look them up)."""
        return f"{self.prefix}approvals:{target}:{owner}"

    def mail_sent(self, event_key: str) -> str:
        """Hash: per mail rule, whether this event's mail is being sent or was sent."""
        return f"{self.prefix}mail:{event_key}"

    @property
    def ops_mail_mark(self) -> str:
        """String: the last-failure time the ops mail has covered dead letters up to."""
        return f"{self.prefix}opsmail:mark"

    @property
    def ops_mail_check(self) -> str:
        """String with a TTL of the ops mail's interval: a check was made in this interval."""
        return f"{self.prefix}opsmail:check"

    def lock(self, target: str, entry_id: str) -> str:
        return f"{self.prefix}lock:{target}:{entry_id}"

    @property
    def dlq(self) -> str:
        """Hash: dead-letter id → JSON record."""
        return f"{self.prefix}dlq"

    @property
    def dlq_index(self) -> str:
        """Sorted set: dead-letter id by last failure time."""
        return f"{self.prefix}dlq:index"

    @property
    def parked(self) -> str:
        """Sorted set of outbox message ids waiting longer than a Celery countdown may
        (score = when due); the messages themselves are in the outbox."""
        return f"{self.prefix}parked"

    @property
    def queue(self) -> str:
        """The Celery queue (a Redis list; kombu adds the same prefix to its keys)."""
        return f"{self.prefix}{QUEUE}"

    def outbox(self, part: str = "") -> str:
        """The outbox (docs/ARCHITECTURE.md, "Nothing lost"): ``outbox`` hash of message id →
        message; ``outbox:waiting`` (id → queue number), ``outbox:received`` (id → when a worker
        received it), ``outbox:resends``, ``outbox:counter``, ``outbox:mark``."""
        return f"{self.prefix}outbox{':' + part if part else ''}"

    @property
    def paused(self) -> str:
        """Hash: target → JSON of its pause (by an operator, or by the circuit breaker)."""
        return f"{self.prefix}paused"

    def held(self, target: str) -> str:
        """Sorted set: outbox ids of a paused target's deliveries, in the order they were held."""
        return f"{self.prefix}held:{target}"

    @property
    def held_counter(self) -> str:
        """The order numbers of held deliveries (not the outbox's queue counter)."""
        return f"{self.prefix}held:counter"

    def failures(self, target: str) -> str:
        """Consecutive transient failures of a target (the circuit breaker counts them)."""
        return f"{self.prefix}failures:{target}"

    def replay(self, letter_id: str) -> str:
        """JSON: the state of the last replay of a dead letter (queued, delivered, failed…)."""
        return f"{self.prefix}replay:{letter_id}"

    @property
    def events(self) -> str:
        """Sorted set: event ids by the time they were routed (``events list``)."""
        return f"{self.prefix}events"

    def routed(self, event_id: str) -> str:
        """Set once when an event has been fanned out, so a second route does nothing."""
        return f"{self.prefix}routed:{event_id}"

    def ratelimit(self, scope: str) -> str:
        return f"{self.prefix}ratelimit:{scope}"

    def cache(self, name: str) -> str:
        return f"{self.prefix}cache:{name}"


def redis_url(settings: Settings) -> str:
    return settings.redis_url or DEFAULT_REDIS_URL


def sync_client(settings: Settings) -> redis.Redis:
    """A blocking client for workers and the CLI."""
    return redis.Redis.from_url(
        redis_url(settings),
        socket_connect_timeout=settings.redis_timeout,
        socket_timeout=max(settings.redis_timeout, 5.0),
        health_check_interval=30,
    )


def async_client(settings: Settings) -> aioredis.Redis:
    """A non-blocking client for the receiver; every call fails within ``redis_timeout``."""
    return aioredis.Redis.from_url(
        redis_url(settings),
        socket_connect_timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
        max_connections=200,
    )
