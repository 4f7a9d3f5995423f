"""Pure mapping from a Clockify time entry to an Everit ``NewWorklog`` (no I/O).

Everit takes a start and a duration, so an entry that crosses the owner's local midnight is booked
as ONE worklog on the local start date (ARCHITECTURE §6). Dates and clock times are local to the
owner's zone; the client sends the same zone as ``x-timezone`` so Everit reads them the same way.
The same payload is used as the ``partialWorklog`` of an update: every field is always present,
so an update also clears what the person removed (tags, description).
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.connectors.everit.config import SECTION, EveritConfig
from clockify_relay.errors import ConfigurationError

# A Jira issue key: project key (upper-case letter, then letters/digits), dash, number. The
# look-arounds keep it from matching inside longer tokens such as "XPROJ-12" in "aXPROJ-12b".
JIRA_KEY = re.compile(r"(?<![A-Za-z0-9])[A-Z][A-Z0-9]+-\d+(?![A-Za-z0-9])")


def _named(kind: str, ident: str | None, name: str | None) -> str:
    if not ident:
        return f"no {kind}"
    return f"{kind} {name!r} ({ident})" if name else f"{kind} {ident}"


def _describe(entry: TimeEntry) -> str:
    project = _named("project", entry.project_id, entry.project_name)
    task = _named("task", entry.task_id, entry.task_name)
    return f"entry {entry.id} ({project}, {task})"


def jira_keys(description: str) -> list[str]:
    """Jira issue keys mentioned in a description, in order of appearance, without repeats."""
    return list(dict.fromkeys(JIRA_KEY.findall(description)))


def resolve_issue_id(entry: TimeEntry, config: EveritConfig) -> int:
    """The Jira issue an entry is booked on: task → project → Jira key → default.

    Raises :class:`ConfigurationError` naming the TOML keys that would map the entry.
    """
    if entry.task_id and entry.task_id in config.tasks:
        return config.tasks[entry.task_id]
    if entry.project_id and entry.project_id in config.projects:
        return config.projects[entry.project_id]
    keys = jira_keys(entry.description)
    for key in keys:
        if key in config.issue_keys:
            return config.issue_keys[key]
    if config.default_issue_id is not None:
        return config.default_issue_id
    options: list[str] = []
    if entry.task_id:
        options.append(f'[{SECTION}.tasks."{entry.task_id}"] issue_id = <Jira issue id>')
    if entry.project_id:
        options.append(f'[{SECTION}.projects."{entry.project_id}"] issue_id = <Jira issue id>')
    for key in keys:
        options.append(f'[{SECTION}.issue_keys] "{key}" = <Jira issue id>')
    options.append(f"[{SECTION}.defaults] issue_id = <Jira issue id>")
    found = f"; Jira keys in its description not mapped: {', '.join(keys)}" if keys else ""
    raise ConfigurationError(
        f"everit: no Jira issue for {_describe(entry)}{found}. Add one of: " + "; or ".join(options)
    )


def on_behalf_account(entry: TimeEntry, config: EveritConfig) -> str | None:
    """The Everit account to book as (``x-everit-on-behalf-account``), None for the key's owner."""
    account = config.users.get(entry.user_id)
    if account is None and config.require_user_mapping:
        name = f" ({entry.user_name})" if entry.user_name else ""
        raise ConfigurationError(
            f"everit: no Everit account for Clockify user {entry.user_id}{name} "
            f'(entry {entry.id}). Add [{SECTION}.users."{entry.user_id}"] '
            f'account_id = "<Atlassian account id>"'
        )
    return account


def tag_ids(entry: TimeEntry, config: EveritConfig) -> list[int]:
    """Everit worklog tag ids for the entry's mapped Clockify tags; unmapped tags are ignored."""
    return list(dict.fromkeys(config.tags[t] for t in entry.tag_ids if t in config.tags))


def new_worklog(entry: TimeEntry, zone: ZoneInfo, config: EveritConfig) -> dict[str, Any]:
    """The Everit ``NewWorklog`` body for a stopped entry, in the owner's zone ``zone``."""
    local_start = entry.start.astimezone(zone)
    return {
        "description": entry.description,
        "durationInSeconds": entry.seconds,
        "isBillable": entry.billable,
        "issueId": resolve_issue_id(entry, config),
        "workDate": local_start.strftime("%Y-%m-%d"),
        # Everit takes minutes only; the seconds of the start are dropped, the duration is exact.
        "workStartTime": local_start.strftime("%H:%M"),
        "worklogTagIds": tag_ids(entry, config),
    }
