"""Webhook tokens the relay learnt from Clockify (``webhooks register`` / ``rotate``), kept in
Redis as SHA-256 digests, never as the tokens themselves.

Layout (under the key prefix):

* ``webhook:tokens`` -- hash, field ``<EVENT_TYPE>|<sha256 hex of the token>``, value the Unix
  time the token stops being accepted, ``0`` for never. A rotation gives the previous tokens of
  that event type an expiry ``grace`` seconds ahead; expired fields are dropped by the next
  write and ignored by readers until then;
* ``webhook:hooks`` -- hash, event type → JSON ``{"id", "url", "name"}`` of the Clockify webhook
  the relay registered for it (``rotate`` and ``list`` start from it).

The receiver reads the digests with :class:`TokenCache` (asyncio client, a short cache, so a
rotation is picked up within seconds and without a restart); ``CLOCKIFY_WEBHOOK_TOKENS`` keeps
working and wins for the event types it names (clockify/verify.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

DEFAULT_GRACE_SECONDS = 300.0
CACHE_SECONDS = 2.0
# A token the cache refuses makes it read again when older than this: a token stored a moment
# ago (register, rotate) is accepted at once, and refused callers cannot make the receiver read
# Redis more often than this.
REFRESH_ON_MISS_SECONDS = 0.25

# KEYS: tokens hash.  ARGV: event type, new field, now, expiry of the others (now + grace).
# Older tokens of the event type that would outlive the grace get it; expired fields go.
_ROTATE = """
local fields = redis.call('HGETALL', KEYS[1])
local prefix = ARGV[1] .. '|'
local now, until_ = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, #fields, 2 do
  local field, expires = fields[i], tonumber(fields[i + 1])
  if expires ~= 0 and expires <= now then
    redis.call('HDEL', KEYS[1], field)
  elseif string.sub(field, 1, #prefix) == prefix and field ~= ARGV[2]
      and (expires == 0 or expires > until_) then
    redis.call('HSET', KEYS[1], field, ARGV[4])
  end
end
redis.call('HSET', KEYS[1], ARGV[2], '0')
return 1
"""


def token_digest(token: str) -> str:
    """SHA-256 hex of a token, as stored (the receiver hashes what it is presented alike)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class StoredToken:
    event_type: str
    digest: str  # hex
    expires: float  # 0: never

    def live(self, now: float) -> bool:
        return self.expires == 0 or self.expires > now


def _parse(raw: Mapping[Any, Any]) -> list[StoredToken]:
    stored: list[StoredToken] = []
    for field, value in raw.items():
        text = field.decode() if isinstance(field, bytes) else str(field)
        event_type, sep, digest = text.partition("|")
        try:
            expires = float(value)
        except (TypeError, ValueError):
            continue
        if sep and len(digest) == 64:
            stored.append(StoredToken(event_type, digest, expires))
    return stored


class TokenStore:
    """The blocking side: the CLI writes and reads token digests and registered webhooks."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.tokens_key = f"{prefix}webhook:tokens"
        self.hooks_key = f"{prefix}webhook:hooks"

    def add(self, event_type: str, token: str) -> None:
        """Accept ``token`` for ``event_type`` from now on (other tokens stay as they are)."""
        self.client.hset(self.tokens_key, f"{event_type}|{token_digest(token)}", "0")

    def rotate(self, event_type: str, token: str, grace: float, now: float | None = None) -> None:
        """Accept ``token`` for ``event_type``; the type's other tokens only ``grace`` more
        seconds. One atomic script."""
        moment = time.time() if now is None else now
        self.client.eval(
            _ROTATE,
            1,
            self.tokens_key,
            event_type,
            f"{event_type}|{token_digest(token)}",
            repr(moment),
            repr(moment + grace),
        )

    def tokens(self, now: float | None = None) -> list[StoredToken]:
        """The tokens accepted now."""
        moment = time.time() if now is None else now
        return [t for t in _parse(self.client.hgetall(self.tokens_key)) if t.live(moment)]

    def knows(self, event_type: str, token: str) -> bool:
        digest = token_digest(token)
        return any(t.event_type == event_type and t.digest == digest for t in self.tokens())

    def remember_webhook(self, event_type: str, webhook: Mapping[str, Any]) -> None:
        record = {k: webhook.get(k) for k in ("id", "url", "name")}
        self.client.hset(self.hooks_key, event_type, orjson.dumps(record))

    def forget_webhook(self, event_type: str) -> None:
        self.client.hdel(self.hooks_key, event_type)

    def webhooks(self) -> dict[str, dict[str, Any]]:
        """Event type → the webhook the relay registered for it."""
        raw: Mapping[Any, Any] = self.client.hgetall(self.hooks_key)
        return {
            (k.decode() if isinstance(k, bytes) else str(k)): orjson.loads(v)
            for k, v in raw.items()
        }


class TokenCache:
    """The receiver's side: the live digests, re-read from Redis at most every ``ttl`` seconds.

    Raises what the Redis client raises (the receiver answers 503: it cannot tell a good token
    from a bad one without them). Concurrent requests share one read.
    """

    def __init__(self, client: aioredis.Redis, prefix: str, ttl: float = CACHE_SECONDS) -> None:
        self.client = client
        self.key = f"{prefix}webhook:tokens"
        self.ttl = ttl
        self._stored: list[StoredToken] = []
        self._read_at = float("-inf")
        self._lock: asyncio.Lock | None = None

    @property
    def age(self) -> float:
        """Seconds since the digests were read."""
        return time.monotonic() - self._read_at

    async def tokens(self, max_age: float | None = None) -> tuple[tuple[bytes, str], ...]:
        """``(sha256 digest, event type)`` of every token accepted now, read again when older
        than ``max_age`` (default the cache's ``ttl``)."""
        limit = self.ttl if max_age is None else max_age
        if self.age >= limit:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self.age >= limit:
                    raw = await self.client.hgetall(self.key)  # type: ignore[misc]
                    self._stored = _parse(raw)
                    self._read_at = time.monotonic()
        wall = time.time()
        return tuple((bytes.fromhex(t.digest), t.event_type) for t in self._stored if t.live(wall))
