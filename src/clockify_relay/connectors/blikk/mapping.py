"""Pure mapping of a Clockify time entry to Blikk time reports (one per local day).

Blikk books time per day (``date`` plus optional ``clockStart``/``clockEnd``), so an entry that
crosses local midnight in its owner's zone becomes one report per local day, keyed
``YYYY-MM-DD``. Hours are the real elapsed time of each part (a DST change inside an entry is
counted as it happened), as decimal hours; the clock times are local wall-clock ``hh:mm``.

A report has one date, and Blikk documents its clock times only as "hh:mm (24-hour clock)", so
no end may read as earlier than its start: a part that runs to the next local midnight ends at
``23:59`` (``00:00`` is the start of that date, and the document never mentions ``24:00``),
and ``hours`` still carries the exact length, the last minute included. A part whose
clock end is not after its clock start (under a minute on the clock, or the hour repeated when
DST ends) is sent without clock times, which Blikk makes optional.

``internalComment`` carries ``clockify:<entry id>``: the marker :meth:`BlikkConnector.find`
looks for to reconcile a create whose outcome is unknown. Customers never see the internal
comment; ``comment`` (visible on invoices) is the entry's description as the person typed it.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.connectors.base import Booking
from clockify_relay.connectors.blikk.config import SECTION, BlikkConfig, ProjectMapping
from clockify_relay.errors import ConfigurationError
from clockify_relay.timeutil import LocalSpan, split_by_local_day

MARKER_PREFIX = "clockify:"
# Decimal places of hours: Blikk shows and sums hours with two decimals (0.01 h = 36 s), and a
# value with more may be refused by its decimal columns.
HOURS_DECIMALS = 2


def marker(entry_id: str) -> str:
    """The marker that ties a Blikk report to its Clockify entry."""
    return f"{MARKER_PREFIX}{entry_id}"


def has_marker(internal_comment: object, entry_id: str) -> bool:
    """True when a report's ``internalComment`` carries this entry's marker (a whole token, so
    ``clockify:ab`` does not match ``clockify:abc``)."""
    if not isinstance(internal_comment, str):
        return False
    return marker(entry_id) in internal_comment.split()


def _user_id(entry: TimeEntry, config: BlikkConfig) -> int:
    # "*" is the catch-all row (used by `run --sandbox`, or one shared Blikk user).
    user_id = config.users.get(entry.user_id, config.users.get("*"))
    if user_id is None:
        who = f"{entry.user_id} ({entry.user_name})" if entry.user_name else entry.user_id
        raise ConfigurationError(
            f"Blikk: no user mapping for Clockify user {who}: add "
            f'[{SECTION}.users."{entry.user_id}"] user_id = <Blikk user id>'
        )
    return user_id


def _project(entry: TimeEntry, config: BlikkConfig) -> ProjectMapping:
    if entry.project_id is None:
        # No Clockify project: book on the default project kind, if any (may be none at all).
        return ProjectMapping()
    mapping = config.projects.get(entry.project_id, config.projects.get("*"))
    if mapping is None:
        what = (
            f"{entry.project_id} ({entry.project_name})" if entry.project_name else entry.project_id
        )
        raise ConfigurationError(
            f"Blikk: no project mapping for Clockify project {what}: add "
            f'[{SECTION}.projects."{entry.project_id}"] project_id = <Blikk project id> '
            f"(or internal_project_id / absence_project_id)"
        )
    return mapping


def _reference(project: ProjectMapping, config: BlikkConfig, key: str, entry: TimeEntry) -> int:
    value = getattr(project, key)
    if value is None:
        value = getattr(config.defaults, key)
    if value is None:
        where = f'[{SECTION}.projects."{entry.project_id}"] or ' if entry.project_id else ""
        raise ConfigurationError(
            f"Blikk requires {key} for every time report: set {key} in {where}"
            f"[{SECTION}.defaults] (entry {entry.id})"
        )
    assert isinstance(value, int)
    return value


def hours_of(seconds: int) -> float:
    """Decimal hours of a number of seconds (rounded to :data:`HOURS_DECIMALS`)."""
    return round(seconds / 3600, HOURS_DECIMALS)


def clock_times(span: LocalSpan) -> tuple[str | None, str | None]:
    """``clockStart``/``clockEnd`` of one local day's part, or (None, None) when the clock
    cannot show it as an end after a start on that date (see the module docstring)."""
    start = span.start.strftime("%H:%M")
    end = "23:59" if span.end.date() > span.day else span.end.strftime("%H:%M")
    if end <= start:
        return None, None
    return start, end


def report_payload(entry: TimeEntry, span: LocalSpan, config: BlikkConfig) -> dict[str, Any]:
    """The ``POST``/``PUT /v1/Core/TimeReports`` body for one local day of an entry."""
    project = _project(entry, config)
    # Entries without a Clockify project take the default project kind (if one is configured).
    kinds = project if project.has_project else config.defaults
    hours = hours_of(span.seconds)
    invoiceable = hours if entry.billable or config.invoiceable_when_not_billable else 0.0
    task_id = config.tasks.get(entry.task_id) if entry.task_id else None
    clock_start, clock_end = clock_times(span)
    return {
        # The request format of the doc's example ("2021-11-10 00:00:00").
        "date": f"{span.day.isoformat()} 00:00:00",
        "clockStart": clock_start,
        "clockEnd": clock_end,
        "hours": hours,
        "invoiceableHours": invoiceable,
        "breakMinutes": None,
        "comment": entry.description,
        "internalComment": marker(entry.id),
        "userId": _user_id(entry, config),
        "projectId": kinds.project_id,
        "internalProjectId": kinds.internal_project_id,
        "absenceProjectId": kinds.absence_project_id,
        "activityId": _reference(project, config, "activity_id", entry),
        "timeCodeId": _reference(project, config, "time_code_id", entry),
        "timeArticleId": _reference(project, config, "time_article_id", entry),
        "taskId": task_id,
    }


def bookings(entry: TimeEntry, config: BlikkConfig, zone: ZoneInfo) -> list[Booking]:
    """One :class:`Booking` per local day of ``entry`` in ``zone`` (key ``YYYY-MM-DD``).

    A running timer or a zero-length entry books nothing. Raises :class:`ConfigurationError`
    for an unmapped user or project, or a missing activity / time code / time article.
    """
    if entry.end is None or entry.end <= entry.start:
        return []
    # Resolve the mappings once up front so an unmapped entry fails even if every part is empty.
    _user_id(entry, config)
    _project(entry, config)
    result: list[Booking] = []
    for span in split_by_local_day(entry.start, entry.end, zone):
        if span.seconds <= 0:
            continue
        payload = report_payload(entry, span, config)
        result.append(Booking(key=span.day.isoformat(), payload=payload))
    return result
