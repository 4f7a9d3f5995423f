"""The auto-pipelined ingest script against a real Redis: many concurrent calls, a script cache
that was flushed, and a Redis that is gone."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import orjson
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from clockify_relay.embedded_redis import free_port
from clockify_relay.receiver.ingest import INGEST_SCRIPT, Ingestor, ScriptBatcher
from clockify_relay.redis_conn import async_client
from clockify_relay.settings import Settings
from tests.receiver.conftest import queued_envelopes


def body(entry_id: str, text: str = "x") -> bytes:
    return orjson.dumps({"id": entry_id, "workspaceId": "WS1", "description": text})


async def ingest_all(settings: Settings, bodies: list[tuple[str, bytes]]) -> list[object]:
    client = async_client(settings)
    try:
        ingestor = Ingestor(settings, client)
        return await asyncio.gather(
            *(ingestor.ingest("NEW_TIME_ENTRY", "WS1", eid, raw) for eid, raw in bodies),
            return_exceptions=True,
        )
    finally:
        await client.aclose()


def test_concurrent_calls_are_each_applied_atomically(
    settings: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    # 40 distinct entries, 10 bodies of one entry (3 of them identical), all at once.
    bodies = [(f"E{i}", body(f"E{i}")) for i in range(40)]
    bodies += [("SAME", body("SAME", f"v{i % 7}")) for i in range(10)]
    results = asyncio.run(ingest_all(settings, bodies))
    assert not [r for r in results if isinstance(r, BaseException)]
    queued = queued_envelopes(redis_client, key_prefix)
    same = [e for e in queued if e["entity_id"] == "SAME"]
    # Sequences of one entry are 1..n without gaps or repeats, whatever the batching.
    assert sorted(e["sequence"] for e in same) == list(range(1, len(same) + 1))
    assert len(queued) == 40 + len(same)
    assert all(e["sequence"] == 1 for e in queued if e["entity_id"] != "SAME")


def test_script_missing_from_the_cache_is_loaded(
    settings: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    # A script text no Redis has seen (as after a restart or SCRIPT FLUSH, without flushing a
    # shared server): the first calls get NOSCRIPT, the batcher loads it and sends them again.
    source = f"{INGEST_SCRIPT}\n-- {uuid.uuid4().hex}"
    assert redis_client.script_exists(
        hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    ) == [False]

    async def run() -> list[object]:
        client = async_client(settings)
        try:
            batcher = ScriptBatcher(client, source)
            keys = [f"{key_prefix}dedup:x", f"{key_prefix}seq:x", f"{key_prefix}relay"]
            keys += [f"{key_prefix}outbox", f"{key_prefix}outbox:waiting", f"{key_prefix}n"]
            return await asyncio.gather(
                batcher(keys, ["d1", "e1", b"head-", b"-tail", 60, 60]),
                batcher(keys, ["d2", "e2", b"head-", b"-tail", 60, 60]),
            )
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [[1, 1], [1, 2]]
    assert redis_client.lrange(f"{key_prefix}relay", 0, -1) == ["head-2-tail", "head-1-tail"]


def test_unreachable_redis_fails_every_call_of_the_batch(settings: Settings) -> None:
    down = settings.with_changes(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    results = asyncio.run(ingest_all(down, [("A", body("A")), ("B", body("B"))]))
    assert all(isinstance(r, RedisConnectionError | OSError) for r in results)


@pytest.mark.parametrize("count", [1, 3])
def test_duplicates_inside_one_batch_are_recognised(
    settings: Settings, redis_client: redis.Redis, key_prefix: str, count: int
) -> None:
    same = body("D", "same text")
    results = asyncio.run(ingest_all(settings, [("D", same)] * (count + 1)))
    queued_flags = [getattr(r, "queued", None) for r in results]
    assert queued_flags.count(True) == 1
    assert queued_flags.count(False) == count
    assert len(queued_envelopes(redis_client, key_prefix)) == 1
