"""Running deliveries and what follows them, for the Celery tasks (pipeline/tasks.py) and the
operator commands.

Rules every task follows (docs/ARCHITECTURE.md §3, "Nothing lost", "No poison loops"):

1. A task ends by committing to the outbox in one atomic script: its own message is done and
   whatever comes next (the deliveries of an event, the retry of a delivery) is recorded and
   queued. A message is never lost between "done" and "next".
2. An event is fanned out once: a second run of the same event (a message queued again by the
   sweeper, or redelivered by kombu) commits nothing new.
3. Only Redis being unreachable puts a message back without counting (the tasks raise Celery's
   ``Reject`` with requeue). Any other failure counts: a delivery's by its attempts
   (pipeline/retry.py), a failure of this machinery itself by the outbox's resend count; then
   the dead-letter queue.
4. A delivery to a paused target is held, not run; a tripped breaker lets one probe through
   (pipeline/control.py). Every run tells the breaker whether the target answered.
5. A replay (a dead letter queued again by an operator, :func:`queue_replays`) is a delivery
   carrying the letter's id: delivered, it removes the letter; failed again, it adds the
   failure to the letter's history. Its state is recorded at every step for ``--wait``.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from celery.exceptions import Reject
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from clockify_relay.errors import RelayError, TransientError
from clockify_relay.pipeline import retry, trace
from clockify_relay.pipeline.dlq import ROUTE_TARGET, DeadLetter
from clockify_relay.pipeline.engine import Outcome
from clockify_relay.pipeline.messages import ROUTE_TASK, Envelope, call_message, deliver_message
from clockify_relay.pipeline.outbox import Outgoing
from clockify_relay.pipeline.runtime import Runtime

log = logging.getLogger("clockify_relay.pipeline")

# Redis unreachable: the one failure that re-queues without counting (rule 3).
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


def deliveries(
    targets: list[str], envelope: Envelope, attempt: int = 1, force: bool = False
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


def fan_out(
    rt: Runtime, envelope: Envelope, message_id: str | None, replay: str | None = None
) -> list[str]:
    """Record the event and queue one delivery per enabled target that handles its event type
    (its spec's ``events``: booking targets take time-entry events, an event target such as
    mail also approvals), once per event. ``replay``: the dead letter this route replays."""
    ttl = rt.settings.trace_ttl
    event_id = str(envelope["event_id"])
    targets = rt.enabled_targets(str(envelope["event_type"]))
    trace.store_envelope(rt.redis, rt.keys, envelope, ttl)
    # The mark only has to outlive every way the same message can come back (kombu's restore,
    # the sweeper's stale deadline), not the trace.
    once_ttl = int(max(rt.settings.dedup_window, 2 * rt.settings.stale_after))
    written = rt.outbox.commit(
        deliveries(targets, envelope), done=message_id, once=(rt.keys.routed(event_id), once_ttl)
    )
    if replay is not None:
        rt.dlq.remove([replay])
        rt.control.note_replay(replay, "delivered", detail=f"routed to {', '.join(targets)}")
    if written < 0:
        return []  # routed before (rule 2)
    trace.index_event(rt.redis, rt.keys, event_id, ttl)
    trace.record(
        rt.redis,
        rt.keys,
        event_id,
        ttl,
        envelope=envelope,
        stage="route",
        outcome="received",
        event_type=envelope["event_type"],
        sequence=envelope["sequence"],
        targets=targets or None,
        reason=None if targets else "no enabled target handles this event type",
    )
    return targets


def give_up_or_requeue(
    rt: Runtime,
    message_id: str,
    target: str,
    envelope: Envelope,
    exc: Exception,
    replay: str | None = None,
) -> None:
    """A task failed outside the delivery's own error handling (rule 3): requeue it a bounded
    number of times, then dead-letter it."""
    try:
        count = rt.outbox.count_resend(message_id)
        if count <= rt.settings.max_resends:
            raise Reject(type(exc).__name__, requeue=True)
        error = RelayError(f"failed {count} times: {type(exc).__name__} (see the worker log)")
        dead_letter(rt, target, envelope, error, count)
        rt.outbox.commit(done=message_id)
        if replay is not None:
            rt.control.note_replay(replay, "failed", error=error.message)
    except Reject:
        raise
    except Exception as again:  # Redis gone too: kombu keeps the message; try again later
        log.warning("could not requeue or dead-letter %s (%s)", message_id, type(again).__name__)
        raise Reject(type(again).__name__, requeue=True) from None


def trace_delivery(rt: Runtime, envelope: Envelope, target: str, **fields: Any) -> None:
    """Record one step of a delivery in the event's trace."""
    trace.record(
        rt.redis,
        rt.keys,
        envelope["event_id"],
        rt.settings.trace_ttl,
        envelope=envelope,
        stage="deliver",
        target=target,
        **fields,
    )


def run_delivery(
    rt: Runtime, target: str, envelope: Envelope, attempt: int = 1, force: bool = False
) -> Outcome:
    """Deliver once and trace it; raises the relay error on failure (traced too)."""
    started = time.monotonic()
    try:
        outcome = rt.engine(target, str(envelope["event_type"])).deliver(envelope, force=force)
    except RelayError as exc:
        trace_delivery(
            rt,
            envelope,
            target,
            attempt=attempt,
            seconds=round(time.monotonic() - started, 3),
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
        seconds=round(time.monotonic() - started, 3),
        outcome=outcome.action,
        reason=outcome.reason,
        operations=outcome.operations or None,
        remote_ids=outcome.remote_ids or None,
    )
    return outcome


def delivery_kwargs(attempt: int, force: bool, replay: str | None) -> dict[str, Any]:
    """The keyword arguments of a ``deliver`` message (``replay`` only when there is one)."""
    kwargs: dict[str, Any] = {"attempt": attempt, "force": force}
    if replay is not None:
        kwargs["replay"] = replay
    return kwargs


def commit_next(
    rt: Runtime,
    message_id: str,
    target: str,
    envelope: Envelope,
    attempt: int,
    force: bool,
    step: retry.Retry | retry.Park,
    replay: str | None = None,
) -> None:
    """Replace this delivery's message by its next attempt (rule 1)."""
    next_id = uuid.uuid4().hex
    args = [target, envelope]
    kwargs = delivery_kwargs(attempt + 1, force, replay)
    if isinstance(step, retry.Retry):
        eta = datetime.fromtimestamp(time.time() + step.delay, UTC)
        outgoing = Outgoing(next_id, deliver_message(next_id, args, kwargs, eta=eta))
    else:
        outgoing = Outgoing(
            next_id, deliver_message(next_id, args, kwargs), time.time() + step.delay
        )
    rt.outbox.commit([outgoing], done=message_id)


def dead_letter(
    rt: Runtime, target: str, envelope: Envelope, exc: RelayError, attempts: int
) -> None:
    """Put a delivery in the dead-letter queue and say so in the trace."""
    rt.dlq.add(target, envelope, exc, attempts)
    trace_delivery(rt, envelope, target, outcome="dead-lettered", reason=exc.message)


def deliver_and_commit(
    rt: Runtime,
    message_id: str,
    target: str,
    envelope: Envelope,
    attempt: int,
    force: bool,
    replay: str | None = None,
) -> None:
    """Deliver, then commit what follows: nothing (done), a retry, or a dead letter."""
    control = rt.control
    gate = control.gate(target, message_id)
    if gate == "held":  # rule 4: set aside until resume
        trace_delivery(rt, envelope, target, outcome="held", reason=f"{target} is paused")
        if replay is not None:
            control.note_replay(replay, "held", detail=f"{target} is paused")
        return
    probe = gate == "probe"
    try:
        outcome = run_delivery(rt, target, envelope, attempt, force)
    except REDIS_DOWN:
        raise
    except Exception as exc:
        if not isinstance(exc, RelayError):
            log.exception("delivery of %s to %s failed unexpectedly", envelope["event_id"], target)
        if isinstance(exc, TransientError):
            if probe:  # the target is still unavailable: hold the probe, cool down again
                control.reopen(target, message_id)
                trace_delivery(rt, envelope, target, outcome="held", reason="breaker probe failed")
                return
            if control.record_failure(target):
                log.warning("circuit breaker opened for %s: paused", target)
        else:
            _target_answered(rt, target, probe)
        step = retry.next_step(exc, attempt, rt.settings.retry)
        if isinstance(step, retry.DeadLetter):
            dead_letter(rt, target, envelope, step.error, attempt)
            rt.outbox.commit(done=message_id)
            if replay is not None:
                control.note_replay(replay, "failed", error=step.error.message)
            return
        commit_next(rt, message_id, target, envelope, attempt, force, step, replay)
        how = "retry" if isinstance(step, retry.Retry) else "parked"
        trace_delivery(rt, envelope, target, outcome=how, delay=round(step.delay, 3))
        if replay is not None:
            control.note_replay(replay, "retrying", delay=round(step.delay, 3))
        return
    _target_answered(rt, target, probe)
    rt.outbox.commit(done=message_id)
    if replay is not None:
        rt.dlq.remove([replay])
        control.note_replay(replay, "delivered", detail=f"{outcome.action}: {outcome.reason}")


def _target_answered(rt: Runtime, target: str, probe: bool) -> None:
    """The breaker's view of a run that was not a transient failure (rule 4)."""
    if probe:
        released = rt.control.close(target)
        log.warning("circuit breaker closed for %s: %d held deliveries queued", target, released)
    else:
        rt.control.record_answer(target)


def queue_replays(rt: Runtime, letters: list[DeadLetter], force: bool, by: str) -> list[str]:
    """Rule 5: queue each letter's delivery (its route, for a letter of an event that could
    not be routed) for the workers; the letters stay until the workers know the outcome.
    Ingest's dedup is not involved: the envelope goes straight to the workers, on purpose.
    Returns the message ids."""
    outgoing = []
    for letter in letters:
        message_id = uuid.uuid4().hex
        if letter.target == ROUTE_TARGET:
            message = call_message(ROUTE_TASK, message_id, [letter.envelope], {"replay": letter.id})
        else:
            kwargs = delivery_kwargs(1, force, letter.id)
            message = deliver_message(message_id, [letter.target, letter.envelope], kwargs)
        outgoing.append(Outgoing(message_id, message))
        # Noted before it is queued: a fast worker's outcome must not be overwritten.
        rt.control.note_replay(letter.id, "queued", message_id=message_id, by=by, force=force)
    rt.outbox.commit(outgoing)
    return [item.id for item in outgoing]
