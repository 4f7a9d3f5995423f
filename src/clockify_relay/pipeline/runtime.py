"""Per-process state of a worker (or CLI): settings, Redis, connectors — made once, lazily."""

from __future__ import annotations

from functools import cached_property

import redis

from clockify_relay.connectors.base import Connector
from clockify_relay.connectors.registry import CONNECTORS, connector_class
from clockify_relay.pipeline.dlq import DeadLetterQueue
from clockify_relay.pipeline.engine import Delivery, lock_timeout
from clockify_relay.redis_conn import Keys, sync_client
from clockify_relay.settings import Settings, load_settings


class Runtime:
    """What a process's deliveries share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._deliveries: dict[str, Delivery] = {}

    @cached_property
    def redis(self) -> redis.Redis:
        return sync_client(self.settings)

    @cached_property
    def dlq(self) -> DeadLetterQueue:
        return DeadLetterQueue(self.redis, self.keys)

    def enabled_targets(self) -> list[str]:
        """Targets configured under [targets.*] and not ``enabled = false``, in registry order."""
        return [
            name
            for name in CONNECTORS
            if name in self.settings.targets and self.settings.targets[name].get("enabled", True)
        ]

    def connector(self, target: str) -> Connector:
        return self.delivery(target).connector

    def delivery(self, target: str) -> Delivery:
        """The delivery engine of one target (its connector is built on first use)."""
        if target not in self._deliveries:
            section = self.settings.targets.get(target, {})
            connector = connector_class(target)(self.settings, section, self.redis)
            reread = None
            if self.settings.clockify_api_key and section.get("reread", True):
                from clockify_relay.clockify.client import ClockifyClient

                reread = ClockifyClient(self.settings, self.redis)
            self._deliveries[target] = Delivery(
                connector,
                self.redis,
                self.keys,
                self.settings.state_ttl,
                reread,
                lock_timeout(self.settings.visibility_timeout),
            )
        return self._deliveries[target]


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
