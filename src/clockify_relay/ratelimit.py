"""A rate limiter in Redis shared by every worker process and host.

Targets such as Blikk refuse a fifth request within any second per access token (a *sliding*
window), so a token bucket that allows bursts is not enough: four calls in the last 10 ms of one
second and four in the first 10 ms of the next would be eight within 20 ms. This limiter instead
*spaces* every call made with one key at least ``1 / rate`` seconds apart. With spacing, no
one-second window, however aligned, can hold more than ``rate`` calls.

How it works: one Redis key per limited scope holds the time (microseconds, Redis clock) of the
last reserved slot. A Lua script atomically reserves the next slot ``max(now, last + interval)``
and returns how long the caller must wait for it; the caller sleeps that long. The script reads
the time with Redis ``TIME`` rather than trusting client clocks, so workers on different hosts
agree on the schedule even when their clocks drift.

``hold_off(seconds)`` pushes the schedule out after the remote said "wait n seconds" (a 429), so
every worker backs off, not only the one that was refused.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import redis

from clockify_relay import metrics
from clockify_relay.errors import TransientError

# KEYS[1]: the schedule key. ARGV[1]: interval (µs). ARGV[2]: max wait (µs; -1 = unbounded).
# Returns {reserved (1/0), wait (µs), slot (µs since the epoch, Redis clock)}. When the wait
# would exceed the max, nothing is reserved, so a caller that gives up wastes no slot.
_ACQUIRE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, last + interval)
local wait = slot - now
if max_wait >= 0 and wait > max_wait then
  return {0, string.format('%.0f', wait), string.format('%.0f', slot)}
end
-- Keep the key only as long as it matters (wait + one interval + slack), so idle scopes vanish.
local ttl_ms = math.floor((wait + interval) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', slot), 'PX', ttl_ms)
return {1, string.format('%.0f', wait), string.format('%.0f', slot)}
"""

# KEYS[1]: the schedule key. ARGV[1]: seconds to hold off (µs). ARGV[2]: interval (µs).
# Moves the last slot so that the next one is at least now + hold off; never pulls it earlier.
_HOLD_OFF = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = now + hold - interval
if wanted > last then
  local ttl_ms = math.floor((hold + interval) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', wanted), 'PX', ttl_ms)
  return 1
end
return 0
"""

_MICRO = 1_000_000


class Slot(NamedTuple):
    """A reserved slot: when it is (epoch seconds, Redis clock) and how long until it."""

    at: float
    wait: float


class RateLimiter:
    """Spaces calls made with one ``key`` at least ``1 / rate_per_second`` apart, across every
    process that shares the Redis server.

    ``padding`` adds a few milliseconds to each interval as a cushion for network jitter between
    the slot and the request's arrival at the remote (a request that leaves on time but lands
    late makes the next gap look shorter to the remote's sliding window).
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        key: str,
        rate_per_second: float,
        *,
        padding: float = 0.0,
        max_wait: float | None = None,
        name: str = "other",
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        if padding < 0:
            raise ValueError("padding must not be negative")
        self.redis = redis_client
        self.key = key
        self.rate_per_second = rate_per_second
        self.interval = 1.0 / rate_per_second + padding
        self.max_wait = max_wait
        # The ``target`` label of the wait metric; never the key, which may derive from a secret.
        self.name = name
        self._acquire = redis_client.register_script(_ACQUIRE)
        self._hold_off = redis_client.register_script(_HOLD_OFF)

    def reserve(self) -> Slot:
        """Reserve the next slot without sleeping; return it (``wait`` 0 if it is now).

        Raises :class:`TransientError` (with ``retry_after``) when the wait exceeds ``max_wait``;
        no slot is reserved then.
        """
        max_wait_us = -1 if self.max_wait is None else int(self.max_wait * _MICRO)
        try:
            result: Any = self._acquire(
                keys=[self.key], args=[int(self.interval * _MICRO), max_wait_us]
            )
        except redis.RedisError as exc:
            raise TransientError(
                f"rate limiter: Redis unavailable ({type(exc).__name__})"
            ) from None
        reserved = int(result[0])
        wait = int(float(result[1])) / _MICRO
        if not reserved:
            raise TransientError(
                f"rate limiter: next slot is {wait:.1f}s away (more than {self.max_wait:g}s)",
                retry_after=wait,
            )
        return Slot(at=int(float(result[2])) / _MICRO, wait=wait)

    def acquire(self) -> float:
        """Block until this caller's slot; return the seconds waited (and count it)."""
        wait = self.reserve().wait
        metrics.observe_rate_wait(self.name, wait)
        if wait > 0:
            time.sleep(wait)
        return wait

    def hold_off(self, seconds: float) -> None:
        """Let no call with this key start within ``seconds`` from now (e.g. after a 429)."""
        if seconds <= 0:
            return
        try:
            self._hold_off(
                keys=[self.key],
                args=[int(seconds * _MICRO), int(self.interval * _MICRO)],
            )
        except redis.RedisError as exc:
            raise TransientError(
                f"rate limiter: Redis unavailable ({type(exc).__name__})"
            ) from None
