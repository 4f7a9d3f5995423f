"""Retry delays: full jitter under an exponential cap; Retry-After wins."""

from __future__ import annotations

from clockify_relay.pipeline.retry import backoff_delay
from clockify_relay.settings import RetryPolicy


def test_full_jitter_stays_under_the_exponential_cap() -> None:
    policy = RetryPolicy(base_delay=2.0, max_delay=60.0)
    for attempt, cap in ((1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)):
        delays = [backoff_delay(policy, attempt, None) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # jittered across the range, not a constant


def test_retry_after_is_honoured_exactly_up_to_the_max() -> None:
    policy = RetryPolicy(base_delay=2.0, max_delay=60.0)
    assert backoff_delay(policy, 1, 7.5) == 7.5
    assert backoff_delay(policy, 1, 0.0) == 0.0
    assert backoff_delay(policy, 1, 3600.0) == 60.0
