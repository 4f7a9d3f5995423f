"""Clockify approvals → Organi worklog statuses, and confirmation statuses where configured
(README "Organi", docs/ARCHITECTURE.md §8).

NEW_APPROVAL_REQUEST and APPROVAL_REQUEST_STATUS_UPDATED set the worklog status of the owner's
worklogs inside the request's ``dateRange``, found through the relay's own records: the engine's
(target, owner) index of booked entries by local day (``Keys.owner_days``) and each entry's ID
map; Organi is never searched. One status call per delivery (``{worklogIds, statusId,
comment}``, the Clockify note as the comment); the state → status table is
``[targets.organi.statuses]`` (config.py ``DEFAULT_STATUSES``). With a
``[targets.organi.confirmation_statuses]`` table the confirmation (customer approval) status is
driven the same way, by the same code (:class:`StatusKind`): one more call per delivery, after
the worklog status, with its own per-worklog records; without the table it is never called.

Rules, per approval request (``Keys.approval``), under a per-request lock:

* Ordered by ``status.updatedAt``: an older state than the one applied is skipped; the same
  state again sends nothing for the worklogs it already reached.
* Per worklog the state already set is kept (``wl:<id>`` = its ``updatedAt``): ids Organi
  answered ``success`` for are never sent again for that state (per status kind: ``wl:`` and
  ``denied:`` for the worklog status, ``cwl:`` and ``cdenied:`` for the confirmation status).
  ``failed`` ids are retried alone (a TransientError, the usual retry machinery); ``denied`` ids
  are recorded and, once no failed id is left, dead-lettered with the reason (a PermanentError
  naming them). A replay with ``--force`` sends the denied ids again.
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
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import redis
from redis.lock import Lock

from clockify_relay.clockify.models import PayloadError, parse_approval
from clockify_relay.connectors.organi.api import OrganiClient, StatusRecord, StatusResult
from clockify_relay.connectors.organi.config import OrganiConfig, StatusAction
from clockify_relay.errors import PermanentError, TransientError
from clockify_relay.pipeline.engine import LOCK_WAIT, Outcome, skipped
from clockify_relay.pipeline.messages import Envelope
from clockify_relay.redis_conn import Keys

TARGET = "organi"
Renew = Callable[[], None]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class StatusKind:
    """One of Organi's status flows an approval state drives: its table in the config, its
    record fields and its three client calls."""

    label: str  # "" or "confirmation ", put before the action in messages
    done: str  # record field prefix: the worklog reached the state
    denied: str  # record field prefix: Organi denied it
    table: Callable[[OrganiConfig], Mapping[str, StatusAction | None]]
    set: Callable[[OrganiClient, Sequence[str], int, str | None], StatusResult]
    undo: Callable[[OrganiClient, Sequence[str], int], StatusResult]
    history: Callable[[OrganiClient, str], Sequence[StatusRecord]]

    def active(self, config: OrganiConfig) -> bool:
        return bool(self.table(config))


WORKLOG_STATUS = StatusKind(
    label="",
    done="wl:",
    denied="denied:",
    table=lambda config: config.statuses,
    set=lambda client, ids, status, comment: client.set_worklog_status(ids, status, comment),
    undo=lambda client, ids, status: client.undo_worklog_status(ids, status),
    history=lambda client, worklog_id: client.worklog_status_history(worklog_id),
)
CONFIRMATION_STATUS = StatusKind(
    label="confirmation ",
    done="cwl:",
    denied="cdenied:",
    table=lambda config: config.confirmation_statuses,
    set=lambda client, ids, status, comment: client.set_confirmation_status(ids, status, comment),
    undo=lambda client, ids, status: client.undo_confirmation_status(ids, status),
    history=lambda client, worklog_id: client.confirmation_status_history(worklog_id),
)
KINDS = (WORKLOG_STATUS, CONFIRMATION_STATUS)


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
    fields: Mapping[str, str]  # all of them, for the per-worklog marks of each kind

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
            fields=fields,
        )

    def _marks(self, prefix: str) -> dict[str, str]:
        return {k[len(prefix) :]: v for k, v in self.fields.items() if k.startswith(prefix)}

    def denied(self, kind: StatusKind) -> dict[str, str]:
        """Worklog id → the ``updated_at`` of the state Organi denied this kind's status for."""
        return self._marks(kind.denied)

    def marks(self) -> list[str]:
        """The record fields of every kind's per-worklog marks."""
        prefixes = tuple(p for kind in KINDS for p in (kind.done, kind.denied))
        return [k for k in self.fields if k.startswith(prefixes)]

    def pending(self, kind: StatusKind, worklog_id: str) -> bool:
        """Whether this kind's status has yet to be sent (or denied) for the worklog."""
        marker = self.updated_at
        return (
            self.fields.get(kind.done + worklog_id) != marker
            and self.fields.get(kind.denied + worklog_id) != marker
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
                    stale = record.marks()
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
            elif force:
                denied = [kind.denied + w for kind in KINDS for w in record.denied(kind)]
                if denied:
                    self.redis.hdel(key, *denied)
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
        kinds = [kind for kind in KINDS if kind.active(self.config)]
        ids = [w for w in worklog_ids if any(newest.pending(kind, w) for kind in kinds)]
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
        """Each status kind in turn (the worklog status, then the confirmation status if
        configured); a failed or denied id of one kind does not stop the other."""
        worklog_ids = list(dict.fromkeys(worklog_ids))
        results = [
            self._apply_kind(kind, record, worklog_ids, renew)
            for kind in KINDS
            if kind.active(self.config)
        ]
        done = [result for result in results if result is not None]
        if not done:
            return skipped(
                f"{record.state} of {record.updated_at} already applied to its "
                f"{len(worklog_ids)} worklog(s)"
            )
        outcome = Outcome("applied", "; ".join(result.reason for result in done))
        for result in done:
            outcome.operations.extend(result.operations)
        failed = [result.failed for result in done if result.failed]
        if failed:
            raise TransientError("; ".join(failed))
        denied = [result.denied for result in done if result.denied]
        if denied:
            raise PermanentError("; ".join(denied))
        return outcome

    def _apply_kind(
        self, kind: StatusKind, record: ApprovalRecord, worklog_ids: Sequence[str], renew: Renew
    ) -> _KindResult | None:
        """Bring one status kind of the worklogs to the record's state; None if it already
        was."""
        key = self.keys.approval(TARGET, record.request_id)
        marker = record.updated_at
        todo = [w for w in worklog_ids if record.pending(kind, w)]
        if not todo:
            return None
        action = kind.table(self.config).get(record.state)
        if action is None:
            self._mark(key, {kind.done + w: marker for w in todo})
            return _KindResult(f"{record.state}: no {kind.label}status configured; worklogs kept")
        what = f"{kind.label}{action}"
        result = _KindResult(f"approval {record.state} → {what}")
        if action.undo:
            ready: list[str] = []
            nothing: list[str] = []
            for worklog_id in todo:
                renew()
                current = current_status(kind.history(self.client, worklog_id))
                (ready if current == action.status_id else nothing).append(worklog_id)
            if nothing:
                self._mark(key, {kind.done + w: marker for w in nothing})
                result.operations.append(
                    f"nothing to undo on {', '.join(nothing)} ({kind.label}status "
                    f"{action.status_id} is not current)"
                )
            if not ready:
                return result
            renew()
            answer = kind.undo(self.client, ready, action.status_id)
        else:
            renew()
            answer = kind.set(self.client, todo, action.status_id, record.note or None)
        changes: dict[str, str] = {kind.done + w: marker for w in answer.success}
        changes.update({kind.denied + w: marker for w in answer.denied})
        self._mark(key, changes)
        if answer.success:
            result.operations.append(f"{what} on {', '.join(answer.success)}")
        if answer.failed:
            result.failed = (
                f"{TARGET}: {what} failed for worklog(s) {', '.join(answer.failed)} "
                f"(approval {record.request_id}, {record.state}); retrying those only"
            )
        # The denied among these worklogs (not others of the request, dead-lettered before).
        before = record.denied(kind)
        earlier = (w for w in worklog_ids if before.get(w) == marker)
        denied = sorted({*answer.denied, *earlier}, key=str)
        if denied:
            result.denied = (
                f"{TARGET}: Organi denied {what} for worklog(s) {', '.join(denied)} (approval "
                f"{record.request_id}, {record.state}); the others are set. Replay with --force "
                "to send the denied ones again"
            )
        return result

    def _mark(self, key: str, changes: Mapping[str, str]) -> None:
        if not changes:
            return
        pipe = self.redis.pipeline(transaction=True)
        mapping: dict[Any, Any] = dict(changes)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, self.ttl)
        pipe.execute()


@dataclass
class _KindResult:
    """What one status kind did: the reason and operations, and the failed and denied
    messages (empty when none)."""

    reason: str
    operations: list[str] = field(default_factory=list)
    failed: str = ""
    denied: str = ""


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
