"""The scheduler: a small loop, not a Celery task, so a long queue never delays it.

Every second it moves due parked deliveries to the queue and lets a tripped circuit breaker's
probe through when its cooldown is over (pipeline/control.py); every few seconds it sweeps the
outbox (pipeline/outbox.py) for messages kombu lost and dead-letters the ones given up on; with
``[targets.mail.ops]`` it mails the new dead letters to ops, at most once per interval
(connectors/mail/ops.py). It keeps no state of its own (no schedule file): everything it reads
and writes is in Redis, in atomic scripts, so two schedulers started by mistake do no harm.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import cast

from redis.exceptions import RedisError

from clockify_relay import metrics
from clockify_relay.errors import RelayError
from clockify_relay.pipeline import heartbeat
from clockify_relay.pipeline.dlq import ROUTE_TARGET
from clockify_relay.pipeline.messages import ROUTE_TASK, Envelope
from clockify_relay.pipeline.runtime import Runtime

log = logging.getLogger("clockify_relay.scheduler")
RELEASE_INTERVAL = 1.0  # seconds
SWEEP_INTERVAL = 5.0


def message_delivery(message_id: str, message: bytes) -> tuple[str, Envelope]:
    """(target, envelope) of a queued message; a stand-in envelope if it cannot be decoded."""
    try:
        data = json.loads(message)
        args = json.loads(data["body"])[0]
        if data["headers"]["task"] == ROUTE_TASK:
            return ROUTE_TARGET, cast(Envelope, dict(args[0]))
        return str(args[0]), cast(Envelope, dict(args[1]))
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        unknown = Envelope(
            event_id=message_id,
            event_type="unknown",
            workspace_id="",
            entity_id="unknown",
            received_at="",
            sequence=0,
            payload={},
        )
        return "unknown", unknown


def sweep_once(rt: Runtime) -> tuple[int, int]:
    """Queue lost messages again; dead-letter the ones given up on. Returns (resent, given up)."""
    settings = rt.settings
    result = rt.outbox.sweep(
        lost_after=settings.lost_after,
        stale_after=settings.stale_after,
        max_resends=settings.max_resends,
    )
    for message_id in result.resent:
        log.warning(
            "message %s was lost before a worker took it; queued again",
            message_id,
            extra={"message_id": message_id},
        )
    for message_id, message in result.given_up.items():
        target, envelope = message_delivery(message_id, message)
        error = RelayError(
            f"the message was lost or failed {settings.max_resends + 1} times in a row "
            "(a worker could not take or decode it); see the worker logs"
        )
        rt.dlq.add(target, envelope, error, settings.max_resends + 1)
        rt.outbox.commit(done=message_id)
        metrics.DEAD_LETTERED.labels(target).inc()
        log.error(
            "message %s given up on and dead-lettered (target %s)",
            message_id,
            target,
            extra={
                "message_id": message_id,
                "event_id": envelope.get("event_id"),
                "entry_id": envelope.get("entity_id"),
                "event_type": envelope.get("event_type"),
                "target": target,
                "error": error.message,
            },
        )
    return len(result.resent), len(result.given_up)


def run(rt: Runtime, stop: threading.Event, heartbeat_file: Path | None = None) -> None:
    """Release and sweep until ``stop`` is set; Redis outages are waited out. With
    ``heartbeat_file``, touch it on every turn (the ``scheduler`` command's liveness probe,
    ``clockify-relay worker-alive``, reads its age)."""
    next_sweep = 0.0
    ops = None
    if "mail" in rt.settings.targets:
        from clockify_relay.connectors.mail.ops import ops_mailer

        ops = ops_mailer(rt.settings.targets, rt.redis, rt.keys)
    while not stop.is_set():
        if heartbeat_file is not None:
            heartbeat.beat(heartbeat_file)
        try:
            rt.outbox.release_due()
            for target in rt.control.release_probes():
                log.warning(
                    "circuit breaker of %s: cooldown over, one held delivery probes", target
                )
            if time.monotonic() >= next_sweep:
                sweep_once(rt)
                next_sweep = time.monotonic() + SWEEP_INTERVAL
            if ops is not None:
                ops.check()  # does work at most once per its interval
        except (RedisError, RelayError) as exc:
            log.warning("scheduler step failed (%s); trying again", type(exc).__name__)
        stop.wait(RELEASE_INTERVAL)


def start_thread(rt: Runtime) -> threading.Event:
    """Run the scheduler in a daemon thread (``worker --beat``); set the event to stop it."""
    stop = threading.Event()
    threading.Thread(target=run, args=(rt, stop), name="relay-scheduler", daemon=True).start()
    return stop
