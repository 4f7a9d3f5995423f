"""``clockify-relay check``: Redis, webhook verification, each enabled target, worker timing."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis

from clockify_relay.connectors import registry
from clockify_relay.errors import ConfigurationError, RelayError
from clockify_relay.pipeline.engine import DeliveryEngine
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.redis_conn import redis_url
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

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (what was not checked is not counted as wrong)."""
        return (
            self.redis_error is None
            and self.webhooks_configured
            and self.worker_error is None
            and all(t.ok for t in self.targets)
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "redis": {
                "ok": self.redis_error is None,
                "at": self.redis_at,
                "error": self.redis_error,
            },
            "webhooks": {
                "ok": self.webhooks_configured,
                "tokens": self.webhook_tokens,
                "addon_jwt": self.addon_jwt,
            },
            "targets": [t.to_json() for t in self.targets],
            "worker": {"ok": self.worker_error is None, "error": self.worker_error},
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


def check(
    rt: Runtime,
    *,
    probe: bool = False,
    lookups: bool = False,
    env: Mapping[str, str] | None = None,
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
    try:
        rt.redis.ping()
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
    return CheckReport(
        redis_at=redis_location(redis_url(settings)),
        redis_error=redis_error,
        webhooks_configured=verifier.configured,
        webhook_tokens=len(settings.webhook_tokens),
        addon_jwt=verifier.addon_enabled,
        targets=results,
        notes=ignored_target_env(os.environ if env is None else env, settings),
        worker_error=worker_error,
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
