"""The ``[targets.everit]`` section of the relay's TOML file, parsed once into an EveritConfig.

Secrets and the endpoint come from the environment (``EVERIT_API_KEY``, ``EVERIT_BASE_URL``) and
are merged into the section by :func:`clockify_relay.settings.load_settings`; everything else is
mapping. Example::

    [targets.everit]
    enabled = true
    # Optional; EVERIT_BASE_URL wins. Default shown.
    base_url = "https://jttp-cloud.everit.biz/timetracker/api/latest/public"
    timeout = 15                  # seconds per request (optional)
    requested_by = "clockify-relay"   # x-requested-by (CSRF header; any text)
    require_user_mapping = false  # true: refuse entries of users without [users] row
    on_behalf_for_delete = false  # true: DELETE carries x-everit-on-behalf-account too

    [targets.everit.defaults]
    issue_id = 10000              # optional fallback Jira issue

    [targets.everit.users."<clockify user id>"]
    account_id = "557058:..."     # sent as x-everit-on-behalf-account

    [targets.everit.projects."<clockify project id>"]
    issue_id = 10001

    [targets.everit.tasks."<clockify task id>"]
    issue_id = 10002

    [targets.everit.issue_keys]   # Jira keys found in a description → issue id
    "PROJ-12" = 10012

    [targets.everit.tags."<clockify tag id>"]
    tag_id = 5                    # Everit worklog tag id

Rows of ``projects``, ``tasks`` and ``tags`` may also be written as plain numbers
(``[targets.everit.projects]`` / ``"<id>" = 10001``); ``users`` rows as plain strings.

Issue resolution order for an entry: task → project → first mapped Jira key in the description →
``defaults.issue_id``; with none, the entry is refused with a :class:`ConfigurationError` naming
the key to add. Without a ``users`` row no on-behalf header is sent, so the worklog is booked as
the owner of the API key (set ``require_user_mapping = true`` to refuse that instead).

Everit documents ``x-everit-on-behalf-account`` for POST and PATCH only, so a DELETE goes without
it (as the API key's owner) unless ``on_behalf_for_delete = true``; GET never carries it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clockify_relay.connectors.config_values import id_rows, table, whole_number
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import KnownKeys, Secret

DEFAULT_BASE_URL = "https://jttp-cloud.everit.biz/timetracker/api/latest/public"
DEFAULT_TIMEOUT = 15.0
SECTION = "targets.everit"

# Every key parse_config reads (settings.py refuses others, naming the nearest of these).
KNOWN_KEYS = KnownKeys.of(
    "api_key",
    "base_url",
    "timeout",
    "requested_by",
    "require_user_mapping",
    "on_behalf_for_delete",
    defaults=KnownKeys.of("issue_id"),
    users=KnownKeys.of(rows=KnownKeys.of("account_id")),
    projects=KnownKeys.of(rows=KnownKeys.of("issue_id")),
    tasks=KnownKeys.of(rows=KnownKeys.of("issue_id")),
    issue_keys=KnownKeys.of(rows=KnownKeys.of()),
    tags=KnownKeys.of(rows=KnownKeys.of("tag_id")),
)


@dataclass(frozen=True)
class EveritConfig:
    """Everything the Everit connector reads from its TOML section and the environment."""

    api_key: Secret = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = DEFAULT_TIMEOUT
    requested_by: str = "clockify-relay"
    require_user_mapping: bool = False
    # Send x-everit-on-behalf-account on DELETE too (documented for POST and PATCH only).
    on_behalf_for_delete: bool = False
    default_issue_id: int | None = None
    # Clockify user id → Everit (Atlassian) account id for x-everit-on-behalf-account.
    users: Mapping[str, str] = field(default_factory=dict)
    # Clockify project / task id → Jira issue id.
    projects: Mapping[str, int] = field(default_factory=dict)
    tasks: Mapping[str, int] = field(default_factory=dict)
    # Jira issue key (e.g. "PROJ-12") → Jira issue id.
    issue_keys: Mapping[str, int] = field(default_factory=dict)
    # Clockify tag id → Everit worklog tag id.
    tags: Mapping[str, int] = field(default_factory=dict)


def _users(section: Mapping[str, Any]) -> dict[str, str]:
    users: dict[str, str] = {}
    for key, row in table(section, "users", SECTION).items():
        where = f'[{SECTION}.users."{key}"] account_id'
        value = row.get("account_id") if isinstance(row, Mapping) else row
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"{where} must be a non-empty string")
        users[str(key)] = value.strip()
    return users


def parse_config(section: Mapping[str, Any]) -> EveritConfig:
    """Validate ``[targets.everit]`` (with env values merged in) into an :class:`EveritConfig`."""
    raw_key = section.get("api_key")
    if isinstance(raw_key, str):
        raw_key = Secret(raw_key)
    if not isinstance(raw_key, Secret) or not raw_key.reveal().strip():
        raise ConfigurationError("everit: no API key; set the EVERIT_API_KEY environment variable")
    base_url = section.get("base_url") or DEFAULT_BASE_URL
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"everit: base_url (EVERIT_BASE_URL or [{SECTION}] base_url) must be an http(s) URL"
        )
    try:
        timeout = float(section.get("timeout", DEFAULT_TIMEOUT))
    except (TypeError, ValueError):
        raise ConfigurationError(f"[{SECTION}] timeout must be a number of seconds") from None
    if timeout <= 0:
        raise ConfigurationError(f"[{SECTION}] timeout must be positive")
    requested_by = section.get("requested_by", "clockify-relay")
    if not isinstance(requested_by, str):
        raise ConfigurationError(f"[{SECTION}] requested_by must be a string")
    require_user_mapping = section.get("require_user_mapping", False)
    if not isinstance(require_user_mapping, bool):
        raise ConfigurationError(f"[{SECTION}] require_user_mapping must be true or false")
    on_behalf_for_delete = section.get("on_behalf_for_delete", False)
    if not isinstance(on_behalf_for_delete, bool):
        raise ConfigurationError(f"[{SECTION}] on_behalf_for_delete must be true or false")

    defaults = table(section, "defaults", SECTION)
    default_issue = defaults.get("issue_id")
    issue_keys: dict[str, int] = {}
    for key, value in table(section, "issue_keys", SECTION).items():
        issue_keys[str(key).upper()] = whole_number(value, f'[{SECTION}.issue_keys] "{key}"')

    return EveritConfig(
        api_key=raw_key,
        base_url=base_url.rstrip("/"),
        timeout=timeout,
        requested_by=requested_by,
        require_user_mapping=require_user_mapping,
        on_behalf_for_delete=on_behalf_for_delete,
        default_issue_id=(
            None
            if default_issue is None
            else whole_number(default_issue, f"[{SECTION}.defaults] issue_id")
        ),
        users=_users(section),
        projects=id_rows(section, "projects", "issue_id", SECTION),
        tasks=id_rows(section, "tasks", "issue_id", SECTION),
        issue_keys=issue_keys,
        tags=id_rows(section, "tags", "tag_id", SECTION),
    )
