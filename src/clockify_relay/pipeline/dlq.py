"""The dead-letter queue: deliveries that failed for good, kept in Redis until replayed or purged.

A record holds the target, the event envelope, the error class and message, the attempts and the
first and last failure time. Records live in one hash (id → JSON) with a sorted-set index by last
failure, so listing by time is cheap. A record's id is derived from (target, event id), so the
same delivery failing again (a failed replay) updates its record instead of adding another: its
error becomes the latest, and the failure joins the history, which always keeps the first one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import redis

from clockify_relay.errors import RelayError
from clockify_relay.pipeline.messages import Envelope, encode
from clockify_relay.redis_conn import Keys

# Failures kept per letter: the first (the original error) always, then the latest ones.
HISTORY_KEPT = 50
# The target of dead letters for events that could not even be routed (replay routes them).
ROUTE_TARGET = "route"


def dlq_id(target: str, event_id: str) -> str:
    """The stable id of the dead letter for one (target, event)."""
    return hashlib.blake2b(f"{target}:{event_id}".encode(), digest_size=8).hexdigest()


@dataclass
class DeadLetter:
    """One delivery that needs an operator."""

    id: str
    target: str
    envelope: Envelope
    error_kind: str
    error: str
    attempts: int
    first_failure: float
    last_failure: float
    status: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def event_id(self) -> str:
        return str(self.envelope["event_id"])

    @property
    def event_type(self) -> str:
        return str(self.envelope["event_type"])

    @property
    def entity_id(self) -> str:
        return str(self.envelope["entity_id"])

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(event_id=self.event_id, event_type=self.event_type, entity_id=self.entity_id)
        return data


class DeadLetterQueue:
    """Add, read, filter and remove dead letters."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def add(self, target: str, envelope: Envelope, exc: RelayError, attempts: int) -> DeadLetter:
        """Record a failed delivery (or one more failure of a known one)."""
        now = time.time()
        letter_id = dlq_id(target, str(envelope["event_id"]))
        existing = self.get(letter_id)
        failure = {"at": now, "kind": exc.kind, "error": exc.message, "status": exc.status}
        if existing:
            letter = existing
            letter.error_kind, letter.error, letter.status = exc.kind, exc.message, exc.status
            letter.attempts += attempts
            letter.last_failure = now
            first, *later = letter.history or [failure]
            letter.history = [first, *[*later, failure][-(HISTORY_KEPT - 1) :]]
        else:
            letter = DeadLetter(
                id=letter_id,
                target=target,
                envelope=envelope,
                error_kind=exc.kind,
                error=exc.message,
                attempts=attempts,
                first_failure=now,
                last_failure=now,
                status=exc.status,
                history=[failure],
            )
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.dlq, letter_id, encode(letter.to_json()))
        pipe.zadd(self.keys.dlq_index, {letter_id: now})
        pipe.execute()
        return letter

    def get(self, letter_id: str) -> DeadLetter | None:
        raw = self.client.hget(self.keys.dlq, letter_id)
        return _decode(raw) if raw else None

    def list(
        self,
        *,
        target: str | None = None,
        event_type: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[DeadLetter]:
        """Dead letters, oldest last failure first, filtered."""
        ids: list[bytes] = self.client.zrangebyscore(  # type: ignore[assignment]
            self.keys.dlq_index,
            since if since is not None else "-inf",
            until if until is not None else "+inf",
        )
        if not ids:
            return []
        letters = (_decode(raw) for raw in self.client.hmget(self.keys.dlq, ids) if raw is not None)
        return [
            letter
            for letter in letters
            if (target is None or letter.target == target)
            and (event_type is None or letter.event_type == event_type)
        ]

    def remove(self, letter_ids: Iterable[str]) -> int:
        """Delete dead letters; returns how many existed."""
        ids = list(letter_ids)
        if not ids:
            return 0
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.keys.dlq, *ids)
        pipe.zrem(self.keys.dlq_index, *ids)
        removed, _ = pipe.execute()
        return int(removed)

    def count(self) -> int:
        return int(self.client.hlen(self.keys.dlq))


def _decode(raw: bytes | str) -> DeadLetter:
    data = orjson.loads(raw)
    for derived in ("event_id", "event_type", "entity_id"):
        data.pop(derived, None)
    return DeadLetter(**data)
