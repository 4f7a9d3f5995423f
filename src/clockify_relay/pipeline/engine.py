"""The delivery engine: one Clockify event → the right create, update or delete on one target.

Ordering rules (docs/ARCHITECTURE.md §3), applied under a per-(target, entry) lock against the
state the relay keeps per (target, entry) — the ID map, the last applied sequence, a tombstone,
the last applied restore, creates whose outcome is pending, and the owner the records were
booked for:

1. NEW_TIME_ENTRY / TIMER_STOPPED create only when the entry is unmapped and not tombstoned (and
   no newer state was applied); they never advance "last applied".
2. TIME_ENTRY_UPDATED / TIME_ENTRY_SPLIT apply when newer than the last applied sequence and
   the entry is not tombstoned; older ones are skipped.
3. TIME_ENTRY_DELETED deletes what is mapped and always leaves a tombstone; only a newer
   TIME_ENTRY_RESTORED revives the entry. A delete is skipped only when a RESTORED newer than
   it was applied — never because an ordinary update with a higher sequence got there first
   (nothing but a restore follows a delete in Clockify, so such an update is older in truth;
   it only arrived later, e.g. while the delete waited for a retry).
4. An entry out of scope (BREAK, project not routed to the target) has nothing booked: what was
   booked is deleted. An owner change deletes and creates again.
5. With CLOCKIFY_API_KEY set, the entry is re-read from Clockify under the lock and that truth
   is written, whatever the event and its order.

Running timers are not booked until they stop. Skips are returned (and traced), never silent.

A create whose answer never came is "pending" (with the time it was sent). A retry that finds it
pending searches the target for it (where the target can be searched) only once the first
request cannot still be in progress — ``Connector.reconcile_after`` seconds after it was sent —
and until then waits (a transient error with ``retry_after``); a search that ran while the
target was still working on the first request would find nothing and create a second record.

The per-(target, entry) lock is renewed before every call to the target, so it never expires
under a delivery that is still working, however many calls the delivery makes; its TTL only
bounds how long a worker that died holding it blocks the entry (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol

import orjson
import redis
from redis.lock import Lock

from clockify_relay.clockify.models import PayloadError, TimeEntry, parse_time_entry
from clockify_relay.connectors.base import Booking, Connector
from clockify_relay.errors import (
    ConfigurationError,
    PermanentError,
    TransientError,
    UnknownOutcomeError,
)
from clockify_relay.pipeline.messages import Envelope, encode
from clockify_relay.redis_conn import Keys
from clockify_relay.settings import TargetSection, target_section
from clockify_relay.timeutil import owner_zone

CREATE_EVENTS = frozenset({"NEW_TIME_ENTRY", "TIMER_STOPPED"})
UPDATE_EVENTS = frozenset({"TIME_ENTRY_UPDATED", "TIME_ENTRY_SPLIT"})
LOCK_WAIT = 10  # seconds to wait for a busy entry before retrying later


@dataclass
class Outcome:
    """What one delivery did."""

    action: str  # "applied" | "deleted" | "skipped"
    reason: str
    operations: list[str] = field(default_factory=list)
    remote_ids: dict[str, str] = field(default_factory=dict)


class EventHandler(Protocol):
    """An event target's handler (connectors/spec.py ``TargetSpec.handler``): it takes whole
    events of the types its spec lists, instead of a time-entry Connector driven by the
    :class:`DeliveryEngine`. Built once per process as ``cls(runtime, section)``.

    Its contract is the engine's: ``deliver`` raises only relay errors (errors.py), is safe to
    run again for the same envelope (a retry, a redelivery, a replay) and returns what it did;
    ``lock_seconds`` bounds the longest lock it holds (the worker's visibility timeout must
    outlast it, runtime.check_timing); ``probe`` answers ``check --probe`` in one line."""

    lock_seconds: int

    def deliver(self, envelope: Envelope, *, force: bool = False) -> Outcome:
        """Handle one event; ``force``: the operator asks for what was held back to be done."""
        ...

    def probe(self) -> str:
        """Check credentials and reachability; one line without the target's name."""
        ...


class EntryState:
    """The relay's memory of one entry on one target: a Redis hash, written field by field
    right after each downstream call succeeds (so a crash loses at most the call in flight)."""

    def __init__(self, client: redis.Redis, key: str, ttl: int) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl
        raw = {_text(k): _text(v) for k, v in client.hgetall(key).items()}
        self.ids = {k[3:]: v for k, v in raw.items() if k.startswith("id:")}
        # booking key → the create that was sent: when, and its payload (what find() searches
        # for, even after the entry changed owner or was deleted).
        self.pending = {k[8:]: _pending(v) for k, v in raw.items() if k.startswith("pending:")}
        self.applied_seq = int(raw.get("applied_seq", 0))
        tombstone = raw.get("tombstone_seq")
        self.tombstone_seq = int(tombstone) if tombstone is not None else None
        self.restored_seq = int(raw.get("restored_seq", 0))
        self.owner = raw.get("owner")
        self.day = raw.get("day")  # ISO local day the entry is indexed under (Keys.owner_days)
        # booking key → digest of the payload last written (booking_digest): an update with the
        # same payload is skipped ("unchanged"), so a backfill of entries in sync calls nothing.
        self.hashes = {k[5:]: v for k, v in raw.items() if k.startswith("hash:")}

    def _write(self, mapping: dict[Any, Any] | None = None, *remove: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        if mapping:
            pipe.hset(self.key, mapping=mapping)
        if remove:
            pipe.hdel(self.key, *remove)
        pipe.expire(self.key, self.ttl)
        pipe.execute()

    def mark_pending(self, booking: Booking, replicas: tuple[int, int] | None = None) -> bool:
        """Record the create about to be sent. With ``replicas`` (count, timeout ms), also wait
        until that many replicas have the record (``WAIT`` on the connection that wrote it: a
        pipeline without MULTI, where WAIT would not block); False when too few did."""
        self.pending[booking.key] = sent = PendingCreate(time.time(), dict(booking.payload))
        field = f"pending:{booking.key}"
        value = encode({"at": sent.at, "payload": sent.payload})
        if replicas is None:
            self._write({field: value})
            return True
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.key, field, value)
        pipe.expire(self.key, self.ttl)
        pipe.wait(*replicas)
        *_, acknowledged = pipe.execute()
        return int(acknowledged) >= replicas[0]

    def clear_pending(self, booking_key: str) -> None:
        self.pending.pop(booking_key, None)
        self._write(None, f"pending:{booking_key}")

    def set_id(self, booking_key: str, remote_id: str) -> None:
        self.ids[booking_key] = remote_id
        self.pending.pop(booking_key, None)
        self._write({f"id:{booking_key}": remote_id}, f"pending:{booking_key}")

    def drop_id(self, booking_key: str) -> None:
        self.ids.pop(booking_key, None)
        self.hashes.pop(booking_key, None)
        self._write(None, f"id:{booking_key}", f"hash:{booking_key}")

    def set_hash(self, booking_key: str, digest: str) -> None:
        if self.hashes.get(booking_key) != digest:
            self.hashes[booking_key] = digest
            self._write({f"hash:{booking_key}": digest})

    def set_owner(self, owner: str) -> None:
        if owner != self.owner:
            self.owner = owner
            self._write({"owner": owner})

    def set_day(self, day: str | None) -> None:
        if day != self.day:
            self.day = day
            if day is None:
                self._write(None, "day")
            else:
                self._write({"day": day})

    def advance(self, sequence: int) -> None:
        if sequence > self.applied_seq:
            self.applied_seq = sequence
            self._write({"applied_seq": sequence})

    def tombstone(self, sequence: int) -> None:
        self.tombstone_seq = max(self.tombstone_seq or 0, sequence)
        self._write({"tombstone_seq": self.tombstone_seq})

    def revive(self) -> None:
        if self.tombstone_seq is not None:
            self.tombstone_seq = None
            self._write(None, "tombstone_seq")

    def restored(self, sequence: int) -> None:
        """A TIME_ENTRY_RESTORED with this sequence was applied (rule 3)."""
        if sequence > self.restored_seq:
            self.restored_seq = sequence
            self._write({"restored_seq": sequence})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class PendingCreate:
    """A create sent without an answer: when, and what (an empty payload in older records)."""

    at: float
    payload: dict[str, Any]


def _pending(raw: str) -> PendingCreate:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return PendingCreate(float(value.get("at", 0.0)), dict(value.get("payload") or {}))
    # Older records hold the send time alone, or "1" (long ago).
    return PendingCreate(float(value) if isinstance(value, int | float) else 0.0, {})


def out_of_scope(entry: TimeEntry, scope: TargetSection) -> str | None:
    """Why this target books nothing for the entry, or None when it is in scope."""
    if entry.is_break and not scope.book_breaks:
        return "BREAK entries are not booked (book_breaks = false)"
    projects = scope.only_projects
    if projects is not None and entry.project_id not in projects:
        return f"project {entry.project_id} is not in only_projects"
    if entry.project_id and entry.project_id in scope.skip_projects:
        return f"project {entry.project_id} is in skip_projects"
    return None


class EntryReader(Protocol):
    """Reads an entry's current truth from Clockify (rule 5): clockify/client.py."""

    def get_time_entry(self, workspace_id: str, entry_id: str) -> Mapping[str, Any] | None:
        """The entry as Clockify has it now, or None when it no longer exists."""
        ...


class DeliveryEngine:
    """Delivers events to one target under the ordering rules; one per (process, target)."""

    def __init__(
        self,
        connector: Connector,
        client: redis.Redis,
        keys: Keys,
        state_ttl: int,
        reread: EntryReader | None = None,
        lock_seconds: int = 300,
        scope: TargetSection | None = None,
        replicas: tuple[int, int] | None = None,
    ) -> None:
        self.connector = connector
        self.target = connector.name
        self.client = client
        self.keys = keys
        self.state_ttl = state_ttl
        self.reread = reread  # rule 5, when a Clockify API key is configured
        self.lock_seconds = lock_seconds
        # The target's generic keys (book_breaks, only_projects, skip_projects), typed.
        self.scope = scope if scope is not None else target_section(self.target, connector.section)
        self._lock: Lock | None = None
        # (count, timeout ms): a create's pending record must reach that many Redis replicas
        # before the create is sent (RELAY_REDIS_MIN_REPLICAS; docs/ARCHITECTURE.md §3).
        self.replicas = replicas

    @contextmanager
    def locked(self, entry_id: str) -> Iterator[None]:
        lock = self.client.lock(
            self.keys.lock(self.target, entry_id),
            timeout=self.lock_seconds,
            blocking_timeout=LOCK_WAIT,
        )
        if not lock.acquire():
            raise TransientError(f"{self.target}: entry {entry_id} is busy in another delivery")
        self._lock = lock
        try:
            yield
        finally:
            self._lock = None
            with suppress(redis.exceptions.LockError):
                lock.release()

    def _renew_lock(self) -> None:
        """Give the lock its full TTL again before a call to the target (see the docstring).

        If it expired and another delivery took the entry, stop before writing anything."""
        if self._lock is None:
            return
        try:
            self._lock.reacquire()
        except redis.exceptions.LockError:
            raise TransientError(
                f"{self.target}: the entry's lock expired during the delivery; retrying"
            ) from None

    def deliver(self, envelope: Envelope, *, force: bool = False) -> Outcome:
        """Bring the target in line with this event; raises only relay errors."""
        entry_id = str(envelope["entity_id"])
        with self.locked(entry_id):
            state = EntryState(
                self.client, self.keys.entry_state(self.target, entry_id), self.state_ttl
            )
            if force and state.pending:
                # The operator checked the target and asked for the create to be made again.
                for booking_key in list(state.pending):
                    state.clear_pending(booking_key)
            outcome = self._decide(envelope, state)
            if state.ids and state.tombstone_seq is None and state.owner and state.day:
                day = date.fromisoformat(state.day)
                outcome.operations.extend(
                    self.connector.booked(state.owner, day, dict(state.ids), self._renew_lock)
                )
            return outcome

    def _decide(self, envelope: Envelope, state: EntryState) -> Outcome:
        event_type = str(envelope["event_type"])
        sequence = int(envelope["sequence"])
        try:
            entry = parse_time_entry(envelope["payload"])
        except PayloadError as exc:
            raise PermanentError(f"unusable time entry payload: {exc}") from None

        if self.reread is not None:
            self._renew_lock()
            truth = self.reread.get_time_entry(entry.workspace_id, entry.id)
            if truth is None:
                return self._delete(entry, state, sequence, "Clockify has no such entry now")
            try:
                current = parse_time_entry(truth)
            except PayloadError as exc:
                raise PermanentError(f"unusable entry from the Clockify API: {exc}") from None
            if current.time_zone is None and current.user_id == entry.user_id:
                # The REST entry has no timeZone: keep the webhook's (the owner's) zone, or
                # else owner_zone() falls back to the configured user zone, then the default
                # (README "Local time"). Another owner's webhook zone is not theirs.
                current = replace(current, time_zone=entry.time_zone)
            state.revive()
            outcome = self._apply(current, state, "re-read from Clockify")
            state.advance(sequence)
            return outcome

        if event_type == "TIME_ENTRY_DELETED":
            if state.restored_seq > sequence:
                return skipped(f"delete #{sequence} is older than restore #{state.restored_seq}")
            return self._delete(entry, state, sequence, "entry deleted in Clockify")
        if entry.running or event_type == "NEW_TIMER_STARTED":
            return skipped("timer still running; booked when it stops")
        if event_type in CREATE_EVENTS:
            if state.tombstone_seq is not None:
                return skipped("entry was deleted (tombstone)")
            if state.ids:
                return skipped("already created")
            if state.applied_seq > sequence:
                return skipped(f"a newer state (#{state.applied_seq}) was applied")
            return self._apply(entry, state, event_type)
        if event_type in UPDATE_EVENTS or event_type == "TIME_ENTRY_RESTORED":
            if sequence <= state.applied_seq:
                return skipped(f"#{sequence} is not newer than applied #{state.applied_seq}")
            if state.tombstone_seq is not None:
                if event_type != "TIME_ENTRY_RESTORED":
                    return skipped("entry was deleted (tombstone); only a restore revives it")
                if sequence <= state.tombstone_seq:
                    return skipped(
                        f"restore #{sequence} is older than delete #{state.tombstone_seq}"
                    )
                state.revive()
            outcome = self._apply(entry, state, event_type)
            state.advance(sequence)
            if event_type == "TIME_ENTRY_RESTORED":
                state.restored(sequence)
            return outcome
        return skipped(f"{event_type} is not a time entry event")

    def _apply(self, entry: TimeEntry, state: EntryState, why: str) -> Outcome:
        """Make the target hold exactly this entry's bookings (or none when out of scope)."""
        reason = out_of_scope(entry, self.scope)
        desired: dict[str, Booking] = {}
        if reason is None and not entry.running:
            try:
                desired = {b.key: b for b in self.connector.bookings(entry)}
            except (ArithmeticError, ValueError) as exc:
                # Dates or numbers the mapping cannot represent: the same payload would fail
                # on every retry, so it is a permanent error, not an unexpected one.
                raise PermanentError(f"unusable time entry payload: {exc}") from None
        outcome = Outcome("applied", reason or why)
        if state.owner and state.owner != entry.user_id and (state.ids or state.pending):
            self._remove_all(entry, state, outcome, f"owner changed from {state.owner}")
        for booking_key in [k for k in state.ids if k not in desired]:
            self._renew_lock()
            self.connector.delete(entry, state.ids[booking_key])
            state.drop_id(booking_key)
            outcome.operations.append(f"delete {booking_key or 'record'}")
        unchanged = 0
        for booking_key, booking in desired.items():
            digest = booking_digest(booking)
            if booking_key in state.ids:
                if state.hashes.get(booking_key) == digest:
                    unchanged += 1  # the target holds exactly this already: no call
                    continue
                old_id = state.ids[booking_key]
                self._renew_lock()
                new_id = self.connector.update(entry, old_id, booking)
                if new_id != old_id:
                    state.set_id(booking_key, new_id)
                state.set_hash(booking_key, digest)
                outcome.operations.append(f"update {booking_key or 'record'} {new_id}")
            else:
                self._create(entry, state, booking, outcome)
                if booking_key in state.ids:
                    state.set_hash(booking_key, digest)
        self._index(entry, state)
        state.set_owner(entry.user_id)
        outcome.remote_ids = dict(state.ids)
        if unchanged and not outcome.operations:
            outcome.action, outcome.reason = "skipped", "unchanged"
        return outcome

    def _index(self, entry: TimeEntry, state: EntryState) -> None:
        """Keep the (target, owner) index of booked entries by local day (Keys.owner_days)."""
        old = state.owner if state.owner and state.day else None
        day = None
        if state.ids:
            day = entry.start.astimezone(owner_zone(entry, self.connector.settings)).date()
        pipe = self.client.pipeline(transaction=True)
        if old is not None and (day is None or old != entry.user_id):
            pipe.zrem(self.keys.owner_days(self.target, old), entry.id)
        if day is not None:
            key = self.keys.owner_days(self.target, entry.user_id)
            pipe.zadd(key, {entry.id: day.toordinal()})
            pipe.expire(key, self.state_ttl)
        pipe.execute()
        state.set_day(None if day is None else day.isoformat())

    def _create(
        self, entry: TimeEntry, state: EntryState, booking: Booking, outcome: Outcome
    ) -> None:
        if booking.key in state.pending:
            found = self._find_pending(entry, state, booking)
            if found is not None:
                state.set_id(booking.key, found)
                self._renew_lock()
                new_id = self.connector.update(entry, found, booking)
                if new_id != found:
                    state.set_id(booking.key, new_id)
                outcome.operations.append(f"reconciled {booking.key or 'record'} {new_id}")
                return
        self._renew_lock()
        if not state.mark_pending(booking, self.replicas):
            # Not on enough replicas: a failover now could lose the record and let a retry
            # create a second time. Nothing was sent: forget it and try again later.
            state.clear_pending(booking.key)
            raise TransientError(
                f"{self.target}: the create's pending record did not reach "
                f"{self.replicas[0] if self.replicas else 0} Redis replica(s) in time; retrying"
            )
        try:
            remote_id = self.connector.create(entry, booking)
        except TransientError as exc:
            if not exc.outcome_unknown:
                state.clear_pending(booking.key)
            raise
        except (PermanentError, ConfigurationError):
            state.clear_pending(booking.key)  # refused: surely nothing was created
            raise
        state.set_id(booking.key, remote_id)
        outcome.operations.append(f"create {booking.key or 'record'} {remote_id}")

    def _find_pending(self, entry: TimeEntry, state: EntryState, booking: Booking) -> str | None:
        """An earlier create of this booking may have happened: find it, or refuse to guess."""
        if not self.connector.searchable:
            raise UnknownOutcomeError(
                f"unknown outcome — an earlier create of entry {entry.id} on {self.target} may "
                f"have succeeded and {self.target} cannot be searched; check {self.target} for "
                "it before replaying with --force"
            )
        sent = state.pending.get(booking.key, PendingCreate(0.0, {}))
        ready_at = sent.at + self.connector.reconcile_after
        wait = ready_at - time.time()
        if wait > 0:
            raise TransientError(
                f"{self.target}: an earlier create of entry {entry.id} may still be in progress; "
                f"searching for it in {wait:.0f}s",
                retry_after=wait,
            )
        self._renew_lock()
        # Search for what was sent (the booking may have changed since, or be unknown now).
        found = self.connector.find(entry, Booking(booking.key, sent.payload or booking.payload))
        if found is None:
            state.clear_pending(booking.key)
        return found

    def _remove_all(self, entry: TimeEntry, state: EntryState, outcome: Outcome, why: str) -> None:
        for booking_key in list(state.pending):
            if booking_key not in state.ids:
                found = self._find_pending(entry, state, Booking(booking_key, {}))
                if found is not None:
                    state.set_id(booking_key, found)
        for booking_key, remote_id in list(state.ids.items()):
            self._renew_lock()
            self.connector.delete(entry, remote_id)
            state.drop_id(booking_key)
            outcome.operations.append(f"delete {booking_key or 'record'} ({why})")

    def _delete(self, entry: TimeEntry, state: EntryState, sequence: int, why: str) -> Outcome:
        outcome = Outcome("deleted", why)
        self._remove_all(entry, state, outcome, why)
        if state.owner and state.day:
            self.client.zrem(self.keys.owner_days(self.target, state.owner), entry.id)
            state.set_day(None)
        state.tombstone(sequence)
        return outcome


def booking_digest(booking: Booking) -> str:
    """A stable digest of what a booking writes (its key and payload, keys sorted)."""
    data = orjson.dumps(
        {"key": booking.key, "payload": booking.payload},
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
        default=str,
    )
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def skipped(reason: str) -> Outcome:
    return Outcome("skipped", reason)
