"""The Redis rate limiter against a real Redis: spacing across threads and processes."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time

import pytest
import redis

from clockify_relay.errors import TransientError
from clockify_relay.ratelimit import RateLimiter
from clockify_relay.redis_conn import Keys


def _max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """The most timestamps inside any half-open window of ``window`` seconds."""
    stamps = sorted(stamps)
    best = 0
    start = 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _redis_now(client: redis.Redis) -> float:
    sec, usec = client.time()
    return float(sec) + usec / 1_000_000


# Slots are exact; measured times after the sleep carry scheduling jitter of a few ms, which is
# why the connector pads its interval. Measured times are checked against a window shortened by
# this much, slot times against the full second.
JITTER = 0.02


def _worker(url: str, key: str, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    client = redis.Redis.from_url(url)
    limiter = RateLimiter(client, key, 4)
    slots: list[float] = []
    stamps: list[float] = []
    deadline = _redis_now(client) + seconds
    while _redis_now(client) < deadline:
        slot = limiter.reserve()
        time.sleep(slot.wait)
        slots.append(slot.at)
        # The Redis clock, the one the limiter schedules with, so processes compare fairly.
        stamps.append(_redis_now(client))
    out.put((slots, stamps))
    client.close()


def test_max_in_window_helper_counts_sliding_windows() -> None:
    assert _max_in_window([0.0, 0.9, 1.0, 1.05, 1.1, 1.2]) == 5
    assert _max_in_window([0.0, 0.25, 0.5, 0.75, 1.0]) == 4


def test_threads_never_exceed_four_in_any_second(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, Keys(key_prefix).ratelimit("threads"), 4)
    stamps: list[float] = []
    slots: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 3.0

    def run() -> None:
        while time.monotonic() < deadline:
            slot = limiter.reserve()
            time.sleep(slot.wait)
            now = _redis_now(client)
            with lock:
                slots.append(slot.at)
                stamps.append(now)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    span = max(stamps) - min(stamps)
    assert _max_in_window(slots) <= 4
    assert _max_in_window(stamps, 1.0 - JITTER) <= 4
    # Slots are exactly one interval apart.
    ordered = sorted(slots)
    assert min(b - a for a, b in itertools.pairwise(ordered)) >= 0.25 - 1e-6
    # Near the full rate: (n - 1) intervals in the span.
    assert (len(stamps) - 1) / span >= 3.8


def test_processes_share_one_schedule(redis_url: str, key_prefix: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    key = Keys(key_prefix).ratelimit("procs")
    procs = [ctx.Process(target=_worker, args=(redis_url, key, 3.0, out)) for _ in range(4)]
    for p in procs:
        p.start()
    stamps: list[float] = []
    slots: list[float] = []
    for _ in procs:
        got_slots, got_stamps = out.get(timeout=30)
        slots.extend(got_slots)
        stamps.extend(got_stamps)
    for p in procs:
        p.join(timeout=30)
    assert len(stamps) >= 10
    assert _max_in_window(slots) <= 4
    assert _max_in_window(stamps, 1.0 - JITTER) <= 4
    span = max(stamps) - min(stamps)
    assert (len(stamps) - 1) / span >= 3.8


def test_first_call_does_not_wait_and_second_waits_an_interval(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    limiter = RateLimiter(redis_client, Keys(key_prefix).ratelimit("one"), 4)
    assert limiter.reserve().wait == 0.0
    wait = limiter.reserve().wait
    assert 0.2 <= wait <= 0.25
    # The key holds only a time, never anything secret, and expires when idle.
    assert 0 < redis_client.pttl(limiter.key) <= 2000


def test_hold_off_pushes_the_next_slot_out(redis_client: redis.Redis, key_prefix: str) -> None:
    limiter = RateLimiter(redis_client, Keys(key_prefix).ratelimit("hold"), 4)
    limiter.acquire()
    limiter.hold_off(2.0)
    wait = limiter.reserve().wait
    assert 1.9 <= wait <= 2.0
    # A shorter hold-off never pulls the schedule back in.
    limiter.hold_off(0.5)
    assert limiter.reserve().wait >= 2.0


def test_max_wait_refuses_without_reserving(redis_client: redis.Redis, key_prefix: str) -> None:
    key = Keys(key_prefix).ratelimit("maxwait")
    limiter = RateLimiter(redis_client, key, 4, max_wait=1.0)
    limiter.hold_off(5.0)
    with pytest.raises(TransientError) as info:
        limiter.reserve()
    assert info.value.retry_after is not None and 4.5 <= info.value.retry_after <= 5.0
    before = redis_client.get(key)
    with pytest.raises(TransientError):
        limiter.reserve()
    assert redis_client.get(key) == before


def test_padding_widens_the_interval(redis_client: redis.Redis, key_prefix: str) -> None:
    limiter = RateLimiter(redis_client, Keys(key_prefix).ratelimit("pad"), 4, padding=0.05)
    limiter.reserve()
    assert 0.25 < limiter.reserve().wait <= 0.3


@pytest.mark.parametrize("rate", [0, -1])
def test_rejects_non_positive_rate(redis_client: redis.Redis, rate: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(redis_client, "x", rate)


def test_redis_down_is_transient() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    limiter = RateLimiter(client, "relaytest:down", 4)
    with pytest.raises(TransientError):
        limiter.acquire()
