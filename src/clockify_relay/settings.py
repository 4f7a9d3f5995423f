"""Settings: read once from the environment (secrets, endpoints) and one TOML file (mappings).

Environment variables hold what differs per deployment and what is secret; the TOML file named
by ``RELAY_CONFIG`` (or ``--config``) holds mappings and rules. ``load_settings()`` is the only
place that reads either; everything else receives a :class:`Settings`.

Every key is documented in README.md ("Configuration"). Nothing unknown is let through: a key
or table the relay does not read is refused with its path and the nearest valid name, and
``load_settings`` reports every problem it finds at once (:class:`SettingsError`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clockify_relay.connectors import registry
from clockify_relay.errors import ConfigurationError

BUNDLED_ADDON_PUBLIC_KEY = Path(__file__).parent / "clockify" / "clockify-addon-public-key.pem"
# The file a worker's main process touches from its event loop (pipeline/heartbeat.py); the
# liveness probe `clockify-relay worker-alive` reads its age.
DEFAULT_HEARTBEAT_FILE = Path("/tmp/clockify-relay-worker.heartbeat")  # noqa: S108


class Secret:
    """A string that never shows itself in ``repr``/``str``, so it cannot leak into logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that must send or compare it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class AcceptedToken:
    """A webhook token Clockify may send; ``event_type`` None means any event type."""

    token: Secret
    event_type: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried (exponential backoff with full jitter)."""

    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 3600.0
    # Celery countdowns stay at or below this; longer waits are parked in Redis
    # (docs/ARCHITECTURE.md §3).
    max_countdown: float = 60.0


@dataclass(frozen=True)
class Settings:
    """Everything the relay reads from its environment and config file."""

    redis_url: str | None = None
    key_prefix: str = "relay:"
    redis_timeout: float = 1.0
    # Redis Sentinel (README "Redis high availability"): when ``redis_sentinels`` is set, every
    # client finds the master ``redis_sentinel_master`` through them; REDIS_URL then gives only
    # the database number and the data nodes' user and password.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str | None = None
    redis_sentinel_password: Secret | None = None
    # WAIT after ingest: a 202 only once this many replicas acknowledged the writes (0 = off),
    # waiting at most ``redis_wait_timeout_ms``.
    redis_min_replicas: int = 0
    redis_wait_timeout_ms: int = 500
    config_path: Path | None = None

    # Webhook verification (docs/ARCHITECTURE.md §2).
    webhook_tokens: tuple[AcceptedToken, ...] = ()
    addon_key: str | None = None
    addon_public_key_pem: str | None = None
    workspace_ids: frozenset[str] = frozenset()

    # Ingest.
    dedup_window: int = 24 * 3600
    max_body_bytes: int = 1024 * 1024

    # Retention.
    trace_ttl: int = 14 * 24 * 3600
    state_ttl: int = 400 * 24 * 3600

    log_level: str = "info"
    # "json" or "text"; None: text when stderr is a terminal, else JSON (logs.py).
    log_format: str | None = None

    # Worker.
    visibility_timeout: int = 600
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    heartbeat_file: Path = DEFAULT_HEARTBEAT_FILE
    # Seconds a worker told to stop (SIGTERM) lets running tasks finish before it cancels them
    # and hands their messages back to the queue (Celery's soft shutdown).
    soft_shutdown_timeout: float = 30.0

    # Outbox sweeper (pipeline/outbox.py): seconds a message may sit between leaving the queue
    # and reaching a worker before it counts as lost, and how often a message may be queued
    # again (lost, or failing for other reasons than Redis) before it is dead-lettered.
    lost_after: float = 30.0
    max_resends: int = 5

    # Circuit breaker (pipeline/control.py): a target is paused automatically after this many
    # consecutive transient failures (0 = never), and probed again after the cooldown.
    breaker_failures: int = 10
    breaker_cooldown: float = 60.0

    # Admin API.
    admin_jwt_secret: Secret | None = None

    # Clockify REST re-read (docs/ARCHITECTURE.md §3 rule 5).
    clockify_api_key: Secret | None = None
    clockify_api_url: str = "https://api.clockify.me/api"
    clockify_rate_per_second: float = 10.0  # X-Api-Key: 50/s is documented for add-ons only

    # Time semantics.
    default_timezone: str = "UTC"

    # Per-target sections of the TOML file ([targets.<name>]) with secrets merged in from the
    # environment; each connector parses its own section.
    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The whole TOML document, for sections other modules own (e.g. [users], [projects]).
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uses_sentinel(self) -> bool:
        """Every Redis client goes through Sentinel (REDIS_SENTINELS is set)."""
        return bool(self.redis_sentinels)

    @property
    def stale_after(self) -> float:
        """Seconds after a worker received a message when, still not done, it is queued again:
        well past the visibility timeout, after which kombu itself restores it."""
        return 2.0 * self.visibility_timeout + 60.0

    @property
    def addon_verification_enabled(self) -> bool:
        """Add-on JWTs are verified only when the operator names the add-on key (``sub``)."""
        return bool(self.addon_key)

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (tests, the ``run --sandbox`` mode)."""
        return replace(self, **changes)


class SettingsError(ConfigurationError):
    """The configuration has problems; ``problems`` lists every one, each naming its key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        message = (
            self.problems[0]
            if len(self.problems) == 1
            else f"{len(self.problems)} problems:\n" + "\n".join(f"  {p}" for p in self.problems)
        )
        super().__init__(message)


@dataclass(frozen=True)
class KnownKeys:
    """The keys a TOML table may hold, so that a misspelt one is refused, not ignored.

    ``keys`` hold values; ``tables`` are sub-tables by name; with ``rows`` set, every other key
    is an id (a Clockify user, project, …) whose value is a plain value or a table of the keys
    ``rows`` knows (``[targets.everit.users."<id>"] account_id``); ``arrays`` are arrays of
    tables by name, each table of the keys it knows (``[[targets.mail.rules]] subject``).
    """

    keys: frozenset[str] = frozenset()
    tables: Mapping[str, KnownKeys] = field(default_factory=dict)
    rows: KnownKeys | None = None
    arrays: Mapping[str, KnownKeys] = field(default_factory=dict)

    @classmethod
    def of(cls, *keys: str, rows: KnownKeys | None = None, **tables: KnownKeys) -> KnownKeys:
        """``KnownKeys.of("timeout", defaults=KnownKeys.of("issue_id"))``."""
        return cls(frozenset(keys), tables, rows)

    def merged(self, other: KnownKeys) -> KnownKeys:
        """The keys of both tables."""
        return KnownKeys(
            self.keys | other.keys,
            {**self.tables, **other.tables},
            other.rows or self.rows,
            {**self.arrays, **other.arrays},
        )


# The keys every [targets.<name>] table may have, whatever the target (TargetSection, and
# reconcile_margin: connectors/base.py).
TARGET_KEYS = KnownKeys.of(
    "enabled", "reread", "book_breaks", "only_projects", "skip_projects", "reconcile_margin"
)
RELAY_KEYS = ("dedup_window", "max_body_bytes", "trace_ttl", "state_ttl", "visibility_timeout")
# Environment variables read as numbers (checked up front, so every bad one is reported).
NUMBER_ENV = {
    "RELAY_REDIS_TIMEOUT": float,
    "RELAY_DEDUP_WINDOW": int,
    "RELAY_MAX_BODY_BYTES": int,
    "RELAY_TRACE_TTL": int,
    "RELAY_STATE_TTL": int,
    "RELAY_VISIBILITY_TIMEOUT": int,
    "RELAY_LOST_AFTER": float,
    "RELAY_MAX_RESENDS": int,
    "RELAY_BREAKER_FAILURES": int,
    "RELAY_BREAKER_COOLDOWN": float,
    "RELAY_SOFT_SHUTDOWN_TIMEOUT": float,
    "CLOCKIFY_API_RATE": float,
}


def known_document() -> KnownKeys:
    """Every table and key of the TOML file: the relay's own, and per registered target the
    generic keys, those its environment variables set and those its config.py declares."""
    targets = {
        spec.name: TARGET_KEYS.merged(KnownKeys.of(*(var.key for var in spec.env))).merged(
            spec.known_keys()
        )
        for spec in registry.specs()
    }
    return KnownKeys.of(
        relay=KnownKeys.of(*RELAY_KEYS),
        retry=KnownKeys.of("max_attempts", "base_delay", "max_delay", "max_countdown"),
        defaults=KnownKeys.of("timezone"),
        users=KnownKeys.of(rows=KnownKeys.of("timezone")),
        targets=KnownKeys(tables=targets),
    )


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _table_name(path: Sequence[str]) -> str:
    """``[targets.everit.users."<id>"]`` for a path of keys."""
    names = (k if _BARE_KEY.fullmatch(k) or k.startswith('"') else json.dumps(k) for k in path)
    return "[" + ".".join(names) + "]"


def _shown(value: object) -> str:
    """A value as TOML writes it (``"false"`` is a string, ``false`` a boolean)."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return type(value).__name__


def _unknown(path: Sequence[str], key: str, value: object, known: KnownKeys) -> str:
    is_table = isinstance(value, Mapping)
    what = "target" if tuple(path) == ("targets",) else "table" if is_table else "key"
    if is_table:
        where = _table_name([*path, key])
    elif path:
        where = f"{_table_name(path)} {key}"
    else:
        where, what = key, "key at the top of the file"

    def name(candidate: str) -> str:
        return _table_name([*path, candidate]) if candidate in known.tables else candidate

    candidates = sorted(known.keys | set(known.tables) | set(known.arrays))
    nearest = difflib.get_close_matches(key, candidates, n=1)
    if nearest:
        hint = f"did you mean {name(nearest[0])}?"
    elif candidates:
        hint = "known here: " + ", ".join(name(c) for c in candidates)
    else:
        hint = "this table takes none"
    return f"{where}: unknown {what}; {hint}"


def unknown_keys(table: Mapping[str, Any], known: KnownKeys, path: Sequence[str] = ()) -> list[str]:
    """Every key of ``table`` (and its sub-tables) that ``known`` does not know, each with its
    path and the nearest valid name; and known tables given as plain values."""
    problems: list[str] = []
    for key, value in table.items():
        where = [*path, str(key)]
        if key in known.tables:
            if isinstance(value, Mapping):
                problems += unknown_keys(value, known.tables[key], where)
            else:
                problems.append(f"{_table_name(where)}: must be a table, got {_shown(value)}")
        elif key in known.keys:
            continue  # its value is checked by whoever reads it
        elif key in known.arrays:
            problems += _array_problems(value, known.arrays[key], where)
        elif known.rows is not None:
            if isinstance(value, Mapping):  # an id's row: quoted, as README writes ids
                problems += unknown_keys(value, known.rows, [*path, json.dumps(str(key))])
        else:
            problems.append(_unknown(path, str(key), value, known))
    return problems


def _array_problems(value: object, known: KnownKeys, path: Sequence[str]) -> list[str]:
    """The unknown keys of each table of an array of tables, named ``[[a.b]] #2``."""
    table = _table_name(path)
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        return [f"{table}: must be an array of tables ([[{table[1:-1]}]]), got {_shown(value)}"]
    problems: list[str] = []
    for number, item in enumerate(value, 1):
        for problem in unknown_keys(item, known, path):
            problems.append(f"[{table}] #{number}" + problem.removeprefix(table))
    return problems


@dataclass(frozen=True)
class TargetSection:
    """The keys every ``[targets.<name>]`` table may set, whatever the target."""

    enabled: bool = True  # false: route() skips the target
    reread: bool = True  # re-read entries from Clockify when CLOCKIFY_API_KEY is set
    book_breaks: bool = False  # BREAK entries are booked
    only_projects: frozenset[str] | None = None  # None: every project
    skip_projects: frozenset[str] = frozenset()


def _flag(section: Mapping[str, Any], key: str, default: bool, problems: list[str]) -> bool:
    value = section.get(key, default)
    if isinstance(value, bool):
        return value
    quoted = " (a string: write it without quotes)" if value in ("true", "false") else ""
    problems.append(f"{key}: must be true or false, got {_shown(value)}{quoted}")
    return default


def _project_ids(
    section: Mapping[str, Any], key: str, problems: list[str]
) -> frozenset[str] | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return frozenset(value)
    problems.append(
        f'{key}: must be a list of Clockify project ids (["<id>", …]), got {_shown(value)}'
    )
    return None


def _target_section(name: str, section: Mapping[str, Any], problems: list[str]) -> TargetSection:
    found: list[str] = []
    parsed = TargetSection(
        enabled=_flag(section, "enabled", True, found),
        reread=_flag(section, "reread", True, found),
        book_breaks=_flag(section, "book_breaks", False, found),
        only_projects=_project_ids(section, "only_projects", found),
        skip_projects=_project_ids(section, "skip_projects", found) or frozenset(),
    )
    problems += [f"[targets.{name}] {problem}" for problem in found]
    return parsed


def target_section(name: str, section: Mapping[str, Any]) -> TargetSection:
    """The generic keys of ``[targets.<name>]``, typed; :class:`SettingsError` when invalid."""
    problems: list[str] = []
    parsed = _target_section(name, section, problems)
    if problems:
        raise SettingsError(problems)
    return parsed


def _relay_number(relay: Mapping[str, Any], key: str, problems: list[str]) -> None:
    value = relay.get(key)
    if value is None:
        return
    try:
        if isinstance(value, bool):
            raise ValueError
        int(value)
    except (TypeError, ValueError):
        problems.append(f"[relay] {key}: must be a whole number, got {_shown(value)}")


def _problems(doc: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """Everything wrong with the TOML document and the environment: unknown keys and tables
    first, then values."""
    problems = unknown_keys(doc, known_document())
    targets = doc.get("targets", {})
    for spec in registry.specs():
        section = targets.get(spec.name) if isinstance(targets, Mapping) else None
        if isinstance(section, Mapping):
            _target_section(spec.name, section, problems)
    relay = doc.get("relay", {})
    for key in RELAY_KEYS:
        if isinstance(relay, Mapping):
            _relay_number(relay, key, problems)
    retry = doc.get("retry", {})
    if isinstance(retry, Mapping):
        try:
            _retry_policy(retry)
        except ConfigurationError as exc:
            problems.append(exc.message)
    for name, kind in NUMBER_ENV.items():
        try:
            (_int if kind is int else _float)(env, name, 0)
        except ConfigurationError as exc:
            problems.append(exc.message)
    problems += _log_problems(env)
    return problems


LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _log_problems(env: Mapping[str, str]) -> list[str]:
    """RELAY_LOG_FORMAT and RELAY_LOG_LEVEL, when set, must name a known value."""
    problems = []
    log_format = (env.get("RELAY_LOG_FORMAT") or "").strip().lower()
    if log_format and log_format not in LOG_FORMATS:
        problems.append(f"RELAY_LOG_FORMAT must be json or text, not {log_format!r}")
    level = (env.get("RELAY_LOG_LEVEL") or "").strip().lower()
    if level and level not in LOG_LEVELS:
        problems.append(f"RELAY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    return problems


def _target_sections(doc: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``[targets.<name>]`` of every registered target that has one, with the environment
    variables its spec declares (connectors/<target>/__init__.py) merged in and its secrets
    wrapped. A target without a table stays off whatever its variables say."""
    tables = doc.get("targets", {})
    targets: dict[str, dict[str, Any]] = {}
    for spec in registry.specs():
        if not isinstance(tables.get(spec.name), Mapping):
            continue
        section = dict(tables[spec.name])
        for var in spec.env:
            if env.get(var.name):
                section[var.key] = env[var.name]
        for key in spec.secret_keys & section.keys():
            if isinstance(section[key], str):
                section[key] = Secret(section[key])
        targets[spec.name] = section
    return targets


def ignored_target_env(env: Mapping[str, str], settings: Settings) -> list[str]:
    """Target environment variables that are set for a target without a ``[targets.<name>]``
    table (so they do nothing), for ``clockify-relay check`` to point out."""
    return [
        f"{var.name} is set but there is no [targets.{spec.name}] table: {spec.name} is off"
        for spec in registry.specs()
        if spec.name not in settings.targets
        for var in spec.env
        if env.get(var.name)
    ]


def parse_tokens(raw: str) -> tuple[AcceptedToken, ...]:
    """Parse ``CLOCKIFY_WEBHOOK_TOKENS``: comma separated ``token`` or ``EVENT_TYPE=token``."""
    tokens: list[AcceptedToken] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        event_type, sep, token = item.partition("=")
        # A bare token may itself contain '=' (base64 padding): only an upper-case event type
        # name before the first '=' binds it.
        if sep and event_type.isupper() and event_type.replace("_", "").isalpha() and token:
            tokens.append(AcceptedToken(Secret(token.strip()), event_type.strip()))
        else:
            tokens.append(AcceptedToken(Secret(item)))
    return tuple(tokens)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {value!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None


def parse_sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    """Parse ``REDIS_SENTINELS``: comma separated ``host:port`` (an IPv6 host in brackets,
    ``[::1]:26379``); ConfigurationError naming the item that is not one."""
    sentinels: list[tuple[str, int]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, sep, port_text = item.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            host = ""  # an IPv6 address without brackets: its port cannot be told apart
        port = int(port_text) if port_text.isdigit() else 0
        if not sep or not host or any(c in host for c in "/@ ") or not 0 < port < 65536:
            raise ConfigurationError(
                f"REDIS_SENTINELS: {item!r} is not host:port (e.g. 10.0.0.5:26379,"
                " [fd00::5]:26379); separate sentinels with commas"
            )
        sentinels.append((host, port))
    return tuple(sentinels)


def _redis_ha(env: Mapping[str, str], redis_timeout: float) -> dict[str, Any]:
    """The Sentinel and WAIT settings, checked together (ConfigurationError)."""
    sentinels = parse_sentinels(env.get("REDIS_SENTINELS", ""))
    master = (env.get("REDIS_SENTINEL_MASTER") or "").strip() or None
    if sentinels and not master:
        raise ConfigurationError(
            "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: name the master the"
            " sentinels monitor (their `sentinel monitor <name> …` line)"
        )
    if master and not sentinels:
        raise ConfigurationError(
            "REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not: list the sentinels as"
            " host:port, comma separated"
        )
    url = env.get("REDIS_URL") or ""
    if sentinels and url and not url.startswith("redis://"):
        # Its host and port are not used; a TLS (rediss://) or socket URL would silently lose
        # what it asks for.
        raise ConfigurationError(
            "with REDIS_SENTINELS, REDIS_URL must be a redis:// URL (only its database number,"
            f" user and password are used); got scheme {url.partition(':')[0]!r}"
        )
    password = env.get("REDIS_SENTINEL_PASSWORD")
    min_replicas = _int(env, "RELAY_REDIS_MIN_REPLICAS", 0)
    wait_ms = _int(env, "RELAY_REDIS_WAIT_TIMEOUT_MS", 500)
    if min_replicas < 0:
        raise ConfigurationError(f"RELAY_REDIS_MIN_REPLICAS must be 0 or more, got {min_replicas}")
    if wait_ms < 1:
        # WAIT with timeout 0 blocks for ever.
        raise ConfigurationError(f"RELAY_REDIS_WAIT_TIMEOUT_MS must be 1 or more, got {wait_ms}")
    if min_replicas and wait_ms >= redis_timeout * 1000:
        raise ConfigurationError(
            f"RELAY_REDIS_WAIT_TIMEOUT_MS ({wait_ms}) must be below RELAY_REDIS_TIMEOUT"
            f" ({redis_timeout:g} s): the receiver's read would time out before WAIT answers"
        )
    return {
        "redis_sentinels": sentinels,
        "redis_sentinel_master": master,
        "redis_sentinel_password": Secret(password) if password else None,
        "redis_min_replicas": min_replicas,
        "redis_wait_timeout_ms": wait_ms,
    }


def heartbeat_file(env: Mapping[str, str]) -> Path:
    """``RELAY_HEARTBEAT_FILE``, else the default; read alone by the liveness probe, which must
    not depend on the rest of the configuration."""
    return Path(env.get("RELAY_HEARTBEAT_FILE") or DEFAULT_HEARTBEAT_FILE)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigurationError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigurationError(f"config file {path} is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigurationError(f"config file {path} cannot be read: permission denied") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(f"config file {path} cannot be read: {reason}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"config file {path} is not valid TOML: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from None


def _retry_policy(section: Mapping[str, Any]) -> RetryPolicy:
    defaults = RetryPolicy()
    try:
        return RetryPolicy(
            max_attempts=int(section.get("max_attempts", defaults.max_attempts)),
            base_delay=float(section.get("base_delay", defaults.base_delay)),
            max_delay=float(section.get("max_delay", defaults.max_delay)),
            max_countdown=float(section.get("max_countdown", defaults.max_countdown)),
        )
    except (TypeError, ValueError):
        raise ConfigurationError("[retry] values must be numbers") from None


def load_settings(
    env: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
    *,
    delivering: bool = True,
) -> Settings:
    """Read the environment and the TOML config file into a :class:`Settings`.

    ``delivering`` false: for a process that never delivers (the receiver, operator commands),
    which does not get the targets' credentials, so the values only a target's own config.py
    judges (SMTP_URL set, mail rules) are left to the processes that deliver; unknown keys
    and malformed values of the relay's own are refused all the same."""
    env = os.environ if env is None else env
    path_value = config_path or env.get("RELAY_CONFIG") or None
    path = Path(path_value) if path_value else None
    doc: dict[str, Any] = _read_toml(path) if path else {}
    problems = _problems(doc, env)
    if problems:
        raise SettingsError(problems)

    targets = _target_sections(doc, env)
    # Values only a target's own config.py can judge (mail rules and their templates, SMTP_URL):
    # refused now, at load, not when the first event needs them.
    problems = [
        problem
        for spec in registry.specs()
        if delivering and spec.name in targets
        for problem in spec.section_problems(targets[spec.name], targets)
    ]
    if problems:
        raise SettingsError(problems)

    public_key: str | None = None
    key_file = env.get("CLOCKIFY_ADDON_PUBLIC_KEY_FILE")
    if env.get("CLOCKIFY_ADDON_PUBLIC_KEY"):
        public_key = env["CLOCKIFY_ADDON_PUBLIC_KEY"]
    elif key_file:
        try:
            public_key = Path(key_file).read_text()
        except OSError as exc:
            raise ConfigurationError(f"cannot read CLOCKIFY_ADDON_PUBLIC_KEY_FILE: {exc}") from None
    elif env.get("CLOCKIFY_ADDON_KEY"):
        public_key = BUNDLED_ADDON_PUBLIC_KEY.read_text()

    relay = doc.get("relay", {})
    api_key = env.get("CLOCKIFY_API_KEY")
    admin_secret = env.get("RELAY_ADMIN_JWT_SECRET")
    redis_timeout = _float(env, "RELAY_REDIS_TIMEOUT", 1.0)
    return Settings(
        redis_url=env.get("REDIS_URL") or None,
        key_prefix=env.get("RELAY_KEY_PREFIX") or "relay:",
        redis_timeout=redis_timeout,
        **_redis_ha(env, redis_timeout),
        config_path=path,
        webhook_tokens=parse_tokens(env.get("CLOCKIFY_WEBHOOK_TOKENS", "")),
        addon_key=env.get("CLOCKIFY_ADDON_KEY") or None,
        addon_public_key_pem=public_key,
        workspace_ids=frozenset(
            w.strip() for w in env.get("CLOCKIFY_WORKSPACE_IDS", "").split(",") if w.strip()
        ),
        dedup_window=_int(env, "RELAY_DEDUP_WINDOW", int(relay.get("dedup_window", 86400))),
        max_body_bytes=_int(env, "RELAY_MAX_BODY_BYTES", int(relay.get("max_body_bytes", 1 << 20))),
        trace_ttl=_int(env, "RELAY_TRACE_TTL", int(relay.get("trace_ttl", 14 * 86400))),
        state_ttl=_int(env, "RELAY_STATE_TTL", int(relay.get("state_ttl", 400 * 86400))),
        visibility_timeout=_int(
            env, "RELAY_VISIBILITY_TIMEOUT", int(relay.get("visibility_timeout", 600))
        ),
        log_level=env.get("RELAY_LOG_LEVEL") or "info",
        log_format=(env.get("RELAY_LOG_FORMAT") or "").strip().lower() or None,
        lost_after=_float(env, "RELAY_LOST_AFTER", 30.0),
        max_resends=_int(env, "RELAY_MAX_RESENDS", 5),
        breaker_failures=_int(env, "RELAY_BREAKER_FAILURES", 10),
        breaker_cooldown=_float(env, "RELAY_BREAKER_COOLDOWN", 60.0),
        heartbeat_file=heartbeat_file(env),
        soft_shutdown_timeout=_float(env, "RELAY_SOFT_SHUTDOWN_TIMEOUT", 30.0),
        retry=_retry_policy(doc.get("retry", {})),
        admin_jwt_secret=Secret(admin_secret) if admin_secret else None,
        clockify_api_key=Secret(api_key) if api_key else None,
        clockify_api_url=env.get("CLOCKIFY_API_URL") or "https://api.clockify.me/api",
        clockify_rate_per_second=_float(env, "CLOCKIFY_API_RATE", 10.0),
        default_timezone=str(doc.get("defaults", {}).get("timezone", "UTC")),
        targets=targets,
        raw=doc,
    )
