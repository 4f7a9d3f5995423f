"""The ``[targets.tracket]`` section of the relay's TOML file, parsed once into a TracketConfig.

The token and endpoint come from the environment (``TRACKET_TOKEN``, ``TRACKET_BASE_URL``) and are
merged into the section by :func:`clockify_relay.settings.load_settings`. Tracket's documented
v1.0 API is marked deprecated, so the version is part of ``base_url``: moving to a later version
is a configuration change. Example::

    [targets.tracket]
    enabled = true
    base_url = "https://tracket.dev/api/1.0"   # optional; TRACKET_BASE_URL wins
    auth_header = "Authorization"              # header that carries the token (default shown)
    auth_scheme = "Bearer"                     # "" sends the bare token
    timeout = 15                               # seconds per request (optional)

    [targets.tracket.defaults]                 # all optional
    item_id = "item-general"
    user_id = "tracket-user-id"
    worklog_category = "category-id"

    [targets.tracket.users."<clockify user id>"]
    user_id = "tracket-user-id"

    [targets.tracket.projects."<clockify project id>"]
    item_id = "item-id"
    worklog_category = "category-id"           # optional

    [targets.tracket.tasks."<clockify task id>"]
    item_id = "item-id"
    worklog_category = "category-id"           # optional

Resolution: item = task → project → ``defaults.item_id``; user = ``users`` row →
``defaults.user_id``; category = task → project → ``defaults.worklog_category`` → none. A missing
item or user refuses the entry with a :class:`ConfigurationError` naming the key to add.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clockify_relay.connectors.config_values import string_setting, table, text_rows, text_value
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import KnownKeys, Secret

DEFAULT_BASE_URL = "https://tracket.dev/api/1.0"
DEFAULT_TIMEOUT = 15.0
SECTION = "targets.tracket"

_ITEM_ROW = KnownKeys.of("item_id", "worklog_category")
# Every key parse_config reads (settings.py refuses others, naming the nearest of these).
KNOWN_KEYS = KnownKeys.of(
    "token",
    "base_url",
    "auth_header",
    "auth_scheme",
    "timeout",
    defaults=KnownKeys.of("item_id", "user_id", "worklog_category"),
    users=KnownKeys.of(rows=KnownKeys.of("user_id")),
    projects=KnownKeys.of(rows=_ITEM_ROW),
    tasks=KnownKeys.of(rows=_ITEM_ROW),
)


@dataclass(frozen=True)
class ItemRow:
    """What a Clockify project or task maps to on Tracket."""

    item_id: str | None = None
    worklog_category: str | None = None


@dataclass(frozen=True)
class TracketConfig:
    """Everything the Tracket connector reads from its TOML section and the environment."""

    token: Secret = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    timeout: float = DEFAULT_TIMEOUT
    default_item_id: str | None = None
    default_user_id: str | None = None
    default_category: str | None = None
    users: Mapping[str, str] = field(default_factory=dict)
    projects: Mapping[str, ItemRow] = field(default_factory=dict)
    tasks: Mapping[str, ItemRow] = field(default_factory=dict)

    def auth_value(self) -> str:
        """The value of the auth header (contains the token: never log it)."""
        token = self.token.reveal()
        return f"{self.auth_scheme} {token}" if self.auth_scheme else token


def _optional_id(row: Mapping[str, Any], key: str, where: str) -> str | None:
    value = row.get(key)
    return None if value is None else text_value(value, f"{where} {key}")


def _item_rows(section: Mapping[str, Any], name: str) -> dict[str, ItemRow]:
    rows: dict[str, ItemRow] = {}
    for key, row in table(section, name, SECTION).items():
        where = f'[{SECTION}.{name}."{key}"]'
        if not isinstance(row, Mapping):
            # Shorthand: "<clockify id>" = "<item id>".
            rows[str(key)] = ItemRow(item_id=text_value(row, where))
            continue
        parsed = ItemRow(
            item_id=_optional_id(row, "item_id", where),
            worklog_category=_optional_id(row, "worklog_category", where),
        )
        if parsed.item_id is None and parsed.worklog_category is None:
            raise ConfigurationError(f"{where} needs item_id and/or worklog_category")
        rows[str(key)] = parsed
    return rows


def parse_config(section: Mapping[str, Any]) -> TracketConfig:
    """Validate ``[targets.tracket]`` (with env values merged in) into a :class:`TracketConfig`."""
    raw_token = section.get("token")
    if isinstance(raw_token, str):
        raw_token = Secret(raw_token)
    if not isinstance(raw_token, Secret) or not raw_token.reveal().strip():
        raise ConfigurationError(
            "tracket: no API token; set the TRACKET_TOKEN environment variable"
        )
    base_url = section.get("base_url") or DEFAULT_BASE_URL
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"tracket: base_url (TRACKET_BASE_URL or [{SECTION}] base_url) must be an http(s) URL"
        )
    auth_header = string_setting(section, "auth_header", "Authorization", SECTION)
    if not auth_header or any(c in auth_header for c in " :\r\n"):
        raise ConfigurationError(f"[{SECTION}] auth_header must be a plain header name")
    try:
        timeout = float(section.get("timeout", DEFAULT_TIMEOUT))
    except (TypeError, ValueError):
        raise ConfigurationError(f"[{SECTION}] timeout must be a number of seconds") from None
    if timeout <= 0:
        raise ConfigurationError(f"[{SECTION}] timeout must be positive")
    defaults = table(section, "defaults", SECTION)
    where = f"[{SECTION}.defaults]"
    return TracketConfig(
        token=raw_token,
        base_url=base_url.rstrip("/"),
        auth_header=auth_header,
        auth_scheme=string_setting(section, "auth_scheme", "Bearer", SECTION),
        timeout=timeout,
        default_item_id=_optional_id(defaults, "item_id", where),
        default_user_id=_optional_id(defaults, "user_id", where),
        default_category=_optional_id(defaults, "worklog_category", where),
        users=text_rows(section, "users", "user_id", SECTION),
        projects=_item_rows(section, "projects"),
        tasks=_item_rows(section, "tasks"),
    )
