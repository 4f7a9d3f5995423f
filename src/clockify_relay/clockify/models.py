"""Typed models of what Clockify sends: time entries and approval requests.

Both payload generations are accepted: older ones carry top-level ``taskId``/``tagIds``, newer
ones ``task``/``tags`` objects. Durations arrive as ISO-8601 (``PT1H30M``) from webhooks and as
seconds from some REST reads; both parse. Descriptions arrive HTML-escaped and are decoded once
here, so every target shows what the person typed.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

TIME_ENTRY_EVENTS = frozenset(
    {
        "NEW_TIME_ENTRY",
        "TIME_ENTRY_UPDATED",
        "TIME_ENTRY_DELETED",
        "NEW_TIMER_STARTED",
        "TIMER_STOPPED",
        "TIME_ENTRY_RESTORED",
        "TIME_ENTRY_SPLIT",
    }
)
APPROVAL_EVENTS = frozenset({"NEW_APPROVAL_REQUEST", "APPROVAL_REQUEST_STATUS_UPDATED"})
ROUTED_EVENTS = TIME_ENTRY_EVENTS | APPROVAL_EVENTS
# Every event type Clockify's webhook API can send (clockify-api.txt, "Create webhooks"). Known
# types the relay does not route are answered 200 "ignored" so Clockify does not retry them.
KNOWN_EVENTS = ROUTED_EVENTS | frozenset(
    """NEW_PROJECT NEW_TASK NEW_CLIENT NEW_TAG USER_DELETED_FROM_WORKSPACE USER_JOINED_WORKSPACE
    USER_DEACTIVATED_ON_WORKSPACE USER_ACTIVATED_ON_WORKSPACE USER_EMAIL_CHANGED USER_UPDATED
    NEW_INVOICE INVOICE_UPDATED TIME_OFF_REQUESTED TIME_OFF_REQUEST_UPDATED
    TIME_OFF_REQUEST_APPROVED TIME_OFF_REQUEST_REJECTED TIME_OFF_REQUEST_WITHDRAWN BALANCE_UPDATED
    TAG_UPDATED TAG_DELETED TASK_UPDATED CLIENT_UPDATED TASK_DELETED CLIENT_DELETED
    EXPENSE_RESTORED ASSIGNMENT_CREATED ASSIGNMENT_DELETED ASSIGNMENT_PUBLISHED ASSIGNMENT_UPDATED
    EXPENSE_CREATED EXPENSE_DELETED EXPENSE_UPDATED PROJECT_UPDATED PROJECT_DELETED
    USER_GROUP_CREATED USER_GROUP_UPDATED USER_GROUP_DELETED USERS_INVITED_TO_WORKSPACE
    LIMITED_USERS_ADDED_TO_WORKSPACE COST_RATE_UPDATED BILLABLE_RATE_UPDATED""".split()  # noqa: SIM905 (readable as one block)
)
APPROVAL_STATES = frozenset(
    {"PENDING", "APPROVED", "REJECTED", "WITHDRAWN_SUBMISSION", "WITHDRAWN_APPROVAL"}
)


class PayloadError(ValueError):
    """A webhook body that is not a usable Clockify payload (answered 400, never queued)."""


# What a worker can process (docs/ARCHITECTURE.md, "A 202 is a promise"): the receiver refuses
# anything beyond these limits, so no accepted body fails later in a decoder or a mapper.
MAX_DEPTH = 32  # nesting of objects and arrays; Clockify's own bodies are about 4 deep
MAX_INTEGER = 2**63 - 1  # integers and integral numbers within signed 64 bits
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2199, 12, 31, tzinfo=UTC)
MAX_ENTRY_LENGTH = timedelta(hours=1000)  # Clockify caps an entry at 999:59:59


def check_limits(payload: object) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` and numbers beyond 64-bit integers.

    The relay's JSON tools differ at the edges (orjson refuses integers beyond 64 bits and
    nesting past 255 when writing; Celery's decoder recurses and fails near 1,000 levels), so
    the receiver allows only what all of them handle. It runs on every webhook: written for
    speed (exact type checks, recursion bounded by ``MAX_DEPTH``)."""
    _check_values((payload,), 1)


def _check_values(values: Iterable[Any], level: int) -> None:
    for value in values:
        kind = type(value)
        if kind is dict or kind is list:
            if level > MAX_DEPTH:
                raise PayloadError(f"body is nested deeper than {MAX_DEPTH} levels")
            _check_values(value.values() if kind is dict else value, level + 1)
        elif (kind is int or kind is float) and not -MAX_INTEGER <= value <= MAX_INTEGER:
            # orjson reads integers beyond 64 bits as floats; the worker would read the same
            # text as an integer it cannot write again.
            raise PayloadError(f"a number is beyond the signed 64-bit range: {value}")


_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: object) -> timedelta | None:
    """Parse a Clockify duration: ISO-8601 (``PT1H30M``, ``PT0S``), seconds, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PayloadError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        return _timedelta(value, seconds=float(value))
    if isinstance(value, str):
        match = _ISO_DURATION.match(value.strip())
        if match and value.strip() not in ("P", "PT"):
            parts = {k: float(v) for k, v in match.groupdict().items() if v}
            return _timedelta(
                value,
                days=parts.get("days", 0),
                hours=parts.get("hours", 0),
                minutes=parts.get("minutes", 0),
                seconds=parts.get("seconds", 0),
            )
        try:
            seconds = float(value)
        except ValueError:
            pass
        else:
            return _timedelta(value, seconds=seconds)
    raise PayloadError(f"invalid duration {value!r}")


def _timedelta(raw: object, **parts: float) -> timedelta:
    # NaN, infinities and absurdly large values make timedelta raise ValueError/OverflowError;
    # a negative length is no duration either. All are bad payloads (400), not crashes (500).
    if not all(math.isfinite(v) and v >= 0 for v in parts.values()):
        raise PayloadError(f"invalid duration {raw!r}")
    try:
        return timedelta(**parts)
    except (OverflowError, ValueError):
        raise PayloadError(f"invalid duration {raw!r}") from None


def parse_instant(value: object) -> datetime | None:
    """Parse a UTC timestamp such as ``2026-08-07T22:40:00Z`` into an aware datetime."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(f"invalid timestamp {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"invalid timestamp {value!r}") from None
    if parsed.tzinfo is None:
        raise PayloadError(f"timestamp without offset {value!r}")
    if not EARLIEST <= parsed <= LATEST:
        raise PayloadError(
            f"timestamp {value!r} is outside the years {EARLIEST.year} to {LATEST.year}"
        )
    return parsed


def decode_description(value: object) -> str:
    """Undo Clockify's HTML escaping once (``&lt;b&gt;`` → ``<b>``, ``&amp;amp;`` → ``&amp;``)."""
    if not isinstance(value, str):
        return ""
    return html.unescape(value)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _object(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = payload.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class TimeEntry:
    """A Clockify time entry as the relay needs it."""

    id: str
    workspace_id: str
    user_id: str
    description: str
    project_id: str | None
    task_id: str | None
    tag_ids: tuple[str, ...]
    billable: bool
    type: str
    is_locked: bool
    start: datetime
    end: datetime | None
    duration: timedelta | None
    time_zone: str | None
    user_name: str | None = None
    project_name: str | None = None
    task_name: str | None = None

    @property
    def running(self) -> bool:
        """A running timer has no end yet; it is not booked until it stops."""
        return self.end is None

    @property
    def is_break(self) -> bool:
        return self.type == "BREAK"

    @property
    def seconds(self) -> int:
        """Booked length in whole seconds (end - start, else the stated duration)."""
        if self.end is not None:
            return max(0, int((self.end - self.start).total_seconds()))
        return int(self.duration.total_seconds()) if self.duration else 0


def parse_time_entry(payload: Mapping[str, Any]) -> TimeEntry:
    """Build a :class:`TimeEntry` from a webhook body or a REST response (either generation)."""
    if not isinstance(payload, Mapping):
        raise PayloadError("time entry payload is not a JSON object")
    entry_id = _str_or_none(payload.get("id"))
    if entry_id is None:
        raise PayloadError("time entry without id")
    interval = _object(payload, "timeInterval")
    start = parse_instant(interval.get("start"))
    if start is None:
        raise PayloadError(f"time entry {entry_id} has no timeInterval.start")
    end = parse_instant(interval.get("end"))
    duration = parse_duration(interval.get("duration"))
    length = end - start if end is not None else duration
    if end is not None and end < start:
        raise PayloadError(f"time entry {entry_id} ends before it starts")
    if length is not None and length > MAX_ENTRY_LENGTH:
        raise PayloadError(f"time entry {entry_id} is longer than {MAX_ENTRY_LENGTH}")
    task = _object(payload, "task")
    project = _object(payload, "project")
    user = _object(payload, "user")
    tags = payload.get("tags")
    if isinstance(tags, list) and tags:
        tag_ids = tuple(str(t["id"]) for t in tags if isinstance(t, Mapping) and t.get("id"))
    else:
        raw_ids = payload.get("tagIds")
        tag_ids = tuple(str(t) for t in raw_ids) if isinstance(raw_ids, list) else ()
    return TimeEntry(
        id=entry_id,
        workspace_id=str(payload.get("workspaceId") or ""),
        user_id=str(payload.get("userId") or user.get("id") or ""),
        description=decode_description(payload.get("description")),
        project_id=_str_or_none(payload.get("projectId")) or _str_or_none(project.get("id")),
        task_id=_str_or_none(payload.get("taskId")) or _str_or_none(task.get("id")),
        tag_ids=tag_ids,
        billable=bool(payload.get("billable", False)),
        type=str(payload.get("type") or "REGULAR"),
        is_locked=bool(payload.get("isLocked", False)),
        start=start,
        end=end,
        duration=duration,
        time_zone=_str_or_none(interval.get("timeZone")),
        user_name=_str_or_none(user.get("name")),
        project_name=_str_or_none(project.get("name")),
        task_name=_str_or_none(task.get("name")),
    )


@dataclass(frozen=True)
class ApprovalRequest:
    """A Clockify approval request (NEW_APPROVAL_REQUEST, APPROVAL_REQUEST_STATUS_UPDATED)."""

    id: str
    workspace_id: str
    owner_user_id: str
    owner_name: str | None
    owner_time_zone: str | None
    period_start: datetime | None
    period_end: datetime | None
    state: str
    note: str
    updated_at: datetime | None
    updated_by: str | None
    creator_email: str | None


def parse_approval(payload: Mapping[str, Any]) -> ApprovalRequest:
    """Build an :class:`ApprovalRequest` from a webhook body."""
    if not isinstance(payload, Mapping):
        raise PayloadError("approval request payload is not a JSON object")
    request_id = _str_or_none(payload.get("id"))
    if request_id is None:
        raise PayloadError("approval request without id")
    owner = _object(payload, "owner")
    status = _object(payload, "status")
    date_range = _object(payload, "dateRange")
    creator = _object(payload, "creator")
    state = str(status.get("state") or "PENDING")
    if state not in APPROVAL_STATES:
        raise PayloadError(f"approval request {request_id} has unknown state {state!r}")
    return ApprovalRequest(
        id=request_id,
        workspace_id=str(payload.get("workspaceId") or ""),
        owner_user_id=str(owner.get("userId") or ""),
        owner_name=_str_or_none(owner.get("userName")),
        owner_time_zone=_str_or_none(owner.get("timeZone")) or _str_or_none(owner.get("timezone")),
        period_start=parse_instant(date_range.get("start")),
        period_end=parse_instant(date_range.get("end")),
        state=state,
        note=decode_description(status.get("note")),
        updated_at=parse_instant(status.get("updatedAt")),
        updated_by=_str_or_none(status.get("updatedBy")),
        creator_email=_str_or_none(creator.get("userEmail")),
    )
