"""What a failed delivery leads to (pipeline/retry.py), as a table."""

from __future__ import annotations

import pytest

from clockify_relay.errors import (
    ConfigurationError,
    PermanentError,
    RelayError,
    TransientError,
    UnknownOutcomeError,
)
from clockify_relay.pipeline.retry import DeadLetter, Park, Retry, Step, next_step
from clockify_relay.settings import RetryPolicy

POLICY = RetryPolicy(max_attempts=4, base_delay=2.0, max_delay=600.0, max_countdown=60.0)


def highest(low: float, high: float) -> float:
    """The top of the jitter range, so delays in the table are exact."""
    return high


@pytest.mark.parametrize(
    ("error", "attempt", "expected"),
    [
        # Rule 2: transient → backoff (2, 4, 8 s at the top of the jitter) or Retry-After.
        (TransientError("503"), 1, Retry(2.0)),
        (TransientError("503"), 3, Retry(8.0)),
        (TransientError("429", retry_after=30.0), 1, Retry(30.0)),
        # Rule 5: a wait longer than max_countdown is parked, capped at max_delay.
        (TransientError("429", retry_after=90.0), 1, Park(90.0)),
        (TransientError("429", retry_after=7200.0), 2, Park(600.0)),
        # Rule 4: at the attempt limit, a retryable failure is dead-lettered.
        (TransientError("503", status=503), 4, "retries exhausted after 4 attempts: 503"),
        # Rule 1: permanent, unknown outcome and configuration errors at once, any attempt.
        (PermanentError("400 bad"), 1, "400 bad"),
        (UnknownOutcomeError("maybe created"), 1, "maybe created"),
        (ConfigurationError("map user U1"), 1, "map user U1"),
        # Rule 3: a bug is retried like a transient failure, then dead-lettered.
        (KeyError("boom"), 1, Retry(2.0)),
        (KeyError("boom"), 4, "retries exhausted after 4 attempts: unexpected KeyError"),
    ],
)
def test_next_step(error: Exception, attempt: int, expected: Step | str) -> None:
    step = next_step(error, attempt, POLICY, uniform=highest)
    if isinstance(expected, str):
        assert isinstance(step, DeadLetter)
        assert expected in step.error.message
    else:
        assert step == expected


def test_dead_letters_keep_the_error_class_and_status() -> None:
    step = next_step(TransientError("503", status=503), 4, POLICY)
    assert isinstance(step, DeadLetter)
    assert type(step.error) is TransientError
    assert step.error.status == 503
    refused = ConfigurationError("map it")
    assert next_step(refused, 1, POLICY) == DeadLetter(refused)
    bug = next_step(ValueError("x"), 4, POLICY)
    assert isinstance(bug, DeadLetter) and type(bug.error) is RelayError
