"""The delivery engine: one Clockify event → the right create, update or delete on one target.

Ordering rules (ARCHITECTURE §3), applied under a per-(target, entry) lock against the state the
relay keeps per (target, entry) — the ID map, the last applied sequence, a tombstone, creates
whose outcome is pending, and the owner the records were booked for:

1. NEW_TIME_ENTRY / TIMER_STOPPED create only when the entry is unmapped and not tombstoned (and
   no newer state was applied); they never advance "last applied".
2. TIME_ENTRY_UPDATED / TIME_ENTRY_SPLIT apply when newer than the last applied sequence and
   the entry is not tombstoned; older ones are skipped.
3. TIME_ENTRY_DELETED deletes what is mapped and always leaves a tombstone; only a newer
   TIME_ENTRY_RESTORED revives the entry. A delete older than the last applied sequence is
   skipped.
4. An entry out of scope (BREAK, project not routed to the target) has nothing booked: what was
   booked is deleted. An owner change deletes and creates again.
5. With CLOCKIFY_API_KEY set, the entry is re-read from Clockify under the lock and that truth
   is written, whatever the event and its order.

Running timers are not booked until they stop. Skips are returned (and traced), never silent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from clockify_relay.clockify.models import PayloadError, TimeEntry, parse_time_entry
from clockify_relay.connectors.base import Booking, Connector
from clockify_relay.errors import (
    ConfigurationError,
    PermanentError,
    TransientError,
    UnknownOutcomeError,
)
from clockify_relay.redis_conn import Keys

CREATE_EVENTS = frozenset({"NEW_TIME_ENTRY", "TIMER_STOPPED"})
UPDATE_EVENTS = frozenset({"TIME_ENTRY_UPDATED", "TIME_ENTRY_SPLIT"})
LOCK_WAIT = 10  # seconds to wait for a busy entry before retrying later


def lock_timeout(visibility_timeout: int) -> int:
    """How long a per-entry lock outlives a worker that died holding it: shorter than the
    visibility timeout, so the redelivered message finds the lock gone."""
    return max(5, min(300, visibility_timeout // 2))


@dataclass
class Outcome:
    """What one delivery did."""

    action: str  # "applied" | "deleted" | "skipped"
    reason: str
    operations: list[str] = field(default_factory=list)
    remote_ids: dict[str, str] = field(default_factory=dict)


class EntryState:
    """The relay's memory of one entry on one target: a Redis hash, written field by field
    right after each downstream call succeeds (so a crash loses at most the call in flight)."""

    def __init__(self, client: redis.Redis, key: str, ttl: int) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl
        raw = {_text(k): _text(v) for k, v in client.hgetall(key).items()}
        self.ids = {k[3:]: v for k, v in raw.items() if k.startswith("id:")}
        self.pending = {k[8:] for k in raw if k.startswith("pending:")}
        self.applied_seq = int(raw.get("applied_seq", 0))
        tombstone = raw.get("tombstone_seq")
        self.tombstone_seq = int(tombstone) if tombstone is not None else None
        self.owner = raw.get("owner")

    def _write(self, mapping: dict[Any, Any] | None = None, *remove: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        if mapping:
            pipe.hset(self.key, mapping=mapping)
        if remove:
            pipe.hdel(self.key, *remove)
        pipe.expire(self.key, self.ttl)
        pipe.execute()

    def mark_pending(self, booking_key: str) -> None:
        self.pending.add(booking_key)
        self._write({f"pending:{booking_key}": "1"})

    def clear_pending(self, booking_key: str) -> None:
        self.pending.discard(booking_key)
        self._write(None, f"pending:{booking_key}")

    def set_id(self, booking_key: str, remote_id: str) -> None:
        self.ids[booking_key] = remote_id
        self.pending.discard(booking_key)
        self._write({f"id:{booking_key}": remote_id}, f"pending:{booking_key}")

    def drop_id(self, booking_key: str) -> None:
        self.ids.pop(booking_key, None)
        self._write(None, f"id:{booking_key}")

    def set_owner(self, owner: str) -> None:
        if owner != self.owner:
            self.owner = owner
            self._write({"owner": owner})

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def out_of_scope(entry: TimeEntry, section: Mapping[str, Any]) -> str | None:
    """Why this target books nothing for the entry, or None when it is in scope."""
    if entry.is_break and not section.get("book_breaks", False):
        return "BREAK entries are not booked (book_breaks = false)"
    projects = section.get("only_projects")
    if projects is not None and entry.project_id not in projects:
        return f"project {entry.project_id} is not in only_projects"
    if entry.project_id and entry.project_id in section.get("skip_projects", ()):
        return f"project {entry.project_id} is in skip_projects"
    return None


class Delivery:
    """Delivers events of one target; one instance per (worker process, target)."""

    def __init__(
        self,
        connector: Connector,
        client: redis.Redis,
        keys: Keys,
        state_ttl: int,
        reread: Any | None = None,
        lock_seconds: int = 300,
    ) -> None:
        self.connector = connector
        self.target = connector.name
        self.client = client
        self.keys = keys
        self.state_ttl = state_ttl
        # A ClockifyClient when rule 5 is on (duck-typed: get_time_entry(workspace, entry)).
        self.reread = reread
        self.lock_seconds = lock_seconds

    @contextmanager
    def locked(self, entry_id: str) -> Iterator[None]:
        lock = self.client.lock(
            self.keys.lock(self.target, entry_id),
            timeout=self.lock_seconds,
            blocking_timeout=LOCK_WAIT,
        )
        if not lock.acquire():
            raise TransientError(f"{self.target}: entry {entry_id} is busy in another delivery")
        try:
            yield
        finally:
            # Expired while we worked: the next holder proceeds on fresh state.
            with suppress(redis.exceptions.LockError):
                lock.release()

    def deliver(self, envelope: Mapping[str, Any], *, force: bool = False) -> Outcome:
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
            return self._decide(envelope, state)

    def _decide(self, envelope: Mapping[str, Any], state: EntryState) -> Outcome:
        event_type = str(envelope["event_type"])
        sequence = int(envelope["sequence"])
        try:
            entry = parse_time_entry(envelope["payload"])
        except PayloadError as exc:
            raise PermanentError(f"unusable time entry payload: {exc}") from None

        if self.reread is not None:
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
            if sequence < state.applied_seq:
                return skipped(f"delete #{sequence} is older than applied #{state.applied_seq}")
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
            return outcome
        return skipped(f"{event_type} is not a time entry event")

    def _apply(self, entry: TimeEntry, state: EntryState, why: str) -> Outcome:
        """Make the target hold exactly this entry's bookings (or none when out of scope)."""
        reason = out_of_scope(entry, self.connector.section)
        desired: dict[str, Booking] = {}
        if reason is None and not entry.running:
            desired = {b.key: b for b in self.connector.bookings(entry)}
        outcome = Outcome("applied", reason or why)
        if state.owner and state.owner != entry.user_id and (state.ids or state.pending):
            self._remove_all(entry, state, outcome, f"owner changed from {state.owner}")
        for booking_key in [k for k in state.ids if k not in desired]:
            self.connector.delete(entry, state.ids[booking_key])
            state.drop_id(booking_key)
            outcome.operations.append(f"delete {booking_key or 'record'}")
        for booking_key, booking in desired.items():
            if booking_key in state.ids:
                old_id = state.ids[booking_key]
                new_id = self.connector.update(entry, old_id, booking)
                if new_id != old_id:
                    state.set_id(booking_key, new_id)
                outcome.operations.append(f"update {booking_key or 'record'} {new_id}")
            else:
                self._create(entry, state, booking, outcome)
        state.set_owner(entry.user_id)
        outcome.remote_ids = dict(state.ids)
        return outcome

    def _create(
        self, entry: TimeEntry, state: EntryState, booking: Booking, outcome: Outcome
    ) -> None:
        if booking.key in state.pending:
            found = self._find_pending(entry, state, booking)
            if found is not None:
                state.set_id(booking.key, found)
                new_id = self.connector.update(entry, found, booking)
                if new_id != found:
                    state.set_id(booking.key, new_id)
                outcome.operations.append(f"reconciled {booking.key or 'record'} {new_id}")
                return
        state.mark_pending(booking.key)
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
        found = self.connector.find(entry, booking)
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
            self.connector.delete(entry, remote_id)
            state.drop_id(booking_key)
            outcome.operations.append(f"delete {booking_key or 'record'} ({why})")

    def _delete(self, entry: TimeEntry, state: EntryState, sequence: int, why: str) -> Outcome:
        outcome = Outcome("deleted", why)
        self._remove_all(entry, state, outcome, why)
        state.tombstone(sequence)
        return outcome


def skipped(reason: str) -> Outcome:
    return Outcome("skipped", reason)
