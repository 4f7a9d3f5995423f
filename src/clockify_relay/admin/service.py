"""Operator operations shared by the ``dlq``/``events`` CLI commands and the admin HTTP API.

Everything here is plain synchronous code over a :class:`Runtime` (Redis + connectors): the CLI
calls it directly, the admin API runs it in a thread pool. Both surfaces therefore list, show,
replay and purge dead letters the same way, and both refuse the same bad input (:class:`OpsError`
for a bad filter value, :class:`NotFound` for an unknown id).

Admin tokens (HS256 JWTs with a required ``exp``) are minted and verified here too, so the
``admin-token`` command and the API agree on the rules by construction; and ``check``'s
verification of Redis, webhook verification and the targets (:func:`check`).
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
from clockify_relay.pipeline.dlq import ROUTE_TARGET, DeadLetter, dlq_id
from clockify_relay.pipeline.messages import Envelope
from clockify_relay.pipeline.runtime import Runtime

log = logging.getLogger("clockify_relay.admin")

# The one algorithm admin tokens may use. Pinning it refuses "alg: none", RS256 tokens made with
# a public key as HMAC secret, and anything else an attacker might pick.
ADMIN_JWT_ALGORITHM = "HS256"
ADMIN_JWT_ISSUER = "clockify-relay"
# Small allowance for clock skew between the machine that minted a token and the receiver.
ADMIN_JWT_LEEWAY = 10
MAX_TOKEN_TTL = 31 * 24 * 3600
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


class TokenError(Exception):
    """An admin token was refused; the message is safe to show (never contains the token)."""


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
    """What happened to one id in a replay request."""

    id: str
    ok: bool
    message: str
    target: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    found: bool = True
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def replay_one(rt: Runtime, letter_id: str, *, force: bool = False) -> ReplayResult:
    """Replay one dead letter now (see :func:`delivery.replay`); raises :class:`NotFound`."""
    letter = get_letter(rt, letter_id)
    return _replay_letter(rt, letter, force)


def _replay_letter(rt: Runtime, letter: DeadLetter, force: bool) -> ReplayResult:
    try:
        ok, message = delivery.replay(rt, letter, force)
    except Exception as exc:
        # Relay errors are handled by delivery.replay; this is Redis trouble or a bug. One bad
        # letter must not abort a bulk replay, and the letter stays where it is.
        log.exception("replay of dead letter %s failed unexpectedly", letter.id)
        ok, message = False, f"unexpected error ({type(exc).__name__}); the letter was kept"
    return ReplayResult(letter.id, ok, message, letter.target, letter.event_id, letter.event_type)


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
    progress: Callable[[ReplayResult], None] | None = None,
) -> list[ReplayResult]:
    """Replay letters one after another; a dry run only reports what would be replayed."""
    results: list[ReplayResult] = []
    for letter in letters:
        if dry_run:
            result = ReplayResult(
                letter.id,
                True,
                f"would replay ({letter.error_kind}: {shorten(letter.error)})",
                letter.target,
                letter.event_id,
                letter.event_type,
                dry_run=True,
            )
        else:
            # Re-read: another operator or a worker may have replayed or purged it meanwhile.
            current = rt.dlq.get(letter.id)
            if current is None:
                result = ReplayResult(
                    letter.id,
                    True,
                    "already gone (replayed or purged)",
                    letter.target,
                    letter.event_id,
                    letter.event_type,
                )
            else:
                result = _replay_letter(rt, current, force)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


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
