"""``clockify-relay backfill``: bring the targets in line with Clockify over a period, whatever
webhooks were missed.

1. List the workspace's users (or the one given) and each user's time entries in the period,
   page by page, through the shared Clockify rate limiter.
2. Compare each entry with what the relay booked on every enabled booking target (the engine's
   state: ID map and the digest of each booking's payload). An entry in sync is left alone; any
   other is queued as a sequenced TIME_ENTRY_UPDATED (TIME_ENTRY_RESTORED where the relay holds
   a tombstone for it) through the receiver's ingest script with dedup bypassed -- a backfill
   must never be swallowed by dedup, and never writes the dedup key.
3. Entries the relay booked in the period (``days:<target>:<owner>``) that Clockify no longer
   lists are read once more (``GET`` time entry; a 404 counts only once key and workspace are
   proven valid); those really gone are queued as TIME_ENTRY_DELETED.

It only enqueues; the workers make every call to a target, and a worker that finds the booking
unchanged calls nothing ("unchanged"). Safe to re-run or interrupt: every step is recomputed
from Clockify and the relay's state, and a queued event is applied once whatever the order.

The REST time entry has no ``timeZone``: the relay uses the ``[users."<id>"] timezone`` of its
config, else the user's Clockify profile zone (``settings.timeZone`` from the users listing),
else ``[defaults] timezone``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson

from clockify_relay.admin.redrive import Refused, admit
from clockify_relay.admin.webhooks import WebhookOps
from clockify_relay.clockify.models import PayloadError, TimeEntry, parse_time_entry
from clockify_relay.connectors import registry
from clockify_relay.errors import RelayError
from clockify_relay.pipeline.engine import EntryState, booking_digest, out_of_scope
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.receiver.ingest import Ingestor
from clockify_relay.redis_conn import async_client

COUNTS = ("listed", "unchanged", "updated", "created", "deleted", "failed")


@dataclass
class BackfillReport:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, entry_id: str, user_id: str, reason: str = "") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.items.append(
            {"entry_id": entry_id, "user_id": user_id, "result": kind, "reason": reason}
        )

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.counts, "entries": self.items}


Progress = Callable[[str, int | None], None]  # (what happened, total users when known)


def booking_targets(runtime: Runtime) -> list[str]:
    """Enabled targets whose DeliveryEngine books time entries."""
    return [t for t in runtime.enabled_targets("TIME_ENTRY_UPDATED") if registry.spec(t).connector]


def _with_zone(entry: dict[str, Any], runtime: Runtime, zone: str | None) -> dict[str, Any]:
    configured = runtime.settings.raw.get("users", {}).get(str(entry.get("userId")), {})
    if zone and not configured.get("timezone"):
        interval = dict(entry.get("timeInterval") or {})
        interval.setdefault("timeZone", zone)
        return {**entry, "timeInterval": interval}
    return entry


def classify(runtime: Runtime, entry: TimeEntry) -> str:
    """``unchanged`` when every booking target holds exactly this entry's bookings, else
    ``restored`` (a tombstone to lift), ``created`` (booked nowhere yet) or ``updated``."""
    result = "unchanged"
    booked_anywhere = False
    for target in booking_targets(runtime):
        state = EntryState(
            runtime.redis,
            runtime.keys.entry_state(target, entry.id),
            runtime.settings.state_ttl,
        )
        booked_anywhere |= bool(state.ids)
        if state.tombstone_seq is not None:
            return "restored"
        connector = runtime.connector(target)
        engine = runtime.engine(target)
        scope = getattr(engine, "scope", None)
        desired: dict[str, str] = {}
        if not entry.running and (scope is None or out_of_scope(entry, scope) is None):
            try:
                desired = {b.key: booking_digest(b) for b in connector.bookings(entry)}
            except (RelayError, ArithmeticError, ValueError):
                result = "updated"  # the worker reports (dead-letters) what it cannot map
                continue
        differs = (
            bool(state.pending)
            or set(desired) != set(state.ids)
            or bool(state.ids and state.owner != entry.user_id)
            or any(state.hashes.get(k) != v for k, v in desired.items())
        )
        if differs:
            result = "updated"
    if result == "updated" and not booked_anywhere:
        return "created"
    return result


def backfill(
    ops: WebhookOps,
    runtime: Runtime,
    *,
    since: datetime,
    until: datetime,
    user: str | None = None,
    progress: Progress | None = None,
) -> BackfillReport:
    report = BackfillReport()
    client = ops.client
    users: list[dict[str, Any]]
    if user is not None:
        users = [{"id": user, "settings": {}}]
    else:
        users = list(client.list_users(ops.workspace_id))
    tick = progress or (lambda what, total: None)
    tick("users", len(users))
    targets = booking_targets(runtime)
    for person in users:
        # Queued user by user: an interruption leaves whole users done, and a re-run redoes
        # only what is still out of line.
        queue: list[tuple[str, str, bytes, str, str]] = []  # event, entry, body, kind, user
        user_id = str(person["id"])
        zone = (person.get("settings") or {}).get("timeZone")
        listed: set[str] = set()
        for raw_entry in client.list_user_time_entries(ops.workspace_id, user_id, since, until):
            report.counts["listed"] += 1
            entry_json = _with_zone(raw_entry, runtime, zone if isinstance(zone, str) else None)
            entry_id = str(entry_json.get("id"))
            listed.add(entry_id)
            try:
                entry = parse_time_entry(entry_json)
            except PayloadError as exc:
                report.add("failed", entry_id, user_id, str(exc))
                continue
            kind = classify(runtime, entry)
            if kind == "unchanged":
                report.add("unchanged", entry_id, user_id)
                continue
            event = "TIME_ENTRY_RESTORED" if kind == "restored" else "TIME_ENTRY_UPDATED"
            queue.append(
                (
                    event,
                    entry_id,
                    orjson.dumps(entry_json),
                    "created" if kind != "updated" else "updated",
                    user_id,
                )
            )
        for entry_id, day in _booked_in_period(runtime, targets, user_id, since, until):
            if entry_id in listed or any(q[1] == entry_id for q in queue):
                continue
            if client.get_time_entry(ops.workspace_id, entry_id) is not None:
                continue  # still in Clockify (outside the period, or another owner's now)
            queue.append(
                (
                    "TIME_ENTRY_DELETED",
                    entry_id,
                    orjson.dumps(_deleted_body(ops.workspace_id, entry_id, user_id, day)),
                    "deleted",
                    user_id,
                )
            )
        asyncio.run(_enqueue(runtime, queue, report))
        tick("user", None)
    return report


def _booked_in_period(
    runtime: Runtime, targets: Iterable[str], owner: str, since: datetime, until: datetime
) -> list[tuple[str, date]]:
    """Entries of ``owner`` the relay booked on a local day of the period (a day's margin on
    each side for zones; what Clockify still has is read again before it counts as deleted)."""
    low = (since - timedelta(days=1)).date().toordinal()
    high = (until + timedelta(days=1)).date().toordinal()
    found: dict[str, date] = {}
    for target in targets:
        members: list[Any] = runtime.redis.zrangebyscore(  # type: ignore[assignment]
            runtime.keys.owner_days(target, owner), low, high, withscores=True
        )
        for member, score in members:
            entry_id = member.decode() if isinstance(member, bytes) else str(member)
            found.setdefault(entry_id, date.fromordinal(int(score)))
    return sorted(found.items())


def _deleted_body(workspace_id: str, entry_id: str, owner: str, day: date) -> dict[str, Any]:
    """A TIME_ENTRY_DELETED body for an entry Clockify no longer has: its id, owner and booked
    day (the engine deletes by the ID map; it needs no more)."""
    start = datetime.combine(day, time(12, 0), UTC)
    return {
        "id": entry_id,
        "workspaceId": workspace_id,
        "userId": owner,
        "description": "",
        "type": "REGULAR",
        "billable": False,
        "timeInterval": {
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (start + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


async def _enqueue(
    runtime: Runtime,
    queue: list[tuple[str, str, bytes, str, str]],
    report: BackfillReport,
) -> None:
    client = async_client(runtime.settings)
    ingestor = Ingestor(runtime.settings, client)
    try:
        for event, entry_id, body, kind, user_id in queue:
            try:
                admitted = admit(runtime.settings, event, body)
            except Refused as exc:
                report.add("failed", entry_id, user_id, str(exc))
                continue
            await ingestor.ingest(
                event, admitted.workspace_id, admitted.entity_id, body, bypass_dedup=True
            )
            report.add(kind, entry_id, user_id, event)
    finally:
        await client.aclose()
