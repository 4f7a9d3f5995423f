"""Celery tasks: ``route`` fans each event out, ``deliver`` runs one target with retries and the
dead-letter queue.

Rules every task follows (docs/ARCHITECTURE.md, "Nothing lost, nothing doubled"):

1. A task ends by committing to the outbox in one atomic script: its own message is done and
   whatever comes next (the deliveries of an event, the retry of a delivery) is recorded and
   queued. A message is never lost between "done" and "next".
2. Route fans an event out once: a second run of the same event (a message queued again by the
   sweeper, or redelivered by kombu) commits nothing new.
3. Only Redis being unreachable puts a message back without counting (Celery ``Reject`` with
   requeue). Any other failure counts: a delivery by its attempts, then the dead-letter queue;
   a failure of the task machinery itself by the outbox's resend count, then the dead-letter
   queue. A task never raises: Celery would ack the message and it would be lost.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.exceptions import Reject
from celery.signals import task_received
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from clockify_relay.clockify.models import TIME_ENTRY_EVENTS
from clockify_relay.errors import RelayError, TransientError
from clockify_relay.pipeline import trace
from clockify_relay.pipeline.celery_app import app
from clockify_relay.pipeline.dlq import ROUTE_TARGET, DeadLetter
from clockify_relay.pipeline.engine import Outcome
from clockify_relay.pipeline.messages import DELIVER_TASK, ROUTE_TASK, deliver_message
from clockify_relay.pipeline.outbox import Outgoing
from clockify_relay.pipeline.runtime import Runtime, runtime
from clockify_relay.settings import RetryPolicy

log = logging.getLogger("clockify_relay.pipeline")

# Redis unreachable: the one failure that re-queues without counting (rule 3).
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


@task_received.connect
def _mark_received(request: Any = None, **_: Any) -> None:
    """The worker's main process has the message (kombu recorded it as unacked): the outbox
    stops counting it as waiting in the queue."""
    try:
        runtime().outbox.received(str(request.id))
    except Exception as exc:  # the sweeper then queues it again; deliveries are idempotent
        log.warning("could not mark message %s received (%s)", request.id, type(exc).__name__)


def deliveries(
    targets: list[str], envelope: dict[str, Any], attempt: int = 1, force: bool = False
) -> list[Outgoing]:
    """Outbox messages for ``deliver(target, envelope)`` to each target, queued now."""
    outgoing = []
    for target in targets:
        message_id = uuid.uuid4().hex
        kwargs = {"attempt": attempt, "force": force}
        outgoing.append(
            Outgoing(message_id, deliver_message(message_id, [target, envelope], kwargs))
        )
    return outgoing


def run_route(rt: Runtime, envelope: dict[str, Any], message_id: str | None) -> list[str]:
    """Record the event and queue one delivery per enabled target (once per event)."""
    ttl = rt.settings.trace_ttl
    event_id = str(envelope["event_id"])
    targets = rt.enabled_targets() if envelope["event_type"] in TIME_ENTRY_EVENTS else []
    trace.store_envelope(rt.redis, rt.keys, envelope, ttl)
    written = rt.outbox.commit(
        deliveries(targets, envelope), done=message_id, once=(rt.keys.routed(event_id), ttl)
    )
    if written < 0:
        return []  # routed before (rule 2)
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
    return targets


@app.task(name=ROUTE_TASK, bind=True)
def route(self: Task[Any, Any], envelope: dict[str, Any]) -> None:
    """Fan one event out to every enabled target."""
    rt = runtime()
    message_id = str(self.request.id)
    try:
        run_route(rt, envelope, message_id)
    except REDIS_DOWN as exc:
        log.warning("route of %s: Redis unreachable (%s); requeued", message_id, exc)
        raise Reject(type(exc).__name__, requeue=True) from None
    except Exception as exc:
        log.exception("route of event %s failed", envelope.get("event_id"))
        give_up_or_requeue(rt, message_id, ROUTE_TARGET, envelope, exc)


def give_up_or_requeue(
    rt: Runtime, message_id: str, target: str, envelope: dict[str, Any], exc: Exception
) -> None:
    """A task failed outside the delivery's own error handling (rule 3): requeue it a bounded
    number of times, then dead-letter it."""
    try:
        count = rt.outbox.count_resend(message_id)
        if count <= rt.settings.max_resends:
            raise Reject(type(exc).__name__, requeue=True)
        error = RelayError(f"failed {count} times: {type(exc).__name__} (see the worker log)")
        rt.dlq.add(target, envelope, error, count)
        rt.outbox.commit(done=message_id)
    except Reject:
        raise
    except Exception as again:  # Redis gone too: kombu keeps the message; try again later
        log.warning("could not requeue or dead-letter %s (%s)", message_id, type(again).__name__)
        raise Reject(type(again).__name__, requeue=True) from None


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
    rt: Runtime,
    message_id: str,
    target: str,
    envelope: dict[str, Any],
    attempt: int,
    force: bool,
    delay: float,
) -> str:
    """Replace this delivery's message by its next attempt after ``delay``: a Celery countdown
    when short, else parked in Redis (a long countdown would outlive the visibility timeout)."""
    next_id = uuid.uuid4().hex
    args: list[Any] = [target, envelope]
    kwargs = {"attempt": attempt + 1, "force": force}
    if delay <= rt.settings.retry.max_countdown:
        eta = datetime.fromtimestamp(time.time() + delay, UTC)
        outgoing = Outgoing(next_id, deliver_message(next_id, args, kwargs, eta=eta))
        how = "retry"
    else:
        outgoing = Outgoing(next_id, deliver_message(next_id, args, kwargs), time.time() + delay)
        how = "parked"
    rt.outbox.commit([outgoing], done=message_id)
    return how


def dead_letter(
    rt: Runtime, target: str, envelope: dict[str, Any], exc: RelayError, attempts: int
) -> None:
    """Put a delivery in the dead-letter queue and say so in the trace."""
    rt.dlq.add(target, envelope, exc, attempts)
    trace_delivery(rt, envelope, target, outcome="dead-lettered", reason=exc.message)


def handle_delivery(
    rt: Runtime, message_id: str, target: str, envelope: dict[str, Any], attempt: int, force: bool
) -> None:
    """Deliver, then commit what follows: nothing (done), a retry, or a dead letter."""
    policy = rt.settings.retry
    try:
        run_delivery(rt, target, envelope, attempt, force)
    except REDIS_DOWN:
        raise
    except Exception as exc:
        if isinstance(exc, TransientError):
            error: RelayError = exc
            retry_after = exc.retry_after
        elif isinstance(exc, RelayError):  # permanent, unknown outcome, configuration
            dead_letter(rt, target, envelope, exc, attempt)
            rt.outbox.commit(done=message_id)
            return
        else:  # a bug: retried like a transient failure, dead-lettered at the attempt limit
            log.exception("delivery of %s to %s failed unexpectedly", envelope["event_id"], target)
            error = RelayError(f"unexpected {type(exc).__name__} (see the worker log)")
            retry_after = None
        if attempt >= policy.max_attempts:
            message = f"retries exhausted after {attempt} attempts: {error.message}"
            dead_letter(rt, target, envelope, type(error)(message, status=error.status), attempt)
            rt.outbox.commit(done=message_id)
            return
        delay = backoff_delay(policy, attempt, retry_after)
        how = schedule_retry(rt, message_id, target, envelope, attempt, force, delay)
        trace_delivery(rt, envelope, target, outcome=how, delay=round(delay, 3))
        return
    rt.outbox.commit(done=message_id)


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
    message_id = str(self.request.id)
    try:
        handle_delivery(rt, message_id, target, envelope, attempt, force)
    except REDIS_DOWN as exc:
        log.warning("delivery %s: Redis unreachable (%s); requeued", message_id, exc)
        raise Reject(type(exc).__name__, requeue=True) from None
    except Exception as exc:  # the failure path itself failed (rule 3)
        log.exception("delivery %s to %s could not be finished", message_id, target)
        give_up_or_requeue(rt, message_id, target, envelope, exc)


def replay(rt: Runtime, letter: DeadLetter, force: bool = False) -> tuple[bool, str]:
    """Re-run a dead letter's delivery now, in this process, bypassing ingest dedup.

    The dead letter is removed only when the delivery succeeds; a failure stays, with the new
    attempt recorded. Returns (succeeded, what happened). A letter of an event that could not
    be routed is routed again: its deliveries are queued for the workers.
    """
    if letter.target == ROUTE_TARGET:
        targets = run_route(rt, letter.envelope, None)
        rt.dlq.remove([letter.id])
        return True, f"routed again to {', '.join(targets) or 'no target'}"
    try:
        outcome = run_delivery(rt, letter.target, letter.envelope, letter.attempts + 1, force)
    except RelayError as exc:
        rt.dlq.add(letter.target, letter.envelope, exc, 1)
        return False, f"{exc.kind}: {exc.message}"
    rt.dlq.remove([letter.id])
    return True, f"{outcome.action}: {outcome.reason}"
