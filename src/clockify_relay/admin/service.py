"""Operator operations shared by the CLI commands and the admin HTTP API.

Everything here is plain synchronous code over a :class:`Runtime` that needs nothing but Redis:
it lists, shows, purges and *queues* — replays go to the workers, a pause is a flag the workers
read — and never calls a target (docs/ARCHITECTURE.md, "Operator actions go through the
workers"). The CLI calls it directly, the admin API in a thread pool, so both select letters by
the same rule (:func:`select_letters`: ids, or all with filters; force only with ids) and refuse
the same bad input (:class:`OpsError` for a bad value, :class:`NotFound` for an unknown id).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from clockify_relay.connectors import registry
from clockify_relay.pipeline import delivery, trace
from clockify_relay.pipeline.control import FINAL_STATES
from clockify_relay.pipeline.dlq import ROUTE_TARGET, DeadLetter, dlq_id
from clockify_relay.pipeline.messages import Envelope
from clockify_relay.pipeline.runtime import Runtime

log = logging.getLogger("clockify_relay.admin")

SHORT_ERROR = 80

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class OpsError(ValueError):
    """Bad operator input (a filter value, a request body); the message says what is wrong."""


class NotFound(LookupError):
    """No dead letter / event with this id."""

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"no {what} with id {ident!r}")
        self.what = what
        self.ident = ident


# --- filters -------------------------------------------------------------------------------


def parse_when(value: str, now: float | None = None) -> float:
    """A point in time as a Unix timestamp.

    Accepts a relative age (``90s``, ``30m``, ``2h``, ``3d``, ``1w`` — that long before now), an
    ISO date (``2026-03-10``, midnight UTC) or an ISO datetime (``2026-03-10T09:00``, UTC unless
    it carries an offset).
    """
    text = value.strip()
    if not text:
        raise OpsError("empty time value")
    match = _RELATIVE.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        return (time.time() if now is None else now) - amount * _UNIT_SECONDS[unit]
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise OpsError(
            f"{value!r} is not a time: use an ISO date/datetime (2026-03-10, "
            "2026-03-10T09:00:00Z) or an age like 30m, 2h, 3d, 1w"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters an operation applies to (all fields optional, combined with AND)."""

    target: str | None = None
    event_type: str | None = None
    since: float | None = None
    until: float | None = None

    @classmethod
    def parse(
        cls,
        target: str | None = None,
        event_type: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> LetterFilter:
        """Build a filter from operator text (empty strings count as not given)."""
        start = parse_when(since) if since else None
        end = parse_when(until) if until else None
        if start is not None and end is not None and start > end:
            raise OpsError("since is later than until")
        return cls(target or None, event_type or None, start, end)


def list_letters(rt: Runtime, flt: LetterFilter | None = None) -> list[DeadLetter]:
    """Dead letters matching the filter, oldest last failure first."""
    flt = flt or LetterFilter()
    return rt.dlq.list(
        target=flt.target, event_type=flt.event_type, since=flt.since, until=flt.until
    )


def get_letter(rt: Runtime, letter_id: str) -> DeadLetter:
    """One dead letter; raises :class:`NotFound`."""
    letter = rt.dlq.get(letter_id)
    if letter is None:
        raise NotFound("dead letter", letter_id)
    return letter


# --- presentation helpers shared by table and JSON output ---------------------------------


def iso(ts: float | None) -> str | None:
    """A Unix timestamp as an ISO-8601 UTC string (seconds precision)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def shorten(text: str | None, limit: int = SHORT_ERROR) -> str:
    """One line, at most ``limit`` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def letter_summary(letter: DeadLetter) -> dict[str, Any]:
    """The columns of a listing (no envelope, no history)."""
    return {
        "id": letter.id,
        "target": letter.target,
        "event_type": letter.event_type,
        "event_id": letter.event_id,
        "entry_id": letter.entity_id,
        "error_kind": letter.error_kind,
        "error": letter.error,
        "status": letter.status,
        "attempts": letter.attempts,
        "first_failure": iso(letter.first_failure),
        "last_failure": iso(letter.last_failure),
    }


def letter_detail(letter: DeadLetter) -> dict[str, Any]:
    """The whole record, with readable times added beside the raw timestamps."""
    data = letter.to_json()
    data["first_failure_at"] = iso(letter.first_failure)
    data["last_failure_at"] = iso(letter.last_failure)
    data["history"] = [{**item, "at_iso": iso(item.get("at"))} for item in letter.history]
    return data


# --- replay and purge ---------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What happened to one id in a replay request: queued for the workers (``state`` and
    ``message_id``), or why not; after ``--wait``, where the workers took it."""

    id: str
    ok: bool
    message: str
    target: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    found: bool = True
    dry_run: bool = False
    state: str | None = None
    message_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def pause_note(rt: Runtime, target: str) -> str | None:
    """Why a target's deliveries would be held now, or None when it is not paused."""
    pause = rt.control.pauses().get(target)
    if pause is None:
        return None
    return f"{target} is paused ({pause.reason}, by {pause.by}, since {iso(pause.since)})"


def select_letters(
    rt: Runtime, ids: Sequence[str] | None, flt: LetterFilter | None, *, force: bool = False
) -> tuple[list[DeadLetter], list[str]]:
    """The letters an id list or a filter names, and the ids that do not exist.

    Exactly one of ``ids`` (non-empty) and ``flt`` must be given: an empty request must never
    mean "everything" by accident. ``force`` (replay despite an unknown outcome) is accepted
    only with explicit ids, because the operator must have checked each target record first.
    """
    if ids and flt is not None:
        raise OpsError("give either ids or all (with optional filters), not both")
    if force and not ids:
        raise OpsError("force needs explicit dead letter ids: check each target first")
    if ids:
        found: list[DeadLetter] = []
        missing: list[str] = []
        for letter_id in dict.fromkeys(ids):  # keep order, drop repeats
            letter = rt.dlq.get(letter_id)
            if letter is None:
                missing.append(letter_id)
            else:
                found.append(letter)
        return found, missing
    if flt is None:
        raise OpsError("give dead letter ids, or ask for all (optionally filtered)")
    return list_letters(rt, flt), []


def replay_many(
    rt: Runtime,
    letters: Iterable[DeadLetter],
    *,
    force: bool = False,
    dry_run: bool = False,
    by: str = "cli",
) -> list[ReplayResult]:
    """Queue the letters' deliveries for the workers (pipeline/delivery.py rule 5); a dry run
    says what would happen, including a target's pause. Nothing is removed here: a letter
    leaves the dead-letter queue when a worker has delivered it."""
    results: list[ReplayResult] = []
    queue: list[DeadLetter] = []
    in_flight = {} if dry_run else rt.control.replay_states([letter.id for letter in letters])
    queued: list[ReplayResult] = []
    for letter in letters:
        where = "routed again" if letter.target == ROUTE_TARGET else f"delivered to {letter.target}"
        paused = None if letter.target == ROUTE_TARGET else pause_note(rt, letter.target)
        held = f"; {paused}: held until resumed" if paused else ""
        if dry_run:
            message = f"would be {where} by the workers{held}"
            results.append(_result(letter, True, message, dry_run=True))
            continue
        # Re-read: another operator or a worker may have replayed or purged it meanwhile.
        current = rt.dlq.get(letter.id)
        if current is None:
            results.append(_result(letter, True, "already gone (replayed or purged)"))
            continue
        earlier = in_flight.get(letter.id)
        if earlier is not None and earlier["state"] not in FINAL_STATES and not force:
            # Its delivery is queued, retrying or held already: a second one would only run
            # the same idempotent delivery twice. --wait follows the one under way.
            state = str(earlier["state"])
            message = f"a replay is already under way ({state}); not queued again"
            results.append(_result(current, True, message, state=state))
            continue
        queue.append(current)
        result = _result(current, True, f"queued to be {where}{held}", state="queued")
        results.append(result)
        queued.append(result)
    if queue:
        for result, message_id in zip(
            queued, delivery.queue_replays(rt, queue, force, by), strict=True
        ):
            result.message_id = message_id
    return results


def _result(letter: DeadLetter, ok: bool, message: str, **extra: Any) -> ReplayResult:
    return ReplayResult(
        letter.id, ok, message, letter.target, letter.event_id, letter.event_type, **extra
    )


def replay_progress(rt: Runtime, results: Sequence[ReplayResult]) -> list[ReplayResult]:
    """The queued results brought up to date with what the workers recorded (their ``state``
    becomes delivered, failed, retrying or held; ``ok`` false once failed)."""
    queued = [r for r in results if r.state is not None]
    states = rt.control.replay_states([r.id for r in queued])
    for result in queued:
        record = states.get(result.id)
        mine = result.message_id
        if record is None or (mine is not None and record.get("message_id", mine) != mine):
            continue  # another replay's note (the queued note carries the message id)
        result.state = str(record["state"])
        detail = record.get("error") or record.get("detail")
        if result.state == "failed":
            result.ok = False
            result.message = f"failed again: {shorten(str(detail))} (kept in the DLQ)"
        elif result.state == "delivered":
            result.message = f"delivered ({shorten(str(detail))})"
        elif result.state == "held":
            result.message = f"held: {detail}"
        elif result.state == "retrying":
            result.message = f"failed transiently; retrying in {record.get('delay')} s"
    return list(results)


SETTLED = frozenset({"delivered", "failed", "held"})


def wait_for_replays(
    rt: Runtime,
    results: Sequence[ReplayResult],
    timeout: float,
    progress: Callable[[list[ReplayResult]], None] | None = None,
    interval: float = 0.5,
) -> list[ReplayResult]:
    """Follow queued replays until each is delivered, failed again or held (a paused target),
    or ``timeout`` seconds passed; ``progress`` sees every update."""
    deadline = time.monotonic() + timeout
    while True:
        current = replay_progress(rt, results)
        if progress is not None:
            progress(current)
        pending = [r for r in current if r.state is not None and r.state not in SETTLED]
        if not pending or time.monotonic() >= deadline:
            return current
        time.sleep(interval)


def missing_results(ids: Iterable[str]) -> list[ReplayResult]:
    """Results for ids that name no dead letter."""
    return [ReplayResult(i, False, "no such dead letter", found=False) for i in ids]


def purge(rt: Runtime, letter_ids: Sequence[str]) -> int:
    """Remove dead letters for good; returns how many existed."""
    return rt.dlq.remove(letter_ids)


# --- events ---------------------------------------------------------------------------------


@dataclass
class EventView:
    """What the relay knows about one event: its envelope, trace and open dead letters."""

    event_id: str
    envelope: Envelope | None
    records: list[dict[str, Any]]
    dead_letters: list[DeadLetter]

    def summary(self) -> dict[str, Any]:
        """The envelope's identifying fields (the payload itself is left out)."""
        env: dict[str, Any] = dict(self.envelope or {})
        payload = env.get("payload") if isinstance(env.get("payload"), dict) else {}
        assert isinstance(payload, dict)
        return {
            "event_id": self.event_id,
            "event_type": env.get("event_type"),
            "entry_id": env.get("entity_id"),
            "workspace_id": env.get("workspace_id"),
            "sequence": env.get("sequence"),
            "received_at": env.get("received_at"),
            "description": payload.get("description"),
            "user_id": payload.get("userId"),
            "project_id": payload.get("projectId"),
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (trace records get an ISO ``at_iso`` beside ``at``)."""
        return {
            "event_id": self.event_id,
            "summary": self.summary() if self.envelope is not None else None,
            "envelope": self.envelope,
            "trace": [{**r, "at_iso": iso(r.get("at"))} for r in self.records],
            "dead_letters": [letter_summary(letter) for letter in self.dead_letters],
        }


def event_view(rt: Runtime, event_id: str) -> EventView:
    """Envelope, trace and dead letters of one event; raises :class:`NotFound` when the relay
    has none of them (never seen, or the trace expired)."""
    envelope, records = trace.read(rt.redis, rt.keys, event_id)
    # A dead letter outlives its trace; its id is derived from (target, event id).
    letters = [
        letter
        for letter in (rt.dlq.get(dlq_id(t, event_id)) for t in (*registry.names(), ROUTE_TARGET))
        if letter is not None
    ]
    if envelope is None and not records and not letters:
        raise NotFound("event", event_id)
    if envelope is None and letters:
        envelope = letters[0].envelope
    return EventView(event_id, envelope, records, letters)


def event_outcomes(records: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Each target's latest outcome in an event's trace (created, updated, skipped, retry,
    held, dead-lettered…)."""
    outcomes: dict[str, str] = {}
    for record in records:
        if record.get("stage") == "deliver" and record.get("target"):
            outcomes[str(record["target"])] = str(record.get("outcome"))
    return outcomes


def list_events(
    rt: Runtime,
    *,
    since: float,
    until: float | None = None,
    entry: str | None = None,
    target: str | None = None,
    outcome: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Recent events (newest first) with each target's outcome, filtered by entry id, target
    and outcome (an event matches when the target — or any target — has that outcome)."""
    if limit < 1:
        raise OpsError("limit must be at least 1")
    found: list[dict[str, Any]] = []
    # Read in pages: filters may drop many; the scan stops at a fixed multiple of the limit.
    page, offset = max(limit, 100), 0
    while len(found) < limit and offset < 20 * page:
        batch: list[tuple[bytes, float]] = rt.redis.zrevrangebyscore(  # type: ignore[assignment]
            rt.keys.events,
            "+inf" if until is None else until,
            since,
            start=offset,
            num=page,
            withscores=True,
        )
        if not batch:
            break
        offset += len(batch)
        event_ids = [raw_id.decode() for raw_id, _ in batch]
        stored = trace.read_many(rt.redis, rt.keys, event_ids)
        for event_id, (_, at), (envelope, records) in zip(event_ids, batch, stored, strict=True):
            if envelope is None:
                continue  # its trace expired
            outcomes = event_outcomes(records)
            if entry is not None and envelope.get("entity_id") != entry:
                continue
            if target is not None and target not in outcomes:
                continue
            if outcome is not None:
                looked_at = [outcomes.get(target)] if target else list(outcomes.values())
                if outcome not in looked_at:
                    continue
            found.append(
                {
                    "event_id": event_id,
                    "routed_at": iso(float(at)),
                    "event_type": envelope.get("event_type"),
                    "entry_id": envelope.get("entity_id"),
                    "sequence": envelope.get("sequence"),
                    "outcomes": outcomes,
                }
            )
            if len(found) == limit:
                break
    return found


# --- targets --------------------------------------------------------------------------------


def _known_target(name: str) -> str:
    if name not in registry.names():
        raise OpsError(f"unknown target {name!r}; known: {', '.join(registry.names())}")
    return name


def targets_overview(rt: Runtime) -> list[dict[str, Any]]:
    """Every registered target: enabled or not, paused (by whom, why, since), held deliveries,
    the current run of transient failures."""
    pauses = rt.control.pauses()
    enabled = set(rt.enabled_targets())
    rows = []
    for name in registry.names():
        pause = pauses.get(name)
        failures = rt.redis.get(rt.keys.failures(name))
        rows.append(
            {
                "target": name,
                "enabled": name in enabled,
                "state": "running"
                if pause is None
                else "breaker open"
                if pause.breaker
                else "paused",
                "paused_by": pause.by if pause else None,
                "reason": pause.reason if pause else None,
                "since": iso(pause.since) if pause else None,
                "held": rt.outbox.held(name),
                "failures_in_a_row": int(failures or 0),
            }
        )
    return rows


def pause_target(rt: Runtime, name: str, by: str, reason: str = "") -> dict[str, Any]:
    """Pause a target: its deliveries are held in Redis until :func:`resume_target`."""
    pause = rt.control.pause(_known_target(name), by, reason)
    log.info("target %s paused by %s: %s", name, by, pause.reason)
    return {"target": name, "paused": True, "by": by, "reason": pause.reason}


def resume_target(rt: Runtime, name: str, by: str) -> dict[str, Any]:
    """Resume a target: its held deliveries are queued again in the order they were held."""
    was_paused, released = rt.control.resume(_known_target(name))
    log.info("target %s resumed by %s: %d held deliveries queued", name, by, released)
    return {"target": name, "was_paused": was_paused, "released": released}
