"""``clockify-relay redrive``: webhook deliveries Clockify logged as not answered 2xx, ingested
again exactly as if they had just arrived.

Each failed delivery's request body goes through the receiver's own checks
(:func:`clockify_relay.receiver.app.check_processable`: the worker's parser and limits, so what is
queued can be processed) and its ingest script (:class:`clockify_relay.receiver.ingest.Ingestor`:
the same dedup, the same per-entry sequence, the outbox). So a body the relay already has is a
duplicate, and a second redrive queues nothing.

Verification is skipped on purpose: the bodies come from Clockify's own API, read over TLS with
the relay's API key, which proves their origin as well as a signature would; the logs do not
keep the signature header, and the token it carried may have been rotated since. The workspace
allow-list (CLOCKIFY_WORKSPACE_IDS) still applies.

Which failed deliveries are redriven: per entry and event type, the latest failed one (it
carries the entry's latest state of that kind); none for which a later delivery of the same
entry was answered 2xx -- Clockify's own retry got through, or a later event did, and queuing
the older body after it would put stale data after fresh. Clockify keeps webhook logs 7 days.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from clockify_relay.admin.webhooks import LogRow, WebhookOps, logs
from clockify_relay.clockify.models import ROUTED_EVENTS, PayloadError
from clockify_relay.receiver.app import check_processable
from clockify_relay.receiver.ingest import Ingestor
from clockify_relay.redis_conn import async_client
from clockify_relay.settings import Settings

LOG_RETENTION_DAYS = 7


@dataclass
class RedriveRow:
    log_id: str
    event_type: str
    entry_id: str | None
    responded_at: str
    status_code: int
    outcome: str  # queued | duplicate | refused | skipped
    reason: str = ""
    event_id: str | None = None
    sequence: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "event_type": self.event_type,
            "entry_id": self.entry_id,
            "responded_at": self.responded_at,
            "status_code": self.status_code,
            "outcome": self.outcome,
            "reason": self.reason,
            "event_id": self.event_id,
            "sequence": self.sequence,
        }


@dataclass(frozen=True)
class Admitted:
    workspace_id: str
    entity_id: str
    raw: bytes


class Refused(Exception):
    """The receiver would have answered 4xx; the message says why."""


def admit(settings: Settings, event_type: str, raw: bytes) -> Admitted:
    """What the receiver checks after verification, in its order; raises :class:`Refused`."""
    if event_type not in ROUTED_EVENTS:
        raise Refused(f"{event_type} is not an event type the relay routes")
    if len(raw) > settings.max_body_bytes:
        raise Refused(f"body is larger than {settings.max_body_bytes} bytes")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise Refused("body must be a JSON object")
    workspace = payload.get("workspaceId")
    if workspace is not None and not isinstance(workspace, str):
        raise Refused("workspaceId must be a string")
    if settings.workspace_ids and workspace not in settings.workspace_ids:
        raise Refused("the payload's workspace is not in CLOCKIFY_WORKSPACE_IDS")
    entity_id = payload.get("id")
    if not isinstance(entity_id, str) or not entity_id:
        raise Refused(f"{event_type} payload has no id")
    try:
        check_processable(event_type, payload)
    except PayloadError as exc:
        raise Refused(f"{event_type} payload: {exc}") from None
    return Admitted(workspace or "", entity_id, raw)


def _entry_id(body: str) -> str | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = payload.get("id") if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None


def plan(rows: list[LogRow], event_types: Iterable[str] = ()) -> list[RedriveRow]:
    """Which failed deliveries to ingest (outcome "" for now) and which to skip, oldest first."""
    wanted = set(event_types)
    last_ok: dict[str, datetime] = {}
    for row in rows:
        entry = _entry_id(row.request_body)
        if row.ok and entry is not None:
            last_ok[entry] = max(last_ok.get(entry, row.when), row.when)
    failed = [r for r in rows if not r.ok and (not wanted or r.event_type in wanted)]
    latest: dict[tuple[str | None, str], LogRow] = {}
    for row in failed:
        key = (_entry_id(row.request_body) or row.log_id, row.event_type)
        if key not in latest or row.when >= latest[key].when:
            latest[key] = row
    planned: list[RedriveRow] = []
    for row in sorted(failed, key=lambda r: r.when):
        entry = _entry_id(row.request_body)
        item = RedriveRow(
            row.log_id, row.event_type, entry, row.responded_at, row.status_code, outcome=""
        )
        if latest[(entry or row.log_id, row.event_type)] is not row:
            item.outcome, item.reason = "skipped", "a later failed delivery of it is redriven"
        elif entry is not None and entry in last_ok and last_ok[entry] > row.when:
            item.outcome, item.reason = "skipped", "a later delivery of this entry succeeded"
        planned.append(item)
    return planned


def redrive(
    ops: WebhookOps,
    *,
    since: datetime,
    until: datetime | None = None,
    event_types: Iterable[str] = (),
) -> list[RedriveRow]:
    """Ingest every failed delivery :func:`plan` picks from the logs between since and until."""
    rows = logs(ops, since=since, until=until, status="ALL")
    planned = plan(rows, event_types)
    bodies = {r.log_id: r.request_body for r in rows}
    asyncio.run(_ingest(ops.settings, planned, bodies))
    return planned


async def _ingest(settings: Settings, planned: list[RedriveRow], bodies: dict[str, str]) -> None:
    client = async_client(settings)
    ingestor = Ingestor(settings, client)
    try:
        for item in planned:
            if item.outcome:
                continue
            try:
                admitted = admit(settings, item.event_type, bodies[item.log_id].encode())
            except Refused as exc:
                item.outcome, item.reason = "refused", str(exc)
                continue
            result = await ingestor.ingest(
                item.event_type, admitted.workspace_id, admitted.entity_id, admitted.raw
            )
            item.event_id = result.event_id
            if result.queued:
                item.outcome, item.sequence = "queued", result.sequence
            else:
                item.outcome, item.reason = "duplicate", "the relay already has this body"
    finally:
        await client.aclose()


def summary(rows: list[RedriveRow]) -> dict[str, int]:
    counts = {"queued": 0, "duplicate": 0, "refused": 0, "skipped": 0}
    for row in rows:
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    return counts
