"""Clockify approvals → Organi worklog statuses (README "Organi", docs/ARCHITECTURE.md §8).

NEW_APPROVAL_REQUEST and APPROVAL_REQUEST_STATUS_UPDATED set the worklog status of the owner's
worklogs inside the request's ``dateRange``, found through the relay's own records: the engine's
(target, owner) index of booked entries by local day (``Keys.owner_days``) and each entry's ID
map; Organi is never searched. One status call per delivery (``{worklogIds, statusId,
comment}``, the Clockify note as the comment); the state → status table is
``[targets.organi.statuses]`` (config.py ``DEFAULT_STATUSES``).

Rules, per approval request (``Keys.approval``), under a per-request lock:

* Ordered by ``status.updatedAt``: an older state than the one applied is skipped; the same
  state again sends nothing for the worklogs it already reached.
* Per worklog the state already set is kept (``wl:<id>`` = its ``updatedAt``): ids Organi
  answered ``success`` for are never sent again for that state. ``failed`` ids are retried
  alone (a TransientError, the usual retry machinery); ``denied`` ids are recorded and, once no
  failed id is left, dead-lettered with the reason (a PermanentError naming them). A replay with
  ``--force`` sends the denied ids again.
* An undo ("undo 4") is not idempotent: it is sent only for worklogs whose status history shows
  the status to undo as the current one; the others count as done.
* ``dateRange`` names the owner's calendar days (Clockify writes them ``00:00:00Z`` …
  ``23:59:59Z``): its date parts are the owner's local days, as the index is.
* A worklog booked after its approval request arrived: the engine calls :meth:`Approvals.settle`
  after every delivery that leaves an entry booked, and the newest request covering the
  entry's day gives it its current status the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import redis
from redis.lock import Lock

from clockify_relay.clockify.models import PayloadError, parse_approval
from clockify_relay.connectors.organi.api import OrganiClient, StatusRecord
from clockify_relay.connectors.organi.config import OrganiConfig
from clockify_relay.errors import PermanentError, TransientError
from clockify_relay.pipeline.engine import LOCK_WAIT, Outcome, skipped
from clockify_relay.pipeline.messages import Envelope
from clockify_relay.redis_conn import Keys

TARGET = "organi"
Renew = Callable[[], None]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class ApprovalRecord:
    """One approval request's applied state, as kept in ``Keys.approval``."""

    request_id: str
    owner: str
    first_day: date
    last_day: date
    state: str
    note: str
    updated_at: str  # ISO instant; the marker of what each worklog was set to
    at: float  # the same as a timestamp, for ordering
    worklogs: Mapping[str, str]  # worklog id → the ``updated_at`` set on it
    denied: Mapping[str, str]  # worklog id → the ``updated_at`` Organi denied

    @classmethod
    def load(cls, request_id: str, raw: Mapping[bytes | str, bytes | str]) -> ApprovalRecord | None:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if "at" not in fields:
            return None
        return cls(
            request_id=request_id,
            owner=fields["owner"],
            first_day=date.fromisoformat(fields["first_day"]),
            last_day=date.fromisoformat(fields["last_day"]),
            state=fields["state"],
            note=fields.get("note", ""),
            updated_at=fields["updated_at"],
            at=float(fields["at"]),
            worklogs={k[3:]: v for k, v in fields.items() if k.startswith("wl:")},
            denied={k[7:]: v for k, v in fields.items() if k.startswith("denied:")},
        )

    def covers(self, day: date) -> bool:
        return self.first_day <= day <= self.last_day


def current_status(history: Sequence[StatusRecord]) -> int | None:
    """The status type of the newest history row (the fake and the document's example name it
    ``statusType.statusTypeId``; ``statusTypeId`` at the top level is read too)."""
    if not history:
        return None
    row = history[-1].raw
    status_type = row.get("statusType")
    value = status_type.get("statusTypeId") if isinstance(status_type, Mapping) else None
    if value is None:
        value = row.get("statusTypeId")
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


class Approvals:
    """Applies approval states to worklog statuses; shared by the approval handler and the
    connector (late worklogs)."""

    def __init__(
        self,
        client: OrganiClient,
        config: OrganiConfig,
        redis_client: redis.Redis,
        keys: Keys,
        ttl: int,
    ) -> None:
        self.client = client
        self.config = config
        self.redis = redis_client
        self.keys = keys
        self.ttl = ttl
        # The longest single call, plus a margin; the lock is renewed before each call.
        self.lock_seconds = int(2 * config.timeout + 5)

    def _lock(self, request_id: str) -> Lock:
        lock = Lock(
            self.redis,
            self.keys.lock(TARGET, f"approval:{request_id}"),
            timeout=self.lock_seconds,
            blocking_timeout=LOCK_WAIT,
        )
        if not lock.acquire():
            raise TransientError(f"{TARGET}: approval request {request_id} is busy; retrying")
        return lock

    def _renewer(self, lock: Lock) -> Renew:
        def renew() -> None:
            try:
                lock.reacquire()
            except redis.exceptions.LockError:
                raise TransientError(
                    f"{TARGET}: the approval's lock expired during the delivery; retrying"
                ) from None

        return renew

    def _record(self, request_id: str) -> ApprovalRecord | None:
        return ApprovalRecord.load(
            request_id, self.redis.hgetall(self.keys.approval(TARGET, request_id))
        )

    # -- the approval events ----------------------------------------------------------------

    def deliver(self, envelope: Envelope, *, force: bool = False) -> Outcome:
        """Bring the worklogs of an approval request's days to its state."""
        try:
            request = parse_approval(envelope["payload"])
        except PayloadError as exc:
            raise PermanentError(f"unusable approval request payload: {exc}") from None
        if request.updated_at is None or request.period_start is None:
            raise PermanentError(f"approval request {request.id} has no status.updatedAt")
        if request.period_end is None or not request.owner_user_id:
            raise PermanentError(f"approval request {request.id} has no dateRange or owner")
        at = request.updated_at.timestamp()
        lock = self._lock(request.id)
        try:
            record = self._record(request.id)
            if record is not None and at < record.at:
                return skipped(
                    f"{request.state} of {request.updated_at.isoformat()} is older than the "
                    f"applied {record.state} of {record.updated_at}"
                )
            key = self.keys.approval(TARGET, request.id)
            if record is None or at > record.at:
                pipe = self.redis.pipeline(transaction=True)
                if record is not None:
                    stale = [f"wl:{w}" for w in record.worklogs]
                    stale += [f"denied:{w}" for w in record.denied]
                    if stale:
                        pipe.hdel(key, *stale)
                pipe.hset(
                    key,
                    mapping={
                        "owner": request.owner_user_id,
                        # The owner's calendar days (module docstring).
                        "first_day": _day(request.period_start).isoformat(),
                        "last_day": _day(request.period_end).isoformat(),
                        "state": request.state,
                        "note": request.note,
                        "updated_at": request.updated_at.isoformat(),
                        "at": repr(at),
                    },
                )
                pipe.expire(key, self.ttl)
                owner_key = self.keys.owner_approvals(TARGET, request.owner_user_id)
                pipe.sadd(owner_key, request.id)
                pipe.expire(owner_key, self.ttl)
                pipe.execute()
            elif force and record.denied:
                self.redis.hdel(key, *(f"denied:{w}" for w in record.denied))
            record = self._record(request.id)
            assert record is not None
            worklog_ids = self._worklogs(record)
            return self._apply(record, worklog_ids, self._renewer(lock))
        finally:
            with suppress(redis.exceptions.LockError):
                lock.release()

    def _worklogs(self, record: ApprovalRecord) -> list[str]:
        """The owner's worklogs on the request's days, from the relay's records."""
        entry_ids: list[bytes] = self.redis.zrangebyscore(  # type: ignore[assignment]
            self.keys.owner_days(TARGET, record.owner),
            record.first_day.toordinal(),
            record.last_day.toordinal(),
        )
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.hgetall(self.keys.entry_state(TARGET, _text(entry_id)))
        ids: list[str] = []
        for state in pipe.execute():
            fields = {_text(k): _text(v) for k, v in state.items()}
            if fields.get("owner") == record.owner and "tombstone_seq" not in fields:
                ids.extend(v for k, v in sorted(fields.items()) if k.startswith("id:") and v)
        return ids

    # -- late worklogs ----------------------------------------------------------------------

    def settle(self, owner: str, day: date, worklog_ids: Iterable[str], renew: Renew) -> list[str]:
        """Give worklogs booked on ``day`` the current status of the newest approval request
        covering it (if any); returns the operations made."""
        request_ids = self.redis.smembers(self.keys.owner_approvals(TARGET, owner))
        covering = [
            record
            for request_id in request_ids
            if (record := self._record(_text(request_id))) is not None and record.covers(day)
        ]
        if not covering:
            return []
        newest = max(covering, key=lambda record: record.at)
        ids = [w for w in worklog_ids if newest.worklogs.get(w) != newest.updated_at]
        ids = [w for w in ids if newest.denied.get(w) != newest.updated_at]
        if not ids:
            return []
        lock = self._lock(newest.request_id)
        try:
            record = self._record(newest.request_id)
            if record is None:
                return []
            outcome = self._apply(record, ids, renew)
        finally:
            with suppress(redis.exceptions.LockError):
                lock.release()
        return [f"approval {record.request_id}: {op}" for op in outcome.operations]

    # -- both -------------------------------------------------------------------------------

    def _apply(self, record: ApprovalRecord, worklog_ids: Sequence[str], renew: Renew) -> Outcome:
        key = self.keys.approval(TARGET, record.request_id)
        marker = record.updated_at
        todo = [
            w
            for w in dict.fromkeys(worklog_ids)
            if record.worklogs.get(w) != marker and record.denied.get(w) != marker
        ]
        if not todo:
            return skipped(
                f"{record.state} of {marker} already applied to its {len(worklog_ids)} worklog(s)"
            )
        action = self.config.statuses.get(record.state)
        if action is None:
            self._mark(key, {f"wl:{w}": marker for w in todo})
            return Outcome("applied", f"{record.state}: no status configured; worklogs kept")
        outcome = Outcome("applied", f"approval {record.state} → {action}")
        if action.undo:
            ready: list[str] = []
            nothing: list[str] = []
            for worklog_id in todo:
                renew()
                current = current_status(self.client.worklog_status_history(worklog_id))
                (ready if current == action.status_id else nothing).append(worklog_id)
            if nothing:
                self._mark(key, {f"wl:{w}": marker for w in nothing})
                outcome.operations.append(
                    f"nothing to undo on {', '.join(nothing)} (status {action.status_id} is "
                    "not current)"
                )
            if not ready:
                return outcome
            renew()
            result = self.client.undo_worklog_status(ready, action.status_id)
        else:
            renew()
            result = self.client.set_worklog_status(
                todo, action.status_id, comment=record.note or None
            )
        changes: dict[str, str] = {f"wl:{w}": marker for w in result.success}
        changes.update({f"denied:{w}": marker for w in result.denied})
        self._mark(key, changes)
        if result.success:
            outcome.operations.append(f"{action} on {', '.join(result.success)}")
        if result.failed:
            raise TransientError(
                f"{TARGET}: {action} failed for worklog(s) {', '.join(result.failed)} "
                f"(approval {record.request_id}, {record.state}); retrying those only"
            )
        # The denied among these worklogs (not others of the request, dead-lettered before).
        earlier = (w for w in worklog_ids if record.denied.get(w) == marker)
        denied = sorted({*result.denied, *earlier}, key=str)
        if denied:
            raise PermanentError(
                f"{TARGET}: Organi denied {action} for worklog(s) {', '.join(denied)} (approval "
                f"{record.request_id}, {record.state}); the others are set. Replay with --force "
                "to send the denied ones again"
            )
        return outcome

    def _mark(self, key: str, changes: Mapping[str, str]) -> None:
        if not changes:
            return
        pipe = self.redis.pipeline(transaction=True)
        mapping: dict[Any, Any] = dict(changes)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, self.ttl)
        pipe.execute()


def _day(instant: datetime) -> date:
    """The calendar day Clockify means by a ``dateRange`` bound (module docstring)."""
    return instant.date()


class ApprovalHandler:
    """The Organi target's handler of approval events (connectors/spec.py: a booking target
    with a handler), over the connector's :class:`Approvals`."""

    def __init__(self, runtime: Any, section: Mapping[str, Any]) -> None:
        from clockify_relay.connectors.organi.connector import OrganiConnector

        connector = runtime.connector(TARGET)
        assert isinstance(connector, OrganiConnector)
        self.approvals = connector.approvals
        self.connector = connector
        self.lock_seconds = self.approvals.lock_seconds

    def deliver(self, envelope: Envelope, *, force: bool = False) -> Outcome:
        return self.approvals.deliver(envelope, force=force)

    def probe(self) -> str:
        return self.connector.probe()
