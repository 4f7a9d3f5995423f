"""Durable ingest: dedup check, sequence, publish and dedup key in ONE atomic Redis call.

The Lua script runs the writes in the order docs/ARCHITECTURE.md §3 asks for — sequence (INCR) →
publish (LPUSH of the Celery message) → dedup key — and, being atomic, cannot stop half-way.
Redis answers only after the script's writes are applied (and fsynced, with
``appendfsync always``), so a 202 always means the message is in the queue.

Replication is asynchronous: a master that fails over before its replicas have a write loses
it. With ``RELAY_REDIS_MIN_REPLICAS`` > 0 the scripts are followed by ``WAIT numreplicas
timeout`` *on the same connection* (one pipeline: WAIT covers the writes of the connection it is
sent on), and a 202 also means that many replicas have the message.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from clockify_relay.pipeline.messages import route_message
from clockify_relay.redis_conn import Keys
from clockify_relay.settings import Settings

# KEYS: dedup, sequence, queue, outbox, outbox waiting, outbox counter.  ARGV: digest, event
# id, message head, message tail, dedup ttl, sequence ttl, '1' to touch the dedup key of a
# duplicate, bypass ('1': neither checks nor writes the dedup key -- backfill, which must never
# be swallowed by it nor hide a webhook body behind its own).  Returns {0, event id of the
# duplicate} or {1, sequence}. The message is recorded in the outbox (pipeline/outbox.py) under
# the event id, numbered in queue order, so it survives a worker that loses it.
#
# The touch (the same value written again, TTL kept) is for WAIT: WAIT waits for the writes of
# its own connection only, and the accepted body a duplicate points to may have been written on
# another connection and not be replicated yet (its 202 became a 503 and Clockify retries). A
# write here puts this connection's replication offset past it, so the duplicate's 200 waits
# for it too. (Redis 7.0 also counts a script call that wrote nothing; the touch does not
# depend on that.)
INGEST_SCRIPT = """
local bypass = ARGV[8] == '1'
local last = (not bypass) and redis.call('GET', KEYS[1])
if last then
  local sep = string.find(last, '|', 1, true)
  if sep and string.sub(last, 1, sep - 1) == ARGV[1] then
    if ARGV[7] == '1' then
      redis.call('SET', KEYS[1], last, 'KEEPTTL')
    end
    return {0, string.sub(last, sep + 1)}
  end
end
local seq = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[6])
local message = ARGV[3] .. seq .. ARGV[4]
redis.call('HSET', KEYS[4], ARGV[2], message)
redis.call('ZADD', KEYS[5], redis.call('INCR', KEYS[6]), ARGV[2])
redis.call('LPUSH', KEYS[3], message)
if not bypass then
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[5])
end
return {1, seq}
"""


class NotReplicated(RedisError):
    """The scripts ran on the master but WAIT saw fewer replicas acknowledge them than
    ``RELAY_REDIS_MIN_REPLICAS`` within ``RELAY_REDIS_WAIT_TIMEOUT_MS``; answered 503."""

    def __init__(self, acknowledged: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(
            f"{acknowledged} of {wanted} replica(s) acknowledged the write within {timeout_ms} ms"
        )
        self.acknowledged = acknowledged


@dataclass(frozen=True)
class IngestResult:
    """What ingest did with one webhook body."""

    queued: bool  # False: a duplicate of the last accepted body
    event_id: str
    sequence: int | None


def envelope_parts(
    event_id: str, event_type: str, workspace_id: str, entity_id: str, raw_body: bytes
) -> tuple[bytes, bytes]:
    """The event envelope as JSON with a gap for the sequence number.

    The raw body is embedded as it came (it was just validated as a JSON object), so nothing is
    serialised twice.
    """
    head = (
        orjson.dumps(
            {
                "event_id": event_id,
                "event_type": event_type,
                "workspace_id": workspace_id,
                "entity_id": entity_id,
                "received_at": datetime.now(UTC).isoformat(),
            }
        )[:-1]
        + b',"sequence":'
    )
    return head, b',"payload":' + raw_body + b"}"


class ScriptBatcher:
    """Runs one Lua script for many callers, sending the calls made in one event-loop turn as
    one pipeline (auto-pipelining, as ioredis does).

    Under load many webhooks reach ingest in the same turn; one round trip for all of them cuts
    the client's per-call cost (packing, pool checkout, socket I/O) that dominates the
    receiver's CPU. Each script call stays atomic on its own; a connection failure fails every
    call of the batch (each answered 503), and a call whose caller went away still completes.

    With ``wait`` = (replicas, timeout ms), every pipeline ends with ``WAIT replicas timeout``:
    a pipeline runs on one connection, so that WAIT covers every script of the batch, and a
    batch it finds short of replicas fails every call with :class:`NotReplicated`.
    """

    def __init__(
        self, client: aioredis.Redis, source: str, wait: tuple[int, int] | None = None
    ) -> None:
        self.client = client
        self.source = source
        self.wait = wait
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self.pending: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self.flush_scheduled = False
        self.in_flight: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending.append(([len(keys), *keys, *args], future))
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        self.flush_scheduled = False
        task = asyncio.ensure_future(self._send(batch))
        self.in_flight.add(task)  # keep a reference until done
        task.add_done_callback(self.in_flight.discard)

    async def _send(self, batch: list[tuple[list[Any], asyncio.Future[Any]]]) -> None:
        try:
            results = await self._execute([call for call, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(self, calls: list[list[Any]]) -> list[Any]:
        results = await self._pipeline(calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            # The script is not cached (a restarted or flushed Redis). NOSCRIPT means it did not
            # run, so loading it and sending those calls again is safe.
            await self.client.script_load(self.source)
            retried = await self._pipeline([calls[i] for i in missing])
            for i, result in zip(missing, retried, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, calls: list[list[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(self.sha, *call)
        if self.wait is None:
            return list(await pipe.execute(raise_on_error=False))
        replicas, timeout_ms = self.wait
        pipe.wait(replicas, timeout_ms)
        *results, acknowledged = await pipe.execute(raise_on_error=False)
        if isinstance(acknowledged, Exception):
            raise acknowledged
        if int(acknowledged) < replicas:
            # The scripts may have queued their messages on the master all the same: the 503
            # makes Clockify send the body again, and the receiver or the workers absorb the
            # second copy (docs/ARCHITECTURE.md §3, ingest order: a failure part-way may queue
            # twice, never answer 2xx for what is not safely queued). A NOSCRIPT call did not
            # run and is sent again (``_execute``) with its own WAIT.
            failure = NotReplicated(int(acknowledged), replicas, timeout_ms)
            return [r if isinstance(r, NoScriptError) else failure for r in results]
        return results


class Ingestor:
    """Queues verified webhook bodies to the Celery queue in Redis."""

    def __init__(self, settings: Settings, client: aioredis.Redis) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.client = client
        self.touch_duplicates = settings.redis_min_replicas > 0
        wait = (
            (settings.redis_min_replicas, settings.redis_wait_timeout_ms)
            if settings.redis_min_replicas > 0
            else None
        )
        self.script = ScriptBatcher(client, INGEST_SCRIPT, wait)

    async def ingest(
        self,
        event_type: str,
        workspace_id: str,
        entity_id: str,
        raw_body: bytes,
        *,
        bypass_dedup: bool = False,
    ) -> IngestResult:
        """Queue one event unless it repeats the last accepted body (``bypass_dedup``: queue
        it anyway, dedup key untouched); raises RedisError."""
        event_id = os.urandom(16).hex()
        digest = hashlib.blake2b(raw_body, digest_size=16).hexdigest()
        head, tail = route_message(
            *envelope_parts(event_id, event_type, workspace_id, entity_id, raw_body), event_id
        )
        status, value = await self.script(
            [
                self.keys.dedup(workspace_id, event_type, entity_id),
                self.keys.sequence(workspace_id, entity_id),
                self.keys.queue,
                self.keys.outbox(),
                self.keys.outbox("waiting"),
                self.keys.outbox("counter"),
            ],
            [
                digest,
                event_id,
                head,
                tail,
                self.settings.dedup_window,
                self.settings.state_ttl,
                "1" if self.touch_duplicates else "0",
                "1" if bypass_dedup else "0",
            ],
        )
        if int(status) == 0:
            duplicate_of = value.decode() if isinstance(value, bytes) else str(value)
            return IngestResult(queued=False, event_id=duplicate_of, sequence=None)
        return IngestResult(queued=True, event_id=event_id, sequence=int(value))
