"""What a failed delivery leads to: one pure function, :func:`next_step`.

Rules (docs/ARCHITECTURE.md §3, "No poison loops"):

1. A permanent error, an unknown outcome or a configuration error is dead-lettered at once.
2. A transient error is retried after full-jitter exponential backoff; the target's
   Retry-After wins when it gave one.
3. Any other exception (a bug) is retried like a transient error, so it is counted.
4. At the attempt limit, a retryable failure is dead-lettered as "retries exhausted".
5. A wait up to ``max_countdown`` is a Celery countdown; a longer one is parked in Redis (a
   long countdown would outlive the visibility timeout).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from clockify_relay.errors import RelayError, TransientError
from clockify_relay.settings import RetryPolicy


@dataclass(frozen=True)
class Retry:
    """Run the delivery again after ``delay`` seconds, as a Celery countdown."""

    delay: float


@dataclass(frozen=True)
class Park:
    """Run the delivery again after ``delay`` seconds, parked in Redis until then."""

    delay: float


@dataclass(frozen=True)
class DeadLetter:
    """Give up: put the delivery in the dead-letter queue with this error."""

    error: RelayError


Step = Retry | Park | DeadLetter


def backoff_delay(
    policy: RetryPolicy,
    attempt: int,
    retry_after: float | None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Full-jitter exponential backoff; a target's Retry-After wins when it is given."""
    if retry_after is not None:
        return min(policy.max_delay, retry_after)
    cap = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return uniform(0, cap)


def next_step(
    error: Exception,
    attempt: int,
    policy: RetryPolicy,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Step:
    """What attempt number ``attempt``, failed with ``error``, leads to."""
    if isinstance(error, TransientError):
        failure: RelayError = error
        retry_after = error.retry_after
    elif isinstance(error, RelayError):
        return DeadLetter(error)  # rule 1
    else:
        failure = RelayError(f"unexpected {type(error).__name__} (see the worker log)")  # rule 3
        retry_after = None
    if attempt >= policy.max_attempts:  # rule 4
        message = f"retries exhausted after {attempt} attempts: {failure.message}"
        return DeadLetter(type(failure)(message, status=failure.status))
    delay = backoff_delay(policy, attempt, retry_after, uniform)  # rule 2
    return Retry(delay) if delay <= policy.max_countdown else Park(delay)  # rule 5
