"""Pure mapping from a Clockify time entry to an Organi worklog body (no I/O).

Organi takes a start and an end, so an entry that crosses the owner's local midnight is ONE
worklog at its local start (ARCHITECTURE §6). ``startDate``/``endDate`` carry the owner's UTC
offset, so Organi shows the wall-clock times the person saw in Clockify and the instants stay
exact. Every field the document marks required is always present: ``worklogType``,
``performanceType``, ``description``, ``author``, ``startDate``, ``endDate``; ``jiraIssue`` only
where one is mapped. The same body serves create and update (update adds ``worklogId``, api.py).
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.connectors.organi.config import SECTION, OrganiConfig, TypeRow
from clockify_relay.errors import ConfigurationError


def _named(kind: str, ident: str | None, name: str | None) -> str:
    if not ident:
        return f"no {kind}"
    return f"{kind} {name!r} ({ident})" if name else f"{kind} {ident}"


def _rows(entry: TimeEntry, config: OrganiConfig) -> list[TypeRow]:
    """The rows that apply to the entry, most specific first: task, project, defaults."""
    rows = [
        row
        for table, key in ((config.tasks, entry.task_id), (config.projects, entry.project_id))
        if key and (row := table.get(key)) is not None
    ]
    return [*rows, config.defaults]


def resolve_author(entry: TimeEntry, config: OrganiConfig) -> str:
    """The Organi author of the worklog: ``users`` row → ``defaults.author``."""
    author = config.users.get(entry.user_id) or config.default_author
    if author:
        return author
    name = f" ({entry.user_name})" if entry.user_name else ""
    raise ConfigurationError(
        f"organi: no Organi author for Clockify user {entry.user_id}{name} (entry {entry.id}). "
        f'Add [{SECTION}.users."{entry.user_id}"] author = "<Organi author>" '
        f'or [{SECTION}.defaults] author = "<Organi author>"'
    )


def _resolve_type(entry: TimeEntry, config: OrganiConfig, key: str) -> int:
    for row in _rows(entry, config):
        value: int | None = getattr(row, key)
        if value is not None:
            return value
    options: list[str] = []
    if entry.task_id:
        options.append(f'[{SECTION}.tasks."{entry.task_id}"] {key} = <id>')
    if entry.project_id:
        options.append(f'[{SECTION}.projects."{entry.project_id}"] {key} = <id>')
    options.append(f"[{SECTION}.defaults] {key} = <id>")
    project = _named("project", entry.project_id, entry.project_name)
    task = _named("task", entry.task_id, entry.task_name)
    raise ConfigurationError(
        f"organi: no Organi {key} for entry {entry.id} ({project}, {task}). Add one of: "
        + "; or ".join(options)
    )


def resolve_worklog_type(entry: TimeEntry, config: OrganiConfig) -> int:
    """``worklogType``: task → project → ``defaults.worklog_type``."""
    return _resolve_type(entry, config, "worklog_type")


def resolve_performance_type(entry: TimeEntry, config: OrganiConfig) -> int:
    """``performanceType``: task → project → ``defaults.performance_type``."""
    return _resolve_type(entry, config, "performance_type")


def resolve_jira_issue(entry: TimeEntry, config: OrganiConfig) -> str | None:
    """The optional Jira issue key: task → project → ``defaults.jira_issue`` → none."""
    return next((row.jira_issue for row in _rows(entry, config) if row.jira_issue), None)


def worklog(entry: TimeEntry, zone: ZoneInfo, config: OrganiConfig) -> dict[str, Any]:
    """The Organi worklog body for a stopped entry, in the owner's zone ``zone``."""
    start = entry.start.astimezone(zone).replace(microsecond=0)
    # The end is the start plus the booked length, in the same zone: its offset may differ
    # from the start's across a DST change. Added in UTC: arithmetic on a zoned datetime is
    # wall-clock arithmetic, which would be an hour off across the change.
    end = (start.astimezone(UTC) + timedelta(seconds=entry.seconds)).astimezone(zone)
    body: dict[str, Any] = {
        "worklogType": resolve_worklog_type(entry, config),
        "performanceType": resolve_performance_type(entry, config),
        "description": entry.description,
        "author": resolve_author(entry, config),
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
    }
    issue = resolve_jira_issue(entry, config)
    if issue:
        # The document names the object (JiraIssueDto) but not its fields: the key's field name
        # is configurable (``jira_issue_field``, default "key").
        body["jiraIssue"] = {config.jira_issue_field: issue}
    return body
