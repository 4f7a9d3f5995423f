"""With RELAY_REDIS_MIN_REPLICAS, a create's pending record must reach the replicas before the
create is sent (docs/ARCHITECTURE.md §3): else a failover could lose it and a retry would create
a second record. The test Redis has no replica, so WAIT always finds too few."""

from __future__ import annotations

import pytest

from clockify_relay.errors import TransientError
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Settings
from tests.pipeline.conftest import entry_payload, envelope, worklogs


def test_a_create_is_not_sent_while_its_pending_record_is_on_too_few_replicas(
    everit_settings: Settings, clean_sandbox: SandboxServer
) -> None:
    rt = Runtime(everit_settings.with_changes(redis_min_replicas=1, redis_wait_timeout_ms=50))
    event = envelope("NEW_TIME_ENTRY", entry_payload())
    with pytest.raises(TransientError, match="did not reach 1 Redis replica"):
        rt.engine("everit").deliver(event)
    assert worklogs(clean_sandbox) == []  # nothing was sent
    state = rt.redis.hgetall(rt.keys.entry_state("everit", str(event["entity_id"])))
    assert not any(key.startswith(b"pending:") for key in state)  # so a retry creates afresh
    rt.redis.close()


def test_without_replicas_asked_for_the_create_is_sent(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    assert rt.engine("everit").replicas is None  # type: ignore[union-attr]
    rt.engine("everit").deliver(envelope("NEW_TIME_ENTRY", entry_payload()))
    assert len(worklogs(clean_sandbox)) == 1
