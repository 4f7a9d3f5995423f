"""Pure mapping from a Clockify time entry to a Tracket worklog body (no I/O).

Tracket takes a start and a length, so an entry that crosses the owner's local midnight is ONE
worklog at its local start (ARCHITECTURE §6). ``worklogDate`` carries the owner's UTC offset, so
Tracket shows the local wall-clock start the person saw in Clockify and the instant stays exact.
The same body serves create (POST) and update (PUT): every field is always present.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.connectors.tracket.config import SECTION, TracketConfig
from clockify_relay.errors import ConfigurationError


def _named(kind: str, ident: str | None, name: str | None) -> str:
    if not ident:
        return f"no {kind}"
    return f"{kind} {name!r} ({ident})" if name else f"{kind} {ident}"


def resolve_item_id(entry: TimeEntry, config: TracketConfig) -> str:
    """The Tracket item an entry is booked on: task → project → ``defaults.item_id``."""
    for rows, key in ((config.tasks, entry.task_id), (config.projects, entry.project_id)):
        row = rows.get(key) if key else None
        if row is not None and row.item_id:
            return row.item_id
    if config.default_item_id:
        return config.default_item_id
    options: list[str] = []
    if entry.task_id:
        options.append(f'[{SECTION}.tasks."{entry.task_id}"] item_id = "<Tracket item id>"')
    if entry.project_id:
        options.append(f'[{SECTION}.projects."{entry.project_id}"] item_id = "<Tracket item id>"')
    options.append(f'[{SECTION}.defaults] item_id = "<Tracket item id>"')
    project = _named("project", entry.project_id, entry.project_name)
    task = _named("task", entry.task_id, entry.task_name)
    raise ConfigurationError(
        f"tracket: no Tracket item for entry {entry.id} ({project}, {task}). Add one of: "
        + "; or ".join(options)
    )


def resolve_user_id(entry: TimeEntry, config: TracketConfig) -> str:
    """The Tracket user the worklog belongs to: ``users`` row → ``defaults.user_id``."""
    user = config.users.get(entry.user_id) or config.default_user_id
    if user:
        return user
    name = f" ({entry.user_name})" if entry.user_name else ""
    raise ConfigurationError(
        f"tracket: no Tracket user for Clockify user {entry.user_id}{name} (entry {entry.id}). "
        f'Add [{SECTION}.users."{entry.user_id}"] user_id = "<Tracket user id>" '
        f'or [{SECTION}.defaults] user_id = "<Tracket user id>"'
    )


def resolve_category(entry: TimeEntry, config: TracketConfig) -> str | None:
    """The optional worklog category: task → project → ``defaults.worklog_category``."""
    for rows, key in ((config.tasks, entry.task_id), (config.projects, entry.project_id)):
        row = rows.get(key) if key else None
        if row is not None and row.worklog_category:
            return row.worklog_category
    return config.default_category


def worklog(entry: TimeEntry, zone: ZoneInfo, config: TracketConfig) -> dict[str, Any]:
    """The Tracket worklog body for a stopped entry, in the owner's zone ``zone``."""
    local_start = entry.start.astimezone(zone).replace(microsecond=0)
    # Rounded so 61 s is 1.0167 rather than 1.0166666666666666; well under a second of drift.
    minutes = round(entry.seconds / 60, 4)
    return {
        "itemId": resolve_item_id(entry, config),
        "userId": resolve_user_id(entry, config),
        "description": entry.description,
        "worklogCategory": resolve_category(entry, config),
        "worklogDate": local_start.isoformat(),
        "worklogMinutes": minutes,
        "worklogBillableMinutes": minutes if entry.billable else 0.0,
    }
