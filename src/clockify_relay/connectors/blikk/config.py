"""The ``[targets.blikk]`` section of the relay's TOML file, parsed once into a BlikkConfig.

Credentials and the endpoint come from the environment (``BLIKK_APP_ID``, ``BLIKK_APP_SECRET``,
``BLIKK_BASE_URL``) and are merged into the section by
:func:`clockify_relay.settings.load_settings`; everything else is mapping. Example::

    [targets.blikk]
    enabled = true
    # Optional; BLIKK_BASE_URL wins. Default shown (the API paths start with /v1/...).
    base_url = "https://publicapi.blikk.com"
    timeout = 15                       # seconds per request
    rate_per_second = 4                # Blikk allows 4 requests per second per access token
    rate_padding_ms = 10               # added to each 250 ms gap: cushion for network jitter
    rate_max_wait = 30                 # wait longer than this for a slot → retry later instead
    token_refresh_margin = 60          # refresh the access token this many seconds early
    invoiceable_when_not_billable = false   # true: invoiceableHours = hours even if not billable

    [targets.blikk.defaults]           # used when the project row does not say
    activity_id = 1
    time_code_id = 2
    time_article_id = 3
    # internal_project_id = 10         # only for entries WITHOUT a Clockify project

    [targets.blikk.users."<clockify user id>"]
    user_id = 123                      # or: [targets.blikk.users] "<id>" = 123

    [targets.blikk.projects."<clockify project id>"]
    project_id = 456                   # exactly one of project_id / internal_project_id /
                                       # absence_project_id
    activity_id = 7                    # optional overrides of the defaults
    time_code_id = 8
    time_article_id = 9

    # A row keyed "*" in users or projects is the catch-all for ids without their own row.

    [targets.blikk.tasks."<clockify task id>"]
    task_id = 77                       # optional Blikk task; or "<id>" = 77

An entry whose user has no ``users`` row, or whose project has no ``projects`` row, is refused
with a :class:`ConfigurationError` naming the key to add. Activity, time code and time article
are required by Blikk: project row first, then ``defaults``; with neither, the entry is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clockify_relay.connectors.config_values import id_rows, table, whole_number
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import KnownKeys, Secret

DEFAULT_BASE_URL = "https://publicapi.blikk.com"
DEFAULT_TIMEOUT = 15.0
DEFAULT_RATE = 4.0
SECTION = "targets.blikk"
PROJECT_KINDS = ("project_id", "internal_project_id", "absence_project_id")
REFERENCE_KEYS = ("activity_id", "time_code_id", "time_article_id")

_PROJECT_ROW = KnownKeys.of(*PROJECT_KINDS, *REFERENCE_KEYS, "name")
# Every key parse_config reads (settings.py refuses others, naming the nearest of these).
KNOWN_KEYS = KnownKeys.of(
    "app_id",
    "app_secret",
    "base_url",
    "timeout",
    "rate_per_second",
    "rate_padding_ms",
    "rate_max_wait",
    "token_refresh_margin",
    "invoiceable_when_not_billable",
    defaults=_PROJECT_ROW,
    users=KnownKeys.of(rows=KnownKeys.of("user_id")),
    projects=KnownKeys.of(rows=_PROJECT_ROW),
    tasks=KnownKeys.of(rows=KnownKeys.of("task_id")),
)


@dataclass(frozen=True)
class ProjectMapping:
    """Where one Clockify project books in Blikk; None fields fall back to the defaults."""

    project_id: int | None = None
    internal_project_id: int | None = None
    absence_project_id: int | None = None
    activity_id: int | None = None
    time_code_id: int | None = None
    time_article_id: int | None = None

    @property
    def has_project(self) -> bool:
        """True when one of the three project kinds is set."""
        return any(getattr(self, kind) is not None for kind in PROJECT_KINDS)


@dataclass(frozen=True)
class BlikkConfig:
    """Everything the Blikk connector reads from its TOML section and the environment."""

    app_id: str = ""
    app_secret: Secret = field(default_factory=lambda: Secret(""), repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = DEFAULT_TIMEOUT
    rate_per_second: float = DEFAULT_RATE
    rate_padding: float = 0.010
    rate_max_wait: float = 30.0
    token_refresh_margin: float = 60.0
    invoiceable_when_not_billable: bool = False
    defaults: ProjectMapping = field(default_factory=ProjectMapping)
    # Clockify user id → Blikk user id.
    users: Mapping[str, int] = field(default_factory=dict)
    # Clockify project id → Blikk project (and optional activity / time code / article).
    projects: Mapping[str, ProjectMapping] = field(default_factory=dict)
    # Clockify task id → Blikk task id.
    tasks: Mapping[str, int] = field(default_factory=dict)

    def require_credentials(self) -> None:
        """Raise :class:`ConfigurationError` unless the app id and secret are both set."""
        pairs = (("BLIKK_APP_ID", bool(self.app_id)), ("BLIKK_APP_SECRET", bool(self.app_secret)))
        missing = [name for name, present in pairs if not present]
        if missing:
            raise ConfigurationError(
                f"Blikk credentials missing: set {' and '.join(missing)} in the environment "
                f"(or app_id / app_secret in [{SECTION}])"
            )


def _float_value(value: object, where: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigurationError(f"{where} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(f"{where} must be a number, got {value!r}") from None
    if number < 0 or (positive and number == 0):
        raise ConfigurationError(f"{where} must be {'positive' if positive else '>= 0'}")
    return number


def _project_mapping(row: object, where: str) -> ProjectMapping:
    if not isinstance(row, Mapping):
        raise ConfigurationError(f"[{where}] must be a table (e.g. project_id = 456)")
    unknown = set(row) - set(PROJECT_KINDS) - set(REFERENCE_KEYS) - {"name"}
    if unknown:
        raise ConfigurationError(f"[{where}] has unknown keys: {', '.join(sorted(unknown))}")
    values = {
        key: whole_number(row[key], f"{where}.{key}")
        for key in (*PROJECT_KINDS, *REFERENCE_KEYS)
        if row.get(key) is not None
    }
    kinds = [kind for kind in PROJECT_KINDS if kind in values]
    if len(kinds) > 1:
        raise ConfigurationError(
            f"[{where}] sets {' and '.join(kinds)}: a Blikk time report belongs to one project"
        )
    return ProjectMapping(**values)


def parse_config(section: Mapping[str, Any]) -> BlikkConfig:
    """Parse ``[targets.blikk]`` (with env values merged in); ConfigurationError when invalid.

    Credentials are not required here so the pure mapping can be used and checked without them;
    the client calls :meth:`BlikkConfig.require_credentials`.
    """
    secret = section.get("app_secret")
    if isinstance(secret, str):
        secret = Secret(secret)
    if secret is not None and not isinstance(secret, Secret):
        raise ConfigurationError(f"[{SECTION}] app_secret must be a string")
    flag = section.get("invoiceable_when_not_billable", False)
    if not isinstance(flag, bool):
        raise ConfigurationError(f"[{SECTION}] invoiceable_when_not_billable must be true or false")
    base_url = str(section.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(f"[{SECTION}] base_url must be an http(s) URL")
    projects = {
        str(pid): _project_mapping(row, f'{SECTION}.projects."{pid}"')
        for pid, row in table(section, "projects", SECTION).items()
    }
    for pid, mapping in projects.items():
        if not mapping.has_project:
            raise ConfigurationError(
                f'[{SECTION}.projects."{pid}"] needs one of {", ".join(PROJECT_KINDS)}'
            )
    return BlikkConfig(
        app_id=str(section.get("app_id") or ""),
        app_secret=secret if isinstance(secret, Secret) else Secret(""),
        base_url=base_url,
        timeout=_float_value(
            section.get("timeout", DEFAULT_TIMEOUT), f"{SECTION}.timeout", positive=True
        ),
        rate_per_second=_float_value(
            section.get("rate_per_second", DEFAULT_RATE),
            f"{SECTION}.rate_per_second",
            positive=True,
        ),
        rate_padding=_float_value(section.get("rate_padding_ms", 10), f"{SECTION}.rate_padding_ms")
        / 1000.0,
        rate_max_wait=_float_value(
            section.get("rate_max_wait", 30), f"{SECTION}.rate_max_wait", positive=True
        ),
        token_refresh_margin=_float_value(
            section.get("token_refresh_margin", 60), f"{SECTION}.token_refresh_margin"
        ),
        invoiceable_when_not_billable=flag,
        defaults=_project_mapping(table(section, "defaults", SECTION), f"{SECTION}.defaults"),
        users=id_rows(section, "users", "user_id", SECTION),
        projects=projects,
        tasks=id_rows(section, "tasks", "task_id", SECTION),
    )
