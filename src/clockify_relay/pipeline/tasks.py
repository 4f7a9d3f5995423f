"""Celery tasks: ``route`` takes every queued event."""

from __future__ import annotations

from typing import Any

from clockify_relay.pipeline import trace
from clockify_relay.pipeline.celery_app import app
from clockify_relay.pipeline.messages import ROUTE_TASK
from clockify_relay.pipeline.runtime import runtime


@app.task(name=ROUTE_TASK)
def route(envelope: dict[str, Any]) -> None:
    """Record the event and decide, per enabled target, what to deliver."""
    rt = runtime()
    ttl = rt.settings.trace_ttl
    trace.store_envelope(rt.redis, rt.keys, envelope, ttl)
    trace.record(
        rt.redis, rt.keys, envelope["event_id"], ttl,
        stage="route", outcome="received", event_type=envelope["event_type"],
        sequence=envelope["sequence"],
    )
