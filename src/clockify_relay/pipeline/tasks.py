"""Celery tasks: ``route`` fans each event out, ``deliver`` runs one target with retries and the
dead-letter queue, ``release_parked`` moves due long waits back to the queue.

Every failure path of ``deliver`` ends in a scheduled retry or a dead letter, never in a bare
raise: Celery acks a message whose task raised, even with ``acks_late``, and it would be lost.
If even scheduling the retry fails (Redis gone), the message is rejected with requeue.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task
from celery.exceptions import Reject

from clockify_relay.clockify.models import TIME_ENTRY_EVENTS
from clockify_relay.errors import RelayError, TransientError
from clockify_relay.pipeline import parking, trace
from clockify_relay.pipeline.celery_app import app
from clockify_relay.pipeline.dlq import DeadLetter
from clockify_relay.pipeline.engine import Outcome
from clockify_relay.pipeline.messages import DELIVER_TASK, RELEASE_TASK, ROUTE_TASK
from clockify_relay.pipeline.runtime import Runtime, runtime
from clockify_relay.settings import RetryPolicy

log = logging.getLogger("clockify_relay.pipeline")


@app.task(name=ROUTE_TASK)
def route(envelope: dict[str, Any]) -> None:
    """Record the event and start one independent delivery per enabled target."""
    rt = runtime()
    ttl = rt.settings.trace_ttl
    event_id = envelope["event_id"]
    try:
        trace.store_envelope(rt.redis, rt.keys, envelope, ttl)
        targets = rt.enabled_targets() if envelope["event_type"] in TIME_ENTRY_EVENTS else []
        for target in targets:
            deliver.apply_async(args=(target, envelope))
        trace.record(
            rt.redis,
            rt.keys,
            event_id,
            ttl,
            stage="route",
            outcome="received",
            event_type=envelope["event_type"],
            sequence=envelope["sequence"],
            targets=targets or None,
            reason=None if targets else "no enabled target handles this event type",
        )
    except Exception as exc:  # Redis gone mid-fan-out: put the message back, deliveries dedupe
        log.warning("route of %s failed (%s); requeued", event_id, type(exc).__name__)
        raise Reject(type(exc).__name__, requeue=True) from None


def backoff_delay(policy: RetryPolicy, attempt: int, retry_after: float | None) -> float:
    """Full-jitter exponential backoff; a target's Retry-After wins when it is given."""
    if retry_after is not None:
        return min(policy.max_delay, retry_after)
    cap = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return random.uniform(0, cap)


def trace_delivery(rt: Runtime, envelope: dict[str, Any], target: str, **fields: Any) -> None:
    """Record one step of a delivery in the event's trace."""
    trace.record(
        rt.redis,
        rt.keys,
        envelope["event_id"],
        rt.settings.trace_ttl,
        stage="deliver",
        target=target,
        **fields,
    )


def run_delivery(
    rt: Runtime, target: str, envelope: dict[str, Any], attempt: int = 1, force: bool = False
) -> Outcome:
    """Deliver once and trace it; raises the relay error on failure (traced too)."""
    try:
        outcome = rt.delivery(target).deliver(envelope, force=force)
    except RelayError as exc:
        trace_delivery(
            rt,
            envelope,
            target,
            attempt=attempt,
            outcome="failed",
            error_kind=exc.kind,
            error=exc.message,
            status=exc.status,
            response=exc.response_excerpt,
        )
        raise
    trace_delivery(
        rt,
        envelope,
        target,
        attempt=attempt,
        outcome=outcome.action,
        reason=outcome.reason,
        operations=outcome.operations or None,
        remote_ids=outcome.remote_ids or None,
    )
    return outcome


def schedule_retry(
    rt: Runtime, target: str, envelope: dict[str, Any], attempt: int, force: bool, delay: float
) -> str:
    """Run the delivery again after ``delay``: a Celery countdown when short, else parked."""
    kwargs = {"attempt": attempt + 1, "force": force}
    if delay <= rt.settings.retry.max_countdown:
        deliver.apply_async(args=(target, envelope), kwargs=kwargs, countdown=delay)
        return "retry"
    parking.park(rt.redis, rt.keys, delay, [target, envelope], kwargs)
    return "parked"


def dead_letter(
    rt: Runtime, target: str, envelope: dict[str, Any], exc: RelayError, attempts: int
) -> None:
    """Put a delivery in the dead-letter queue and say so in the trace."""
    rt.dlq.add(target, envelope, exc, attempts)
    trace_delivery(
        rt,
        envelope,
        target,
        outcome="dead-lettered",
        reason=exc.message,
    )


@app.task(name=DELIVER_TASK, bind=True)
def deliver(
    self: Task[Any, Any],
    target: str,
    envelope: dict[str, Any],
    attempt: int = 1,
    force: bool = False,
) -> None:
    """Deliver one event to one target; retry transient failures, dead-letter the rest."""
    rt = runtime()
    policy = rt.settings.retry
    event_id = envelope["event_id"]
    try:
        try:
            run_delivery(rt, target, envelope, attempt, force)
        except TransientError as exc:
            if attempt >= policy.max_attempts:
                message = f"retries exhausted after {attempt} attempts: {exc.message}"
                dead_letter(
                    rt, target, envelope, TransientError(message, status=exc.status), attempt
                )
                return
            delay = backoff_delay(policy, attempt, exc.retry_after)
            how = schedule_retry(rt, target, envelope, attempt, force, delay)
            trace_delivery(
                rt,
                envelope,
                target,
                outcome=how,
                delay=round(delay, 3),
            )
        except RelayError as exc:  # permanent, unknown outcome, configuration
            dead_letter(rt, target, envelope, exc, attempt)
        except Exception as exc:  # a bug or Redis trouble: retry like a transient failure
            log.exception("delivery of %s to %s failed unexpectedly", event_id, target)
            if attempt >= policy.max_attempts:
                unexpected = RelayError(f"unexpected {type(exc).__name__} (see worker log)")
                dead_letter(rt, target, envelope, unexpected, attempt)
                return
            schedule_retry(
                rt, target, envelope, attempt, force, backoff_delay(policy, attempt, None)
            )
    except Reject:
        raise
    except Exception as exc:  # even the retry could not be scheduled: requeue this message
        log.warning("could not schedule retry of %s (%s); requeued", event_id, type(exc).__name__)
        raise Reject(type(exc).__name__, requeue=True) from None


@app.task(name=RELEASE_TASK)
def release_parked() -> int:
    """Move due parked deliveries to the queue (run by the scheduler every few seconds)."""
    rt = runtime()
    return parking.release_due(rt.redis, rt.keys)


def replay(rt: Runtime, letter: DeadLetter, force: bool = False) -> tuple[bool, str]:
    """Re-run a dead letter's delivery now, in this process, bypassing ingest dedup.

    The dead letter is removed only when the delivery succeeds; a failure stays, with the new
    attempt recorded. Returns (succeeded, what happened).
    """
    try:
        outcome = run_delivery(rt, letter.target, letter.envelope, letter.attempts + 1, force)
    except RelayError as exc:
        rt.dlq.add(letter.target, letter.envelope, exc, 1)
        return False, f"{exc.kind}: {exc.message}"
    rt.dlq.remove([letter.id])
    return True, f"{outcome.action}: {outcome.reason}"
