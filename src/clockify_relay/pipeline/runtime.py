"""Per-process state of a worker: settings, a Redis client, connectors — made once, lazily."""

from __future__ import annotations

from functools import cached_property

import redis

from clockify_relay.redis_conn import Keys, sync_client
from clockify_relay.settings import Settings, load_settings


class Runtime:
    """What a worker process's tasks share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)

    @cached_property
    def redis(self) -> redis.Redis:
        return sync_client(self.settings)


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The process-wide runtime, built from the environment on first use."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(load_settings())
    return _runtime
