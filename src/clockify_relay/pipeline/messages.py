"""Celery task messages built by hand, so the receiver can publish without blocking.

Celery's own ``apply_async`` is synchronous (kombu); on the receiver's event loop it would stall
every request. Instead the receiver writes the exact message kombu's Redis transport would write
(task protocol 2, JSON body, no base64 body encoding) with one non-blocking Redis call, and a
normal Celery worker consumes it. ``tests/test_ingest_e2e.py`` proves a real worker runs it.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import orjson

QUEUE = "relay"
ROUTE_TASK = "clockify_relay.route"
DELIVER_TASK = "clockify_relay.deliver"
RELEASE_TASK = "clockify_relay.release_parked"
_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
_EMBED = b'{"callbacks":null,"errbacks":null,"chain":null,"chord":null}'


def json_escape(raw: bytes) -> bytes:
    """``raw`` escaped to sit inside a JSON string literal (without the quotes)."""
    return orjson.dumps(raw.decode("utf-8"))[1:-1]


def task_message(
    task_name: str, task_id: str, body_head: bytes, body_tail: bytes
) -> tuple[bytes, bytes]:
    """The kombu message around a task body ``body_head + <gap> + body_tail``.

    Returns (head, tail) so a caller (the ingest Lua script) can put a value — the arrival
    sequence — into the gap. ``argsrepr`` names only the task id: Celery logs it, and the
    payload must not reach logs.
    """
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task_name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": f"<event {task_id}>",
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {
        "correlation_id": task_id,
        "reply_to": "",
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": QUEUE},
        "priority": 0,
        "delivery_tag": str(uuid.uuid4()),
    }
    head = (
        b'{"content-encoding":"utf-8","content-type":"application/json","headers":'
        + orjson.dumps(headers)
        + b',"properties":'
        + orjson.dumps(properties)
        + b',"body":"'
        + json_escape(body_head)
    )
    tail = json_escape(body_tail) + b'"}'
    return head, tail


def route_message(envelope_head: bytes, envelope_tail: bytes, event_id: str) -> tuple[bytes, bytes]:
    """The message for ``route(envelope)``; the envelope's sequence goes into the gap."""
    return task_message(
        ROUTE_TASK, event_id, b"[[" + envelope_head, envelope_tail + b"],{}," + _EMBED + b"]"
    )
