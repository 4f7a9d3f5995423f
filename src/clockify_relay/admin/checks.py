"""``clockify-relay check``: Redis (reachable, eviction policy, AOF), webhook verification,
each enabled target, worker timing.

Errors make the report not ``ok`` (exit status 1); warnings are worth fixing but leave it ok.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis

from clockify_relay.clockify.token_store import TokenStore
from clockify_relay.connectors import registry
from clockify_relay.errors import ConfigurationError, RelayError
from clockify_relay.pipeline.engine import DeliveryEngine
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.redis_conn import redis_url, replication_status
from clockify_relay.settings import ignored_target_env


@dataclass
class TargetCheck:
    """What ``check`` found out about one enabled target."""

    target: str
    ok: bool
    message: str
    probed: bool = False
    error_kind: str | None = None
    lookups: dict[str, list[dict[str, Any]]] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class CheckReport:
    """Everything ``check`` verified: Redis, webhook verification, each enabled target."""

    redis_at: str
    redis_error: str | None
    webhooks_configured: bool
    webhook_tokens: int
    addon_jwt: bool
    targets: list[TargetCheck]
    # Worth knowing, not wrong (e.g. a target's variables set without its table).
    notes: list[str] = field(default_factory=list)
    # Why a worker would refuse to start with these settings (visibility timeout too short).
    worker_error: str | None = None
    # Where the Redis URL came from: "REDIS_URL", the address file of a local `run`, "default".
    redis_source: str = "default"
    # The server's persistence and eviction settings, when it let us read them.
    redis_config: dict[str, str] | None = None
    # What is wrong with the Redis server's settings (each makes the report not ok).
    redis_problems: list[str] = field(default_factory=list)
    # Wrong, beyond Redis and the targets themselves (no target enabled).
    errors: list[str] = field(default_factory=list)
    # Worth fixing, not fatal (AOF off or fsync everysec, Redis config unreadable).
    warnings: list[str] = field(default_factory=list)
    # Webhook tokens `webhooks register`/`rotate` stored in Redis (hashed), accepted now.
    stored_tokens: int = 0
    # With Sentinel or RELAY_REDIS_MIN_REPLICAS: redis_conn.replication_status (else None).
    replication: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (what was not checked is not counted as wrong)."""
        return (
            self.redis_error is None
            and not self.redis_problems
            and not self.errors
            and self.webhooks_configured
            and (self.replication is None or bool(self.replication.get("ok")))
            and self.worker_error is None
            and all(t.ok for t in self.targets)
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "redis": {
                "ok": self.redis_error is None and not self.redis_problems,
                "at": self.redis_at,
                "source": self.redis_source,
                "error": self.redis_error,
                "config": self.redis_config,
                "problems": self.redis_problems,
            },
            "webhooks": {
                "ok": self.webhooks_configured,
                "tokens": self.webhook_tokens,
                "stored_tokens": self.stored_tokens,
                "addon_jwt": self.addon_jwt,
            },
            "replication": self.replication,
            "targets": [t.to_json() for t in self.targets],
            "worker": {"ok": self.worker_error is None, "error": self.worker_error},
            "errors": self.errors,
            "warnings": self.warnings,
            "notes": self.notes,
        }


def redis_location(url: str) -> str:
    """Where a Redis URL points (host:port/db or a socket path), never its credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or 6379
    except ValueError:
        return parts.hostname or "?"
    return f"{parts.hostname or '?'}:{port}{parts.path}"


# The Redis settings check reads, in CONFIG GET's names.
REDIS_CONFIG_NAMES = ("maxmemory-policy", "appendonly", "appendfsync")

NO_TARGET = (
    "no target enabled: every webhook would be accepted (202) and delivered nowhere; "
    "add a [targets.<name>] table to the config"
)


@dataclass
class RedisSettingsCheck:
    """What the Redis server's own settings mean for the relay's guarantees."""

    config: dict[str, str] | None
    problems: list[str]
    warnings: list[str]


def check_redis_settings(client: redis.Redis) -> RedisSettingsCheck:
    """Eviction must be off (``noeviction``: an evicted dedup key, ID map or queued message
    breaks the guarantees, an error); AOF should be on with ``appendfsync always`` (a 202
    then means on disk; warnings otherwise). A server that refuses CONFIG GET (managed Redis
    often renames or forbids it) is a warning, not a failure of the check."""
    config: dict[str, str] = {}
    try:
        for name in REDIS_CONFIG_NAMES:
            for key, value in client.config_get(name).items():
                config[_text(key)] = _text(value)
    except redis.ResponseError as exc:
        # NOPERM or an unknown (renamed) command; its text names no secret.
        reason = str(exc).split("\n", 1)[0][:120]
        return RedisSettingsCheck(
            None,
            [],
            [
                f"could not read Redis config (CONFIG GET refused: {reason}); make sure the "
                "server runs with maxmemory-policy noeviction, appendonly yes and appendfsync "
                "always"
            ],
        )
    problems: list[str] = []
    warnings: list[str] = []
    missing = [name for name in REDIS_CONFIG_NAMES if name not in config]
    if missing:
        warnings.append(
            f"could not read Redis config ({', '.join(missing)} not reported); make sure the "
            "server runs with maxmemory-policy noeviction, appendonly yes and appendfsync always"
        )
    policy = config.get("maxmemory-policy")
    if policy is not None and policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}: when full, Redis would evict queued messages, dedup "
            "keys and the ID map (lost or doubled deliveries); set maxmemory-policy noeviction"
        )
    appendonly = config.get("appendonly")
    if appendonly is not None and appendonly != "yes":
        warnings.append(
            f"AOF is off (appendonly {appendonly}): a Redis restart loses what was accepted "
            "since the last snapshot; set appendonly yes and appendfsync always"
        )
    elif appendonly == "yes" and config.get("appendfsync") not in (None, "always"):
        fsync = config["appendfsync"]
        lost = "up to 1 s" if fsync == "everysec" else "what the OS has not written yet"
        warnings.append(
            f"appendfsync is {fsync}: {lost} of accepted webhooks is lost if the Redis host "
            "crashes; set appendfsync always for a 202 to mean on disk"
        )
    return RedisSettingsCheck(config, problems, warnings)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check(
    rt: Runtime,
    *,
    probe: bool = False,
    lookups: bool = False,
    env: Mapping[str, str] | None = None,
    redis_source: str = "default",
) -> CheckReport:
    """Validate the configuration; with ``probe`` call each enabled target, with ``lookups``
    list the registries of the targets that have them (Blikk's). ``env`` is the environment
    the settings were read from (default: this process's).

    Redis comes first: without it nothing can be queued or delivered, and deliveries depend on it
    (locks, ID map, Blikk's token cache and pacing), so targets are then neither probed nor
    listed: a probe could not show that a target works for the relay.
    """
    from clockify_relay.clockify.verify import WebhookVerifier

    settings = rt.settings
    redis_error: str | None = None
    redis_settings = RedisSettingsCheck(None, [], [])
    stored_tokens = 0
    try:
        rt.redis.ping()
        redis_settings = check_redis_settings(rt.redis)
        stored_tokens = len(TokenStore(rt.redis, settings.key_prefix).tokens())
    except (redis.RedisError, OSError) as exc:
        # The class name only: a connection error's text can carry the URL (and password).
        redis_error = type(exc).__name__
    verifier = WebhookVerifier(settings)
    results: list[TargetCheck] = []
    for target in rt.enabled_targets():
        results.append(_check_target(rt, target, redis_error is None, probe, lookups))
    worker_error: str | None = None
    if all(result.ok for result in results):  # each target's connector can be built
        try:
            rt.check_timing()
        except ConfigurationError as exc:
            worker_error = exc.message
    replication = None
    if settings.uses_sentinel or settings.redis_min_replicas > 0:
        replication = replication_status(settings)
    return CheckReport(
        redis_at=redis_location(redis_url(settings)),
        redis_error=redis_error,
        webhooks_configured=verifier.configured or stored_tokens > 0,
        webhook_tokens=len(settings.webhook_tokens),
        addon_jwt=verifier.addon_enabled,
        targets=results,
        notes=ignored_target_env(os.environ if env is None else env, settings),
        worker_error=worker_error,
        redis_source=redis_source,
        redis_config=redis_settings.config,
        redis_problems=redis_settings.problems,
        # An error, not a warning: the receiver would answer 202 to every webhook and route
        # would fan each one out to nothing, so events are dropped while Clockify sees success.
        errors=[] if results else [NO_TARGET],
        warnings=redis_settings.warnings,
        stored_tokens=stored_tokens,
        replication=replication,
    )


def _check_target(
    rt: Runtime, target: str, redis_up: bool, probe: bool, lookups: bool
) -> TargetCheck:
    try:
        deliverer = rt.engine(target)  # validates the target's configuration
        if not (probe or lookups):
            return TargetCheck(target, True, "configuration ok")
        if not redis_up:
            return TargetCheck(target, True, "configuration ok; not probed: Redis is unreachable")
        connector = deliverer.connector if isinstance(deliverer, DeliveryEngine) else deliverer
        message = connector.probe() if probe else "configuration ok"
        found = None
        spec = registry.spec(target)
        if lookups and spec.lookups and isinstance(deliverer, DeliveryEngine):
            found = spec.load(spec.lookups)(deliverer.connector)
    except RelayError as exc:
        return TargetCheck(target, False, exc.message, probed=probe, error_kind=exc.kind)
    return TargetCheck(target, True, message, probed=probe, lookups=found)
