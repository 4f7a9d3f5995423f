"""The Celery tasks — thin wrappers around pipeline/delivery.py — and the worker's receipt hook.

``route`` fans each event out, ``deliver`` runs one target. Neither raises: Celery acks a
message whose task raised, so every failure ends in delivery.py's retry or dead letter, or —
Redis unreachable only — in ``Reject`` with requeue.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Reject
from celery.signals import task_received

from clockify_relay.pipeline import delivery
from clockify_relay.pipeline.dlq import ROUTE_TARGET
from clockify_relay.pipeline.messages import DELIVER_TASK, ROUTE_TASK, Envelope
from clockify_relay.pipeline.runtime import runtime

log = logging.getLogger("clockify_relay.pipeline")


@task_received.connect
def _mark_received(request: Any = None, **_: Any) -> None:
    """The worker's main process has the message (kombu recorded it as unacked): the outbox
    stops counting it as waiting in the queue."""
    try:
        runtime().outbox.received(str(request.id))
    except Exception as exc:  # the sweeper then queues it again; deliveries are idempotent
        log.warning("could not mark message %s received (%s)", request.id, type(exc).__name__)


@shared_task(name=ROUTE_TASK, bind=True)
def route(self: Task[Any, Any], envelope: Envelope, replay: str | None = None) -> None:
    """Fan one event out to every enabled target (``replay``: the dead letter it replays)."""
    rt = runtime()
    message_id = str(self.request.id)
    try:
        delivery.fan_out(rt, envelope, message_id, replay)
    except delivery.REDIS_DOWN as exc:
        log.warning("route of %s: Redis unreachable (%s); requeued", message_id, exc)
        raise Reject(type(exc).__name__, requeue=True) from None
    except Exception as exc:
        log.exception("route of event %s failed", envelope.get("event_id"))
        delivery.give_up_or_requeue(rt, message_id, ROUTE_TARGET, envelope, exc, replay)


@shared_task(name=DELIVER_TASK, bind=True)
def deliver(
    self: Task[Any, Any],
    target: str,
    envelope: Envelope,
    attempt: int = 1,
    force: bool = False,
    replay: str | None = None,
) -> None:
    """Deliver one event to one target; retry transient failures, dead-letter the rest
    (``replay``: the dead letter this delivery replays)."""
    rt = runtime()
    message_id = str(self.request.id)
    try:
        delivery.deliver_and_commit(rt, message_id, target, envelope, attempt, force, replay)
    except delivery.REDIS_DOWN as exc:
        log.warning("delivery %s: Redis unreachable (%s); requeued", message_id, exc)
        raise Reject(type(exc).__name__, requeue=True) from None
    except Exception as exc:  # the failure path itself failed
        log.exception("delivery %s to %s could not be finished", message_id, target)
        delivery.give_up_or_requeue(rt, message_id, target, envelope, exc, replay)
