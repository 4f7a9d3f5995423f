"""The echo target's handler: records each event it is given; ``fail`` makes it fail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clockify_relay.errors import PermanentError, TransientError
from clockify_relay.pipeline.engine import Outcome
from clockify_relay.pipeline.messages import Envelope, encode
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.settings import KnownKeys

KNOWN_KEYS = KnownKeys.of("fail", "lock_seconds")


class EchoHandler:
    def __init__(self, runtime: Runtime, section: Mapping[str, Any]) -> None:
        self.runtime = runtime
        self.section = section
        self.lock_seconds = int(section.get("lock_seconds", 7))
        self.key = runtime.keys.cache("echo")

    def deliver(self, envelope: Envelope, *, force: bool = False) -> Outcome:
        fail = self.runtime.redis.get(self.key + ":fail")
        if fail == b"transient":
            raise TransientError("echo is down")
        if fail == b"permanent" and not force:
            raise PermanentError("echo refuses")
        self.runtime.redis.rpush(self.key, encode([envelope["event_type"], force]))
        return Outcome("applied", f"echoed {envelope['event_type']}")

    def probe(self) -> str:
        return "echo answers"
