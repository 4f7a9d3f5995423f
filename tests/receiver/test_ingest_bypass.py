"""The ingest script's dedup bypass (backfill): queued whatever the dedup key says, sequenced
like any event, and the dedup key left as the last webhook body set it."""

from __future__ import annotations

import asyncio

import pytest
import redis

from clockify_relay.receiver.ingest import Ingestor, IngestResult
from clockify_relay.redis_conn import Keys, async_client
from clockify_relay.settings import Settings

pytestmark = pytest.mark.integration

BODY = b'{"id":"e1","workspaceId":"ws"}'


def _ingest(settings: Settings, *, bypass: bool) -> IngestResult:
    async def run() -> IngestResult:
        client = async_client(settings)
        try:
            return await Ingestor(settings, client).ingest(
                "TIME_ENTRY_UPDATED", "ws", "e1", BODY, bypass_dedup=bypass
            )
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_bypass_queues_a_duplicate_and_leaves_the_dedup_key(
    settings: Settings, redis_client: redis.Redis
) -> None:
    first = _ingest(settings, bypass=False)
    assert first.queued and first.sequence == 1
    assert not _ingest(settings, bypass=False).queued
    dedup_key = Keys(settings.key_prefix).dedup("ws", "TIME_ENTRY_UPDATED", "e1")
    before = redis_client.get(dedup_key)
    bypassed = _ingest(settings, bypass=True)
    assert bypassed.queued and bypassed.sequence == 2
    assert redis_client.get(dedup_key) == before
    assert redis_client.llen(Keys(settings.key_prefix).queue) == 2
    # A webhook with the first body is still a duplicate of it.
    assert _ingest(settings, bypass=False).event_id == first.event_id
