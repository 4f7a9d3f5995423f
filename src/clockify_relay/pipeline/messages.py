"""Celery task messages built by hand, so the receiver can publish without blocking.

Celery's own ``apply_async`` is synchronous (kombu); on the receiver's event loop it would stall
every request. Instead the receiver writes the exact message kombu's Redis transport would write
(task protocol 2, JSON body, no base64 body encoding) with one non-blocking Redis call, and a
normal Celery worker consumes it. ``tests/test_ingest_e2e.py`` proves a real worker runs it.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from datetime import datetime
from typing import Any, TypedDict

import orjson


class Envelope(TypedDict):
    """One accepted webhook as the pipeline carries it: written by ingest (receiver/ingest.py),
    read by route, deliver, the dead-letter queue, the trace and the admin API."""

    event_id: str
    event_type: str
    workspace_id: str
    entity_id: str  # the id of the Clockify object (time entry, approval request)
    received_at: str
    sequence: int
    payload: dict[str, Any]


QUEUE = "relay"
ROUTE_TASK = "clockify_relay.route"
DELIVER_TASK = "clockify_relay.deliver"
_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
_EMBED = b'{"callbacks":null,"errbacks":null,"chain":null,"chord":null}'


def encode(value: Any) -> bytes:
    """JSON for Redis that never fails: orjson, else the standard library (integers beyond 64
    bits, which orjson refuses), else a note that the value could not be stored."""
    try:
        return orjson.dumps(value)
    except TypeError:
        pass
    try:
        return json.dumps(value, default=str).encode()
    except (TypeError, ValueError, RecursionError):
        return orjson.dumps({"unencodable": type(value).__name__})


def json_escape(raw: bytes) -> bytes:
    """``raw`` escaped to sit inside a JSON string literal (without the quotes)."""
    return orjson.dumps(raw.decode("utf-8"))[1:-1]


_TASK_ID = "@@task-id@@"
_DELIVERY_TAG = "@@delivery-tag@@"


@functools.cache
def _envelope_template(task_name: str) -> tuple[bytes, ...]:
    """The kombu envelope of a task as fragments around the task id and the delivery tag.

    Built once per task name: the receiver formats one message per webhook, and filling in
    two hex strings is far cheaper than serialising the headers each time.
    """
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task_name,
        "id": _TASK_ID,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": _TASK_ID,
        "parent_id": None,
        # Celery logs argsrepr: it names only the task, the payload must not reach logs.
        "argsrepr": f"<event {_TASK_ID}>",
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {
        "correlation_id": _TASK_ID,
        "reply_to": "",
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": QUEUE},
        "priority": 0,
        "delivery_tag": _DELIVERY_TAG,
    }
    text = (
        b'{"content-encoding":"utf-8","content-type":"application/json","headers":'
        + orjson.dumps(headers)
        + b',"properties":'
        + orjson.dumps(properties)
        + b',"body":"'
    ).decode()
    fragments: list[bytes] = []
    for piece in text.split(_TASK_ID):
        fragments.extend(part.encode() for part in piece.split(_DELIVERY_TAG))
    return tuple(fragments)


def task_message(
    task_name: str, task_id: str, body_head: bytes, body_tail: bytes
) -> tuple[bytes, bytes]:
    """The kombu message around a task body ``body_head + <gap> + body_tail``.

    Returns (head, tail) so a caller (the ingest Lua script) can put a value — the arrival
    sequence — into the gap. ``task_id`` must need no JSON escaping (hex or a UUID).
    """
    # Fragments: 5 task-id slots (id, root_id, argsrepr, correlation_id) and 1 delivery tag.
    *fragments, last = _envelope_template(task_name)
    values = [task_id, task_id, task_id, task_id, os.urandom(16).hex()]
    head = b"".join(f + v.encode() for f, v in zip(fragments, values, strict=True))
    return head + last + json_escape(body_head), json_escape(body_tail) + b'"}'


def deliver_message(
    task_id: str, args: list[Any], kwargs: dict[str, Any], eta: datetime | None = None
) -> bytes:
    """A complete Celery message for ``deliver(*args, **kwargs)``, run no sooner than ``eta``.

    Built by hand (not ``apply_async``) so the outbox can record and queue it in one atomic
    Redis script (docs/ARCHITECTURE.md, "Nothing lost").
    """
    return call_message(DELIVER_TASK, task_id, args, kwargs, eta)


def call_message(
    task_name: str,
    task_id: str,
    args: list[Any],
    kwargs: dict[str, Any],
    eta: datetime | None = None,
) -> bytes:
    """A complete Celery message for ``task_name(*args, **kwargs)``, queued by hand."""
    body = encode([args, kwargs, orjson.loads(_EMBED)])
    head, tail = task_message(task_name, task_id, body, b"")
    message = head + tail
    if eta is None:
        return message
    # The template has "eta":null; Celery reads an ISO-8601 eta and holds the task until then.
    return message.replace(b'"eta":null', b'"eta":' + orjson.dumps(eta.isoformat()), 1)


def route_message(envelope_head: bytes, envelope_tail: bytes, event_id: str) -> tuple[bytes, bytes]:
    """The message for ``route(envelope)``; the envelope's sequence goes into the gap."""
    return task_message(
        ROUTE_TASK, event_id, b"[[" + envelope_head, envelope_tail + b"],{}," + _EMBED + b"]"
    )
