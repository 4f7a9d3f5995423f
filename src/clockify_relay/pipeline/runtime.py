"""Per-process state of a worker (or CLI): settings, Redis, connectors — made once, lazily.

Per target one deliverer: a DeliveryEngine over the target's Connector (a booking target), or
the target's own EventHandler (an event target, e.g. mail; connectors/spec.py) — or both, when a
booking target also handles other events (Organi's approvals): ``engine(target, event_type)``
picks."""

from __future__ import annotations

from functools import cached_property

import redis

from clockify_relay.connectors import registry
from clockify_relay.connectors.base import Connector
from clockify_relay.errors import ConfigurationError
from clockify_relay.pipeline.control import Control
from clockify_relay.pipeline.dlq import DeadLetterQueue
from clockify_relay.pipeline.engine import DeliveryEngine, EventHandler
from clockify_relay.pipeline.outbox import Outbox
from clockify_relay.redis_conn import Keys, sync_client
from clockify_relay.settings import Settings, load_settings, target_section

# A Clockify re-read: a rate-limit wait (at most 30 s) and one request (15 s).
CLOCKIFY_CALL_BUDGET = 45.0
LOCK_MARGIN = 5.0


class Runtime:
    """What a process's deliveries share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._engines: dict[str, DeliveryEngine | EventHandler] = {}
        self._handlers: dict[str, EventHandler] = {}

    @cached_property
    def redis(self) -> redis.Redis:
        return sync_client(self.settings)

    @cached_property
    def dlq(self) -> DeadLetterQueue:
        return DeadLetterQueue(self.redis, self.keys)

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.redis, self.keys)

    @cached_property
    def control(self) -> Control:
        return Control(self.redis, self.keys, self.settings, self.outbox)

    def enabled_targets(self, event_type: str | None = None) -> list[str]:
        """Targets with a [targets.<name>] table that is not ``enabled = false``, in registry
        order; with ``event_type``, only those that handle it (their spec's ``events``)."""
        return [
            spec.name
            for spec in registry.specs()
            if spec.name in self.settings.targets
            and target_section(spec.name, self.settings.targets[spec.name]).enabled
            and (event_type is None or event_type in spec.events)
        ]

    def connector(self, target: str) -> Connector:
        """The Connector of a booking target (ConfigurationError for an event target)."""
        engine = self.engine(target)
        if not isinstance(engine, DeliveryEngine):
            raise ConfigurationError(f"{target} is an event target: it has no connector")
        return engine.connector

    def engine(self, target: str, event_type: str | None = None) -> DeliveryEngine | EventHandler:
        """What delivers to one target, built on first use: the DeliveryEngine over its
        connector, or an event target's handler; with ``event_type``, the target's handler when
        it takes that type beside a connector (connectors/spec.py ``handles``)."""
        spec = registry.spec(target)
        if event_type is not None and spec.connector is not None and spec.handles(event_type):
            if target not in self._handlers:
                handler_class = spec.handler_class()
                assert handler_class is not None
                self._handlers[target] = handler_class(self, self.settings.targets.get(target, {}))
            return self._handlers[target]
        if target not in self._engines:
            section = self.settings.targets.get(target, {})
            handler_class = spec.handler_class() if spec.connector is None else None
            if handler_class is not None:
                self._engines[target] = handler_class(self, section)
                return self._engines[target]
            options = target_section(target, section)
            connector = registry.connector_class(target)(self.settings, section, self.redis)
            reread = None
            if self.settings.clockify_api_key and options.reread:
                from clockify_relay.clockify.client import ClockifyClient

                reread = ClockifyClient(self.settings, self.redis)
            # The lock is renewed before every call to the target or to Clockify, so it must
            # outlast the slowest single call (docs/ARCHITECTURE.md, "Ordering").
            slowest = max(connector.call_budget, CLOCKIFY_CALL_BUDGET if reread else 0.0)
            self._engines[target] = DeliveryEngine(
                connector,
                self.redis,
                self.keys,
                self.settings.state_ttl,
                reread,
                int(slowest + LOCK_MARGIN),
                scope=options,
                replicas=(
                    (self.settings.redis_min_replicas, self.settings.redis_wait_timeout_ms)
                    if self.settings.redis_min_replicas > 0
                    else None
                ),
            )
        return self._engines[target]

    def check_timing(self) -> None:
        """Refuse a visibility timeout that a slow delivery could outlive.

        kombu gives a message to another worker once it has been unacked for the visibility
        timeout; a Celery countdown (up to ``max_countdown``) is held unacked too. Both a
        countdown and the longest lock (a worker that died holding it) must fit inside it."""
        locks = {t: self.engine(t).lock_seconds for t in self.enabled_targets()}
        for target in self.enabled_targets():
            spec = registry.spec(target)
            for event_type in spec.events:
                if spec.connector is not None and spec.handles(event_type):
                    locks[target] = max(locks[target], self.engine(target, event_type).lock_seconds)
        if not locks:
            return
        target, lock = max(locks.items(), key=lambda item: item[1])
        needed = lock + self.settings.retry.max_countdown + LOCK_MARGIN
        if self.settings.visibility_timeout < needed:
            raise ConfigurationError(
                f"RELAY_VISIBILITY_TIMEOUT={self.settings.visibility_timeout}s is too short: "
                f"{target}'s slowest call holds its entry lock up to {lock}s and a retry "
                f"countdown may wait {self.settings.retry.max_countdown:g}s ([retry] "
                f"max_countdown); set it to at least {needed:.0f}s or lower the target's timeout"
            )


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The process-wide runtime, built from the environment on first use."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(load_settings())
    return _runtime


def reset_runtime(settings: Settings | None = None) -> Runtime:
    """Rebuild the runtime (the CLI after --config, tests)."""
    global _runtime
    _runtime = Runtime(settings or load_settings())
    return _runtime
