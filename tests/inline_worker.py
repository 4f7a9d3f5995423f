"""Run queued messages in this process, as a worker would: for tests of operator commands that
queue work (replays, resume) without starting a worker process. The end-to-end tests use real
worker processes (tests/processes.py)."""

from __future__ import annotations

import json

from clockify_relay.pipeline import delivery
from clockify_relay.pipeline.messages import DELIVER_TASK, ROUTE_TASK
from clockify_relay.pipeline.runtime import Runtime


def run_queued(rt: Runtime, limit: int = 1000) -> int:
    """Take messages off the queue in order (as kombu does: the oldest first) and run their
    task bodies; returns how many ran."""
    ran = 0
    while ran < limit:
        raw = rt.redis.rpop(rt.keys.queue)
        if raw is None:
            return ran
        message = json.loads(raw)
        message_id = message["headers"]["id"]
        args, kwargs, _ = json.loads(message["body"])
        rt.outbox.received(message_id)
        if message["headers"]["task"] == ROUTE_TASK:
            delivery.fan_out(rt, args[0], message_id, kwargs.get("replay"))
        else:
            assert message["headers"]["task"] == DELIVER_TASK
            delivery.deliver_and_commit(rt, message_id, *args, **kwargs)
        ran += 1
    return ran
