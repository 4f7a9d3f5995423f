"""The outbox: every message the relay queues is kept in Redis until its task is done.

kombu's Redis transport takes a message with BRPOP and only then records it as unacked, so a
worker main process that dies in between loses it for good (docs/ARCHITECTURE.md, "Nothing
lost"). No accepted event may depend on that one message surviving, so:

1. Every message is written to the outbox hash in the same atomic script that queues it, and
   numbered in queue order (``outbox:waiting``, id → number).
2. A worker's main process marks a message *received* as soon as kombu hands it over (after
   kombu recorded it as unacked, so from then on kombu's own visibility timeout restores it):
   it leaves ``outbox:waiting`` for ``outbox:received`` (id → time).
3. A task that is done — routed, delivered, dead-lettered, or replaced by its retry — removes
   its message in the same script that queues what comes next.
4. The sweeper (run by the scheduler) finds lost messages without mistaking a long backlog for
   loss: the queue is FIFO and holds exactly the newest ``LLEN`` numbers, so a message still
   *waiting* with a number at or below ``counter - LLEN`` has left the queue without reaching
   a worker. It is queued again only if that was already so ``lost_after`` seconds earlier
   (the BRPOP → received gap takes milliseconds). A message received but not done long after
   kombu would have restored it (``stale_after``) is queued again as well.
5. A message queued again more than ``max_resends`` times (a worker that cannot even decode
   it) is handed back to the caller to dead-letter: no poison loop.
6. A paused target's delivery is *held* (``held:<target>``, in the order held): it stays in the
   outbox, neither waiting nor received, so the sweeper leaves it alone, until resume queues
   it again (pipeline/control.py).

Every step is one Lua script, so two schedulers started by mistake do no harm.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from clockify_relay.redis_conn import Keys

# KEYS: outbox, waiting, received, resends, counter, queue, parked, once.
# ARGV: done id ('' = none), once ttl, then (id, message, due) triples; due '' = queue now.
# With a non-empty once key that already exists, only the done id is removed (returns -1).
COMMIT_SCRIPT = """
local done = ARGV[1]
if done ~= '' then
  redis.call('HDEL', KEYS[1], done)
  redis.call('ZREM', KEYS[2], done)
  redis.call('ZREM', KEYS[3], done)
  redis.call('HDEL', KEYS[4], done)
end
if KEYS[8] ~= '' and not redis.call('SET', KEYS[8], '1', 'NX', 'EX', ARGV[2]) then
  return -1
end
local count = 0
for i = 3, #ARGV, 3 do
  local id, message, due = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('HSET', KEYS[1], id, message)
  if due == '' then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), id)
    redis.call('LPUSH', KEYS[6], message)
  else
    redis.call('ZADD', KEYS[7], due, id)
  end
  count = count + 1
end
return count
"""

# KEYS: outbox, waiting, received. ARGV: id, now.
RECEIVED_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""

# KEYS: parked, outbox, waiting, counter, queue. ARGV: now, batch.
RELEASE_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local message = redis.call('HGET', KEYS[2], id)
  if message then
    redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), id)
    redis.call('LPUSH', KEYS[5], message)
  end
end
return #due
"""

# KEYS: held set, outbox, waiting, counter, queue. ARGV: ids, in order.
RELEASE_IDS_SCRIPT = """
local count = 0
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local message = redis.call('HGET', KEYS[2], id)
    if message then
      redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), id)
      redis.call('LPUSH', KEYS[5], message)
      count = count + 1
    end
  end
end
return count
"""

# KEYS: outbox, waiting, received, resends, counter, queue, mark.
# ARGV: now, lost_after, stale_after, max_resends, batch.
# Returns {resent ids, given-up ids}; given-up messages stay in the outbox for the caller.
SWEEP_SCRIPT = """
local now = tonumber(ARGV[1])
local batch = tonumber(ARGV[5])
local resent, given_up = {}, {}
local function again(id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  local message = redis.call('HGET', KEYS[1], id)
  if not message then return end
  if redis.call('HINCRBY', KEYS[4], id, 1) > tonumber(ARGV[4]) then
    table.insert(given_up, id)
    return
  end
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), id)
  redis.call('LPUSH', KEYS[6], message)
  table.insert(resent, id)
end
local boundary = tonumber(redis.call('GET', KEYS[5]) or '0') - redis.call('LLEN', KEYS[6])
local marked = redis.call('HMGET', KEYS[7], 'boundary', 'at')
if not marked[2] or now - tonumber(marked[2]) >= tonumber(ARGV[2]) then
  if marked[1] then
    local lost = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', marked[1], 'LIMIT', 0, batch)
    for _, id in ipairs(lost) do again(id) end
  end
  redis.call('HSET', KEYS[7], 'boundary', boundary, 'at', now)
end
local stale_before = now - tonumber(ARGV[3])
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', stale_before, 'LIMIT', 0, batch)
for _, id in ipairs(stale) do again(id) end
return {resent, given_up}
"""
SWEEP_BATCH = 500
RELEASE_BATCH = 500


@dataclass(frozen=True)
class Outgoing:
    """One message to record and queue: now (``due`` None) or parked until ``due`` (epoch s)."""

    id: str
    message: bytes
    due: float | None = None


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did: ids queued again, and ids given up on (with their messages)."""

    resent: list[str]
    given_up: dict[str, bytes]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Outbox:
    """The outbox of one relay (one key prefix)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        # The outbox's own keys (docs/ARCHITECTURE.md §7), in the order the scripts take them.
        self.messages = keys.outbox()
        self.waiting = keys.outbox("waiting")
        self.received_at = keys.outbox("received")
        self.resends = keys.outbox("resends")
        self.counter = keys.outbox("counter")
        self._commit = client.register_script(COMMIT_SCRIPT)
        self._received = client.register_script(RECEIVED_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)
        self._sweep = client.register_script(SWEEP_SCRIPT)
        self._release_ids = client.register_script(RELEASE_IDS_SCRIPT)

    def commit(
        self,
        outgoing: Sequence[Outgoing] = (),
        *,
        done: str | None = None,
        once: tuple[str, int] | None = None,
    ) -> int:
        """Atomically: forget the message ``done`` (its task finished) and record and queue
        (or park) ``outgoing``. With ``once`` (key, ttl), ``outgoing`` is written only the
        first time that key is set; returns -1 when it was set already, else how many."""
        args: list[str | bytes | float] = [done or "", once[1] if once else 0]
        for item in outgoing:
            args += [item.id, item.message, "" if item.due is None else repr(item.due)]
        return int(
            self._commit(
                keys=[
                    self.messages,
                    self.waiting,
                    self.received_at,
                    self.resends,
                    self.counter,
                    self.keys.queue,
                    self.keys.parked,
                    once[0] if once else "",
                ],
                args=args,
            )
        )

    def received(self, message_id: str, now: float | None = None) -> bool:
        """A worker took the message (kombu has it as unacked now); False if not tracked."""
        return bool(
            self._received(
                keys=[self.messages, self.waiting, self.received_at],
                args=[message_id, time.time() if now is None else now],
            )
        )

    def release_due(self, now: float | None = None) -> int:
        """Queue every parked message that is due; returns how many."""
        now = time.time() if now is None else now
        keys = [self.keys.parked, self.messages, self.waiting, self.counter, self.keys.queue]
        moved = 0
        while True:
            batch = int(self._release(keys=keys, args=[now, RELEASE_BATCH]))
            moved += batch
            if batch < RELEASE_BATCH:
                return moved

    def sweep(
        self, *, lost_after: float, stale_after: float, max_resends: int, now: float | None = None
    ) -> SweepResult:
        """Queue again what was lost (rule 4); return it and what was given up on (rule 5)."""
        resent, given_up = self._sweep(
            keys=[
                self.messages,
                self.waiting,
                self.received_at,
                self.resends,
                self.counter,
                self.keys.queue,
                self.keys.outbox("mark"),
            ],
            args=[
                time.time() if now is None else now,
                lost_after,
                stale_after,
                max_resends,
                SWEEP_BATCH,
            ],
        )
        given_up_ids = [_text(i) for i in given_up]
        messages = self.client.hmget(self.messages, given_up_ids) if given_up_ids else []
        return SweepResult(
            resent=[_text(i) for i in resent],
            given_up={
                i: m if isinstance(m, bytes) else m.encode()
                for i, m in zip(given_up_ids, messages, strict=True)
                if m is not None
            },
        )

    def release_held(self, target: str, limit: int | None = None) -> list[str]:
        """Queue a target's held deliveries in the order they were held (the oldest ``limit``
        only, when given); returns their ids."""
        keys = [self.keys.held(target), self.messages, self.waiting, self.counter, self.keys.queue]
        released: list[str] = []
        while limit is None or len(released) < limit:
            batch = RELEASE_BATCH if limit is None else min(RELEASE_BATCH, limit - len(released))
            members: list[bytes] = self.client.zrange(keys[0], 0, batch - 1)  # type: ignore[assignment]
            ids = [_text(i) for i in members]
            if not ids:
                break
            # Released by id: a delivery held meanwhile keeps its place behind these.
            self._release_ids(keys=keys, args=ids)
            released += ids
        return released

    def held(self, target: str) -> int:
        """How many deliveries of a target are held."""
        return int(self.client.zcard(self.keys.held(target)))

    def count_resend(self, message_id: str) -> int:
        """Count one more go of a message that failed (rule 5); returns the count so far."""
        return int(self.client.hincrby(self.resends, message_id, 1))

    def pending(self) -> int:
        """Messages not done yet (queued, held by a worker, or parked)."""
        return int(self.client.hlen(self.messages))
