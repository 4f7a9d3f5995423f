"""Operator control of deliveries: pause and resume per target, the circuit breaker, replays.

Operators only write to Redis; the workers act on it (docs/ARCHITECTURE.md, "Operator actions go
through the workers"). Rules:

1. Before a delivery runs, the worker asks the target's *gate* (one atomic script). A target
   paused by an operator holds every delivery: its message stays in the outbox and joins
   ``held:<target>`` in the order held — not retried into the dead-letter queue, not kept as a
   Celery countdown (pipeline/outbox.py rule 6).
2. Resume removes the pause and queues the held deliveries in the order they were held.
3. The circuit breaker: ``breaker_failures`` consecutive transient failures of a target (any
   delivery that the target answered, or that failed otherwise, resets the count) pause it
   automatically. After ``breaker_cooldown`` seconds one delivery is let through as a probe
   (the scheduler releases the oldest held one; a new delivery may take the turn first). The
   probe succeeding, or failing for a reason other than the target being unavailable, closes
   the breaker (rule 2); failing transiently, it is held again and the cooldown starts over.
   An operator's pause wins over the breaker and is never lifted by a probe.
4. A replay queues the dead letter's delivery for the workers and records its state
   (``replay:<letter id>``: queued, retrying, held, delivered, failed); the letter leaves the
   dead-letter queue only when the worker delivered it, and a new failure is added to the
   letter's history (pipeline/dlq.py), never replacing the original error.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import orjson
import redis

from clockify_relay.pipeline.messages import encode
from clockify_relay.pipeline.outbox import Outbox
from clockify_relay.redis_conn import Keys
from clockify_relay.settings import Settings

Gate = Literal["run", "probe", "held"]

# Lua, shared by the scripts below with KEYS[2..6] = outbox, waiting, received, held, held
# counter and ARGV[2] = the message id: set the delivery aside, next in the target's order.
HOLD_LUA = """
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('ZREM', KEYS[4], ARGV[2])
  redis.call('ZADD', KEYS[5], redis.call('INCR', KEYS[6]), ARGV[2])
end
"""

# KEYS: paused, outbox, waiting, received, held, held counter.
# ARGV: target, message id, now, probe timeout.
# 'run' (not paused), 'probe' (this delivery tests a tripped breaker), or 'held' (set aside).
GATE_SCRIPT = (
    """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 'run' end
local pause = cjson.decode(raw)
local now = tonumber(ARGV[3])
if pause.breaker then
  if pause.probe == ARGV[2] then return 'probe' end
  local stale = pause.probe ~= '' and now - pause.probe_at > tonumber(ARGV[4])
  if (pause.probe == '' and now >= pause.probe_after) or stale then
    pause.probe = ARGV[2]
    pause.probe_at = now
    redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(pause))
    return 'probe'
  end
end
"""
    + HOLD_LUA
    + """return 'held'
"""
)

# KEYS: paused, failures. ARGV: target, threshold, pause JSON.
# Count one more transient failure; trip the breaker at the threshold unless already paused.
FAILURE_SCRIPT = """
local count = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 86400)
local threshold = tonumber(ARGV[2])
if threshold > 0 and count >= threshold and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""

# KEYS: paused, failures. ARGV: target. Lift a breaker's pause (never an operator's).
CLOSE_SCRIPT = """
redis.call('DEL', KEYS[2])
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw and cjson.decode(raw).breaker then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# KEYS: paused, outbox, waiting, received, held, held counter.
# ARGV: target, message id, next probe time. The probe failed: hold it, cool down again.
REOPEN_SCRIPT = (
    """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  local pause = cjson.decode(raw)
  if pause.breaker then
    pause.probe = ''
    pause.probe_after = tonumber(ARGV[3])
    redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(pause))
  end
end
"""
    + HOLD_LUA
    + """return 1
"""
)

# KEYS: paused, held, outbox, waiting, counter, queue. ARGV: target, now, probe timeout.
# Queue the oldest held delivery of a tripped breaker as its probe, when one is due.
PROBE_SCRIPT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return '' end
local pause = cjson.decode(raw)
local now = tonumber(ARGV[2])
if not pause.breaker then return '' end
local waiting = pause.probe == '' and now >= pause.probe_after
local stale = pause.probe ~= '' and now - pause.probe_at > tonumber(ARGV[3])
if not (waiting or stale) then return '' end
local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if not oldest then return '' end
redis.call('ZREM', KEYS[2], oldest)
local message = redis.call('HGET', KEYS[3], oldest)
if not message then return '' end
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[5]), oldest)
redis.call('LPUSH', KEYS[6], message)
pause.probe = oldest
pause.probe_at = now
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(pause))
return oldest
"""


@dataclass(frozen=True)
class Pause:
    """Why and since when a target is paused; a breaker's pause also tracks its probe."""

    since: float
    by: str
    reason: str
    breaker: bool = False
    probe_after: float = 0.0
    probe: str = ""
    probe_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _pause_json(pause: Pause) -> bytes:
    return encode(pause.to_json())


ReplayState = Literal["queued", "retrying", "held", "delivered", "failed"]
FINAL_STATES = frozenset({"delivered", "failed"})


class Control:
    """Pauses, the breaker and replay states of one relay (one key prefix)."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings, outbox: Outbox) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings
        self.outbox = outbox
        self._gate = client.register_script(GATE_SCRIPT)
        self._failure = client.register_script(FAILURE_SCRIPT)
        self._close = client.register_script(CLOSE_SCRIPT)
        self._reopen = client.register_script(REOPEN_SCRIPT)
        self._probe = client.register_script(PROBE_SCRIPT)

    def _hold_keys(self, target: str) -> list[str]:
        outbox = self.outbox
        return [
            self.keys.paused,
            outbox.messages,
            outbox.waiting,
            outbox.received_at,
            self.keys.held(target),
            self.keys.held_counter,
        ]

    def probe_timeout(self) -> float:
        """How long a probe may stay unanswered before another delivery takes its turn."""
        return self.settings.stale_after

    def gate(self, target: str, message_id: str, now: float | None = None) -> Gate:
        """Rule 1: may this delivery run? A held delivery is set aside by this very call."""
        answer = self._gate(
            keys=self._hold_keys(target),
            args=[target, message_id, time.time() if now is None else now, self.probe_timeout()],
        )
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        assert text in ("run", "probe", "held")
        return text  # type: ignore[return-value]

    def pauses(self) -> dict[str, Pause]:
        """Every paused target and its pause."""
        raw: dict[bytes, bytes] = self.client.hgetall(self.keys.paused)  # type: ignore[assignment]
        return {name.decode(): Pause(**orjson.loads(value)) for name, value in raw.items()}

    def pause(self, target: str, by: str, reason: str) -> Pause:
        """An operator's pause (rule 1); replaces a breaker's."""
        record = Pause(since=time.time(), by=by, reason=reason or "paused by an operator")
        self.client.hset(self.keys.paused, target, _pause_json(record))
        return record

    def resume(self, target: str) -> tuple[bool, int]:
        """Rule 2: lift any pause and queue the held deliveries in order; (was paused, released)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.keys.paused, target)
        pipe.delete(self.keys.failures(target))
        removed, _ = pipe.execute()
        return bool(removed), len(self.outbox.release_held(target))

    def record_failure(self, target: str) -> bool:
        """Rule 3: one more consecutive transient failure; True when it trips the breaker."""
        now = time.time()
        count = self.settings.breaker_failures
        tripped = Pause(
            since=now,
            by="circuit breaker",
            reason=f"{count} consecutive transient failures",
            breaker=True,
            probe_after=now + self.settings.breaker_cooldown,
        )
        return bool(
            self._failure(
                keys=[self.keys.paused, self.keys.failures(target)],
                args=[target, count, _pause_json(tripped)],
            )
        )

    def record_answer(self, target: str) -> None:
        """The target answered (or failed other than transiently): the failure run is over."""
        self.client.delete(self.keys.failures(target))

    def close(self, target: str) -> int:
        """Rule 3: the probe got through; lift the breaker's pause and release what it held."""
        closed = self._close(keys=[self.keys.paused, self.keys.failures(target)], args=[target])
        return len(self.outbox.release_held(target)) if closed else 0

    def reopen(self, target: str, message_id: str) -> None:
        """Rule 3: the probe failed transiently; hold it and cool down again."""
        self._reopen(
            keys=self._hold_keys(target),
            args=[target, message_id, time.time() + self.settings.breaker_cooldown],
        )

    def release_probes(self, now: float | None = None) -> list[str]:
        """For the scheduler: let the oldest held delivery of each tripped breaker whose cooldown
        is over through as its probe (unless one is under way). Returns the targets probed."""
        now = time.time() if now is None else now
        probed = []
        for target, record in self.pauses().items():
            if not record.breaker:
                continue
            outbox = self.outbox
            keys = [self.keys.paused, self.keys.held(target), outbox.messages, outbox.waiting]
            keys += [outbox.counter, self.keys.queue]
            if self._probe(keys=keys, args=[target, now, self.probe_timeout()]):
                probed.append(target)
        return probed

    # --- replays

    def note_replay(self, letter_id: str, state: ReplayState, **detail: Any) -> None:
        """Record where a replay stands (rule 4); kept as long as traces."""
        value = {"letter_id": letter_id, "state": state, "at": time.time(), **detail}
        self.client.set(self.keys.replay(letter_id), encode(value), ex=self.settings.trace_ttl)

    def replay_states(self, letter_ids: list[str]) -> dict[str, Any]:
        """The recorded state of each letter's last replay (None when never replayed)."""
        if not letter_ids:
            return {}
        values = self.client.mget([self.keys.replay(i) for i in letter_ids])
        return {i: orjson.loads(v) if v else None for i, v in zip(letter_ids, values, strict=True)}
