"""Blikk access tokens, shared through Redis by every worker process.

Blikk issues bearer tokens from ``POST /v1/Auth/Token`` (Basic app id:secret) with an
``expires`` time, and rate-limits *per token*. Sharing one cached token across all workers keeps
token requests rare (they count against the limit too) and keeps every worker on the same rate
budget. The cached value is the token itself: acceptable because Redis is the trust boundary of
the relay, but the token is never logged and never part of a key name or an error message.

Refresh happens ``token_refresh_margin`` seconds before expiry (at most half the token's
lifetime, so short-lived tokens are not refreshed on every call), and on a 401 by
:meth:`TokenCache.invalidate` followed by a fresh fetch. A short Redis lock keeps a crowd of
workers from all fetching a new token at the same moment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis

from clockify_relay.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

# Deletes the cached token only if it is still the one that was refused, so a worker that saw a
# 401 does not throw away a fresh token another worker just stored.
_DELETE_IF_SAME = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['token'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_LOCK_MS = 10_000
_LOCK_POLL = 0.05
_LOCK_WAIT = 3.0


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it expires (epoch seconds, by this host's clock)."""

    token: str
    expires_at: float

    def __repr__(self) -> str:
        return f"AccessToken(token='***', expires_at={self.expires_at})"


def _redis_down(exc: Exception) -> TransientError:
    return TransientError(f"Blikk token cache: Redis unavailable ({type(exc).__name__})")


def _parse_blikk_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S %z")


def _parse_iso_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def parse_expires(value: object) -> float:
    """Epoch seconds of Blikk's ``expires`` (``2022-07-01 05:43:12 +00:00``, or ISO 8601)."""
    if not isinstance(value, str):
        raise PermanentError("Blikk token response has no 'expires'")
    for parse in (_parse_blikk_time, _parse_iso_time):
        try:
            parsed = parse(value.strip())
        except ValueError:
            continue
        if parsed.tzinfo is not None:
            return parsed.timestamp()
    raise PermanentError(f"Blikk token response has an unreadable 'expires': {value[:40]!r}")


def scope_of(app_id: str) -> str:
    """A stable, non-reversible name for one Blikk app, for Redis key names."""
    return "blikk:" + hashlib.sha256(app_id.encode()).hexdigest()[:16]


class TokenCache:
    """The current access token of one Blikk app, cached in Redis for all workers."""

    def __init__(
        self,
        redis_client: redis.Redis,
        key: str,
        fetch: Callable[[], AccessToken],
        *,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis_client
        self.key = key
        self.lock_key = key + ":lock"
        self.fetch = fetch
        self.refresh_margin = refresh_margin
        self.clock = clock
        self._delete_if_same = redis_client.register_script(_DELETE_IF_SAME)

    def _fresh_enough(self, token: AccessToken, lifetime: float | None = None) -> bool:
        remaining = token.expires_at - self.clock()
        margin = self.refresh_margin
        if lifetime is not None:
            margin = min(margin, lifetime / 2)
        return remaining > margin

    def _read(self) -> AccessToken | None:
        try:
            raw = self.redis.get(self.key)
        except redis.RedisError as exc:
            raise _redis_down(exc) from None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            token = AccessToken(str(data["token"]), float(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None
        # The stored lifetime lets short-lived tokens keep a proportionate margin.
        lifetime = float(data.get("lifetime", 0)) or None
        return token if self._fresh_enough(token, lifetime) else None

    def _store(self, token: AccessToken) -> None:
        lifetime = token.expires_at - self.clock()
        margin = min(self.refresh_margin, lifetime / 2)
        ttl_ms = int((lifetime - margin) * 1000)
        if ttl_ms <= 0:
            return
        value = json.dumps(
            {"token": token.token, "expires_at": token.expires_at, "lifetime": lifetime}
        )
        try:
            self.redis.set(self.key, value, px=ttl_ms)
        except redis.RedisError as exc:
            raise _redis_down(exc) from None

    def get(self) -> AccessToken:
        """A token that is valid for a while yet: the cached one, else a freshly fetched one."""
        cached = self._read()
        if cached is not None:
            return cached
        try:
            locked = bool(self.redis.set(self.lock_key, "1", nx=True, px=_LOCK_MS))
        except redis.RedisError as exc:
            raise _redis_down(exc) from None
        if not locked:
            # Another worker is fetching: wait for its token rather than asking Blikk again.
            deadline = self.clock() + _LOCK_WAIT
            while self.clock() < deadline:
                time.sleep(_LOCK_POLL)
                cached = self._read()
                if cached is not None:
                    return cached
        try:
            token = self.fetch()
            self._store(token)
            log.info("blikk: new access token, valid for %.0f s", token.expires_at - self.clock())
            return token
        finally:
            if locked:
                self.redis.delete(self.lock_key)

    def invalidate(self, token: AccessToken) -> None:
        """Forget ``token`` (after a 401) unless another worker already replaced it."""
        try:
            self._delete_if_same(keys=[self.key], args=[token.token])
        except redis.RedisError as exc:
            raise _redis_down(exc) from None
