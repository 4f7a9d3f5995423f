"""The ``[targets.organi]`` section of the relay's TOML file, parsed once into an OrganiConfig.

The token and endpoint come from the environment (``ORGANI_TOKEN``, ``ORGANI_BASE_URL``) and are
merged into the section by :func:`clockify_relay.settings.load_settings`. Organi's "Time API"
document (1.5.27) gives operations but no paths, methods or auth, so every path and the auth
header are configurable (defaults follow the document's tags; README "Organi"). Example::

    [targets.organi]
    enabled = true
    base_url = "https://organi.example/api"   # ORGANI_BASE_URL wins
    auth_header = "Authorization"              # header that carries the token (default shown)
    auth_scheme = "Bearer"                     # "" sends the bare token
    cache_id = "…"                             # sent as ?cacheId= on DELETE when set
    jira_issue_field = "key"                   # field of the jiraIssue object the key goes in
    timeout = 15                               # seconds per request

    [targets.organi.paths]                     # all optional; defaults shown in PATH_DEFAULTS
    worklog = "/worklog/{id}"

    [targets.organi.defaults]                  # all optional
    author = "…"
    worklog_type = 1
    performance_type = 1
    jira_issue = "PROJ-1"

    [targets.organi.statuses]                  # approval state → worklog status (defaults)
    pending = 1                                # to approve
    approved = 4                               # approved
    rejected = 2                               # to review
    withdrawn_approval = "undo 4"              # undo of "approved" (after checking history)
    withdrawn_submission = 1                   # Organi has no "not submitted": a fresh status
                                               # ("none" leaves the worklogs as they are)

    [targets.organi.confirmation_statuses]     # approval state → confirmation status (customer
    approved = 7                               # approval); OFF without this table. Same forms:
    withdrawn_approval = "undo 7"              # 6 7 8 9 10 12, "undo 6|7|8|9|12", "none";
                                               # a state not listed changes nothing

    [targets.organi.users."<clockify user id>"]
    author = "…"                               # or the short form "<id>" = "…"

    [targets.organi.projects."<clockify project id>"]   # tasks."<id>" alike
    jira_issue = "PROJ-12"
    worklog_type = 2
    performance_type = 3

Resolution: author = ``users`` row → ``defaults.author``; worklog type, performance type and
Jira issue = task → project → ``defaults`` (the issue is optional, the rest refuse the entry with
a :class:`ConfigurationError` naming the key to add).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clockify_relay.connectors.config_values import (
    string_setting,
    table,
    text_rows,
    text_value,
    whole_number,
)
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import KnownKeys, Secret

DEFAULT_TIMEOUT = 15.0
SECTION = "targets.organi"

# Operation → path under the base URL. ``{id}`` is the worklog id. The document's tags give
# the first segment; it names no method either (api.py says which one each call uses).
PATH_DEFAULTS: Mapping[str, str] = {
    "worklogs": "/worklog",  # POST create, PUT update (the document's update has no path id)
    "worklog": "/worklog/{id}",  # GET one, DELETE
    "worklog_types": "/worklogType",  # GET: proves the base URL serves the API
    "worklog_status": "/status/worklog",
    "worklog_status_undo": "/status/worklog/undo",
    "worklog_status_history": "/status/worklog/{id}",
    "confirmation_status": "/status/confirmation",
    "confirmation_status_undo": "/status/confirmation/undo",
    "confirmation_status_history": "/status/confirmation/{id}",
    "mail": "/mail",
}
_WITH_ID = frozenset(name for name, path in PATH_DEFAULTS.items() if "{id}" in path)

# Clockify approval state → what is done to the worklogs of its days (approvals.py).
APPROVAL_STATE_KEYS: Mapping[str, str] = {
    "pending": "PENDING",
    "approved": "APPROVED",
    "rejected": "REJECTED",
    "withdrawn_approval": "WITHDRAWN_APPROVAL",
    "withdrawn_submission": "WITHDRAWN_SUBMISSION",
}
# The document's statusId enums of "Update … status" and "Undo … status", per status kind
# (worklog status, confirmation status): the allowed set ids and undo ids (api.py has the
# same sets and refuses others before sending; it imports this module, so they are repeated).
_IDS: Mapping[str, tuple[frozenset[int], frozenset[int]]] = {
    "statuses": (frozenset({1, 2, 3, 4, 5, 11}), frozenset({4, 11})),
    "confirmation_statuses": (frozenset({6, 7, 8, 9, 10, 12}), frozenset({6, 7, 8, 9, 12})),
}


@dataclass(frozen=True)
class StatusAction:
    """Set ``status_id`` on the worklogs, or (``undo``) revert a ``status_id`` that is their
    current status."""

    status_id: int
    undo: bool = False

    def __str__(self) -> str:
        return f"undo {self.status_id}" if self.undo else f"status {self.status_id}"


# Organi has no "not submitted" status: a withdrawn submission goes back to the status a fresh
# worklog is given by its workflow, 1 ("to approve") unless configured.
DEFAULT_STATUSES: Mapping[str, StatusAction | None] = {
    "PENDING": StatusAction(1),
    "APPROVED": StatusAction(4),
    "REJECTED": StatusAction(2),
    "WITHDRAWN_APPROVAL": StatusAction(4, undo=True),
    "WITHDRAWN_SUBMISSION": StatusAction(1),
}

_TYPE_ROW = KnownKeys.of("jira_issue", "worklog_type", "performance_type")
# Every key parse_config reads (settings.py refuses others, naming the nearest of these).
KNOWN_KEYS = KnownKeys.of(
    "token",
    "base_url",
    "auth_header",
    "auth_scheme",
    "cache_id",
    "jira_issue_field",
    "timeout",
    paths=KnownKeys.of(*PATH_DEFAULTS),
    defaults=KnownKeys.of("author", "jira_issue", "worklog_type", "performance_type"),
    users=KnownKeys.of(rows=KnownKeys.of("author")),
    projects=KnownKeys.of(rows=_TYPE_ROW),
    tasks=KnownKeys.of(rows=_TYPE_ROW),
    statuses=KnownKeys.of(*APPROVAL_STATE_KEYS),
    confirmation_statuses=KnownKeys.of(*APPROVAL_STATE_KEYS),
)


@dataclass(frozen=True)
class TypeRow:
    """What a Clockify project or task (or the defaults) maps to on Organi."""

    jira_issue: str | None = None
    worklog_type: int | None = None
    performance_type: int | None = None


@dataclass(frozen=True)
class OrganiConfig:
    """Everything the Organi connector reads from its TOML section and the environment."""

    token: Secret = field(repr=False)
    base_url: str
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    cache_id: str | None = None
    jira_issue_field: str = "key"
    timeout: float = DEFAULT_TIMEOUT
    paths: Mapping[str, str] = field(default_factory=lambda: dict(PATH_DEFAULTS))
    default_author: str | None = None
    defaults: TypeRow = TypeRow()
    users: Mapping[str, str] = field(default_factory=dict)
    projects: Mapping[str, TypeRow] = field(default_factory=dict)
    tasks: Mapping[str, TypeRow] = field(default_factory=dict)
    statuses: Mapping[str, StatusAction | None] = field(
        default_factory=lambda: dict(DEFAULT_STATUSES)
    )
    # Empty (the default, no table): confirmation statuses are not driven.
    confirmation_statuses: Mapping[str, StatusAction | None] = field(default_factory=dict)

    def auth_value(self) -> str:
        """The value of the auth header (contains the token: never log it)."""
        token = self.token.reveal()
        return f"{self.auth_scheme} {token}" if self.auth_scheme else token


def _type_row(row: Mapping[str, Any], where: str) -> TypeRow:
    def number(key: str) -> int | None:
        value = row.get(key)
        return None if value is None else whole_number(value, f"{where} {key}")

    issue = row.get("jira_issue")
    return TypeRow(
        jira_issue=None if issue is None else text_value(issue, f"{where} jira_issue"),
        worklog_type=number("worklog_type"),
        performance_type=number("performance_type"),
    )


def _type_rows(section: Mapping[str, Any], name: str) -> dict[str, TypeRow]:
    rows: dict[str, TypeRow] = {}
    for key, row in table(section, name, SECTION).items():
        where = f'[{SECTION}.{name}."{key}"]'
        if not isinstance(row, Mapping):
            raise ConfigurationError(
                f"{where} must be a table of jira_issue, worklog_type, performance_type"
            )
        parsed = _type_row(row, where)
        if parsed == TypeRow():
            raise ConfigurationError(
                f"{where} needs jira_issue, worklog_type and/or performance_type"
            )
        rows[str(key)] = parsed
    return rows


def _paths(section: Mapping[str, Any]) -> dict[str, str]:
    paths = dict(PATH_DEFAULTS)
    for name, value in table(section, "paths", SECTION).items():
        where = f"[{SECTION}.paths] {name}"
        if name not in PATH_DEFAULTS:
            raise ConfigurationError(f"{where}: unknown path; known: {', '.join(PATH_DEFAULTS)}")
        if not isinstance(value, str) or not value.startswith("/") or "?" in value:
            raise ConfigurationError(f"{where} must be a path starting with '/', without a query")
        if (name in _WITH_ID) != ("{id}" in value) or value.count("{") != value.count("{id}"):
            need = "must contain {id} once" if name in _WITH_ID else "takes no placeholder"
            raise ConfigurationError(f"{where} {need}")
        paths[name] = value.rstrip("/") or "/"
    return paths


def _ids(ids: frozenset[int]) -> str:
    return " ".join(str(i) for i in sorted(ids))


def _status_action(value: object, where: str, name: str) -> StatusAction | None:
    set_ids, undo_ids = _IDS[name]
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in set_ids:
            raise ConfigurationError(f"{where}: status {value} is not one of {_ids(set_ids)}")
        return StatusAction(value)
    if isinstance(value, str):
        words = value.split()
        if words == ["none"]:
            return None
        if len(words) == 2 and words[0] == "undo" and words[1].isdigit():
            if int(words[1]) not in undo_ids:
                *others, last = sorted(undo_ids)
                listed = f"{', '.join(map(str, others))} or {last}"
                raise ConfigurationError(f"{where}: Organi only undoes status {listed}")
            return StatusAction(int(words[1]), undo=True)
    undos = ", ".join(f'"undo {i}"' for i in sorted(undo_ids))
    raise ConfigurationError(f'{where} must be a status id, {undos} or "none"')


def _statuses(section: Mapping[str, Any], name: str) -> dict[str, StatusAction | None]:
    """``statuses`` (over the defaults) or ``confirmation_statuses`` (off when absent; a state
    not listed in a present table changes nothing)."""
    if name == "statuses":
        statuses = dict(DEFAULT_STATUSES)
    elif name not in section:
        return {}
    else:
        statuses = dict.fromkeys(APPROVAL_STATE_KEYS.values())
    for key, value in table(section, name, SECTION).items():
        where = f"[{SECTION}.{name}] {key}"
        if key not in APPROVAL_STATE_KEYS:
            raise ConfigurationError(
                f"{where}: unknown state; known: {', '.join(APPROVAL_STATE_KEYS)}"
            )
        statuses[APPROVAL_STATE_KEYS[key]] = _status_action(value, where, name)
    return statuses


def parse_config(section: Mapping[str, Any]) -> OrganiConfig:
    """Validate ``[targets.organi]`` (with env values merged in) into an :class:`OrganiConfig`."""
    raw_token = section.get("token")
    if isinstance(raw_token, str):
        raw_token = Secret(raw_token)
    if not isinstance(raw_token, Secret) or not raw_token.reveal().strip():
        raise ConfigurationError("organi: no API token; set the ORGANI_TOKEN environment variable")
    base_url = section.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        # The document names no server: there is no default to fall back to.
        raise ConfigurationError(
            f"organi: base_url (ORGANI_BASE_URL or [{SECTION}] base_url) must be an http(s) URL"
        )
    auth_header = string_setting(section, "auth_header", "Authorization", SECTION)
    if not auth_header or any(c in auth_header for c in " :\r\n"):
        raise ConfigurationError(f"[{SECTION}] auth_header must be a plain header name")
    raw_cache_id = section.get("cache_id")
    cache_id = None if raw_cache_id is None else text_value(raw_cache_id, f"[{SECTION}] cache_id")
    jira_issue_field = string_setting(section, "jira_issue_field", "key", SECTION)
    if not jira_issue_field:
        raise ConfigurationError(f"[{SECTION}] jira_issue_field must not be empty")
    try:
        timeout = float(section.get("timeout", DEFAULT_TIMEOUT))
    except (TypeError, ValueError):
        raise ConfigurationError(f"[{SECTION}] timeout must be a number of seconds") from None
    if timeout <= 0:
        raise ConfigurationError(f"[{SECTION}] timeout must be positive")
    defaults = table(section, "defaults", SECTION)
    where = f"[{SECTION}.defaults]"
    author = defaults.get("author")
    return OrganiConfig(
        token=raw_token,
        base_url=base_url.rstrip("/"),
        auth_header=auth_header,
        auth_scheme=string_setting(section, "auth_scheme", "Bearer", SECTION),
        cache_id=cache_id,
        jira_issue_field=jira_issue_field,
        timeout=timeout,
        paths=_paths(section),
        default_author=None if author is None else text_value(author, f"{where} author"),
        defaults=_type_row(defaults, where),
        users=text_rows(section, "users", "author", SECTION),
        projects=_type_rows(section, "projects"),
        tasks=_type_rows(section, "tasks"),
        statuses=_statuses(section, "statuses"),
        confirmation_statuses=_statuses(section, "confirmation_statuses"),
    )
