"""Settings: read once from the environment (secrets, endpoints) and one TOML file (mappings).

Environment variables hold what differs per deployment and what is secret; the TOML file named
by ``RELAY_CONFIG`` (or ``--config``) holds mappings and rules. ``load_settings()`` is the only
place that reads either; everything else receives a :class:`Settings`.

Every key is documented in README.md ("Configuration").
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clockify_relay.connectors import registry
from clockify_relay.errors import ConfigurationError

BUNDLED_ADDON_PUBLIC_KEY = Path(__file__).parent / "clockify" / "clockify-addon-public-key.pem"


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

    # Worker.
    visibility_timeout: int = 600
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    # Outbox sweeper (pipeline/outbox.py): seconds a message may sit between leaving the queue
    # and reaching a worker before it counts as lost, and how often a message may be queued
    # again (lost, or failing for other reasons than Redis) before it is dead-lettered.
    lost_after: float = 30.0
    max_resends: int = 5

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


def _target_sections(
    doc: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
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


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigurationError(f"config file {path} does not exist") from None
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
    env: Mapping[str, str] | None = None, config_path: str | Path | None = None
) -> Settings:
    """Read the environment and the TOML config file into a :class:`Settings`."""
    env = os.environ if env is None else env
    path_value = config_path or env.get("RELAY_CONFIG") or None
    path = Path(path_value) if path_value else None
    doc: dict[str, Any] = _read_toml(path) if path else {}

    targets = _target_sections(doc, env)

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
    return Settings(
        redis_url=env.get("REDIS_URL") or None,
        key_prefix=env.get("RELAY_KEY_PREFIX") or "relay:",
        redis_timeout=_float(env, "RELAY_REDIS_TIMEOUT", 1.0),
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
        lost_after=_float(env, "RELAY_LOST_AFTER", 30.0),
        max_resends=_int(env, "RELAY_MAX_RESENDS", 5),
        retry=_retry_policy(doc.get("retry", {})),
        admin_jwt_secret=Secret(admin_secret) if admin_secret else None,
        clockify_api_key=Secret(api_key) if api_key else None,
        clockify_api_url=env.get("CLOCKIFY_API_URL") or "https://api.clockify.me/api",
        clockify_rate_per_second=_float(env, "CLOCKIFY_API_RATE", 10.0),
        default_timezone=str(doc.get("defaults", {}).get("timezone", "UTC")),
        targets=targets,
        raw=doc,
    )
