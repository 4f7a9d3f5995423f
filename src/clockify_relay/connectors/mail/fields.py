"""The fields of an event that a mail rule can filter on and put in its subject, body and
recipients (pure). Each event kind has its own set; a rule may use only the fields every event
type it names has, which config.py checks when the settings are loaded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from clockify_relay.clockify.models import (
    APPROVAL_EVENTS,
    TIME_ENTRY_EVENTS,
    PayloadError,
    parse_approval,
    parse_time_entry,
)
from clockify_relay.errors import PermanentError
from clockify_relay.settings import Settings
from clockify_relay.timeutil import owner_zone

COMMON_FIELDS = frozenset({"event_type", "workspace_id", "owner", "owner_id"})
APPROVAL_FIELDS = COMMON_FIELDS | {
    "approval_id",
    "period",
    "period_start",
    "period_end",
    "state",
    "note",
    "updated_by",
    "creator",
    "creator_email",
}
ENTRY_FIELDS = COMMON_FIELDS | {
    "entry_id",
    "description",
    "duration",
    "start",
    "end",
    "date",
    "project",
    "project_id",
    "task",
    "billable",
}
# Fields that hold an e-mail address, usable as a recipient ("{creator_email}").
ADDRESS_FIELDS = frozenset({"creator_email"})


def fields_of(event_type: str) -> frozenset[str]:
    """The fields an event of this type has."""
    if event_type in APPROVAL_EVENTS:
        return APPROVAL_FIELDS
    if event_type in TIME_ENTRY_EVENTS:
        return ENTRY_FIELDS
    return frozenset()


@dataclass(frozen=True)
class MailEvent:
    """One event as the rules see it: its type, what rules filter on, and its fields."""

    event_type: str
    state: str | None  # approvals
    project_id: str | None  # time entries
    user_id: str  # the entry's user, the approval's owner
    fields: Mapping[str, str]


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else ""


def mail_event(event_type: str, payload: Mapping[str, Any], settings: Settings) -> MailEvent:
    """The event's fields; PermanentError when the payload cannot be read (it never will be)."""
    try:
        if event_type in APPROVAL_EVENTS:
            return _approval(event_type, payload)
        if event_type in TIME_ENTRY_EVENTS:
            return _entry(event_type, payload, settings)
    except PayloadError as exc:
        raise PermanentError(f"unusable {event_type} payload: {exc}") from None
    raise PermanentError(f"mail has no fields for {event_type} events")


def _approval(event_type: str, payload: Mapping[str, Any]) -> MailEvent:
    request = parse_approval(payload)
    status = payload.get("status")
    creator = payload.get("creator")
    updated_by_name = status.get("updatedByUserName") if isinstance(status, Mapping) else None
    creator_name = creator.get("userName") if isinstance(creator, Mapping) else None
    # The period as Clockify writes it: the dates of dateRange (its start and end of day).
    start = request.period_start.date().isoformat() if request.period_start else ""
    end = request.period_end.date().isoformat() if request.period_end else ""
    fields = {
        "event_type": event_type,
        "workspace_id": request.workspace_id,
        "owner": request.owner_name or request.owner_user_id,
        "owner_id": request.owner_user_id,
        "approval_id": request.id,
        "period": f"{start} to {end}" if start != end else start,
        "period_start": start,
        "period_end": end,
        "state": request.state,
        "note": request.note,
        "updated_by": str(updated_by_name or request.updated_by or ""),
        "creator": str(creator_name or ""),
        "creator_email": request.creator_email or "",
    }
    return MailEvent(event_type, request.state, None, request.owner_user_id, fields)


def _entry(event_type: str, payload: Mapping[str, Any], settings: Settings) -> MailEvent:
    entry = parse_time_entry(payload)
    zone = owner_zone(entry, settings)
    hours, rest = divmod(entry.seconds, 3600)
    fields = {
        "event_type": event_type,
        "workspace_id": entry.workspace_id,
        "owner": entry.user_name or entry.user_id,
        "owner_id": entry.user_id,
        "entry_id": entry.id,
        "description": entry.description,
        "duration": f"{hours}:{rest // 60:02d}",
        "start": _local(entry.start, zone),
        "end": _local(entry.end, zone),
        "date": entry.start.astimezone(zone).date().isoformat(),
        "project": entry.project_name or entry.project_id or "",
        "project_id": entry.project_id or "",
        "task": entry.task_name or entry.task_id or "",
        "billable": "yes" if entry.billable else "no",
    }
    return MailEvent(event_type, None, entry.project_id, entry.user_id, fields)
