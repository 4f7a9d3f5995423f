"""What the delivery engine needs from a target: the :class:`Connector` contract.

The engine owns ordering, locks, the ID map, retries and the dead-letter queue. A connector owns
only two things: a pure mapping from a Clockify entry to the target's records (:meth:`bookings`)
and the HTTP calls that write them (:meth:`create`, :meth:`update`, :meth:`delete`).

A target that books one record per entry returns one :class:`Booking` with ``key=""``; a target
that books per local day (Blikk) returns one per day keyed ``YYYY-MM-DD``. The engine keeps the
ID map per key and reconciles: update keys that stay, create new keys, delete keys that went.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar, Protocol

import redis

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.errors import ConfigurationError, PermanentError
from clockify_relay.settings import Settings

RECONCILE_MARGIN = 15.0


@dataclass(frozen=True)
class Booking:
    """One record a target should hold for an entry, in the target's own payload format."""

    key: str
    payload: Mapping[str, Any]


class Connector(ABC):
    """A delivery target. Instances live for a worker process; methods are called under the
    engine's per-(target, entry) lock and may raise only :mod:`clockify_relay.errors` types."""

    name: ClassVar[str]
    # True when a create whose outcome is unknown can be found again on the target (find()).
    searchable: ClassVar[bool] = False
    # Seconds one HTTP request may take (connectors set it from their config), and the longest
    # wait for a rate-limit slot before a call (0 without a limiter).
    request_timeout: float = 15.0
    rate_wait: float = 0.0

    def __init__(
        self, settings: Settings, section: Mapping[str, Any], redis_client: redis.Redis
    ) -> None:
        self.settings = settings
        self.section = section
        self.redis = redis_client

    @abstractmethod
    def bookings(self, entry: TimeEntry) -> list[Booking]:
        """The records this entry should be on the target (pure; ConfigurationError if unmapped).

        An empty list means "nothing to book" (e.g. a zero-length entry)."""

    @abstractmethod
    def create(self, entry: TimeEntry, booking: Booking) -> str:
        """Create the record; return its remote id."""

    @abstractmethod
    def update(self, entry: TimeEntry, remote_id: str, booking: Booking) -> str:
        """Update the record; return its id (a new one if the target had lost it and it was
        re-created)."""

    @abstractmethod
    def delete(self, entry: TimeEntry, remote_id: str) -> None:
        """Delete the record; a record the target no longer has counts as deleted."""

    @property
    def reconcile_after(self) -> float:
        """Seconds after an unanswered create was sent before a search for it may run.

        By then our client has given up on the request; the margin (the section's
        ``reconcile_margin``, default 15 s) covers a target still finishing it after that."""
        margin = self.section.get("reconcile_margin", RECONCILE_MARGIN)
        if isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0:
            raise ConfigurationError(
                f"[targets.{self.name}] reconcile_margin must be a number of seconds"
            )
        return self.request_timeout + float(margin)

    @property
    def call_budget(self) -> float:
        """Worst-case seconds of one engine call: a rate-limit wait, then up to two requests
        (a token refresh and the call itself)."""
        return self.rate_wait + 2 * self.request_timeout

    def find(self, entry: TimeEntry, booking: Booking) -> str | None:
        """Find a record an earlier, interrupted create may have made (only if ``searchable``)."""
        raise NotImplementedError

    def booked(
        self, owner: str, day: date, remote_ids: Mapping[str, str], renew: Callable[[], None]
    ) -> list[str]:
        """Called by the engine after every delivery that leaves the entry booked (under its
        lock; ``renew`` renews it before a call): the owner, the local day the entry is indexed
        under and its remote ids. Returns the operations it made (e.g. Organi gives a worklog
        booked after its approval request arrived the request's status)."""
        return []

    def probe(self) -> str:
        """Check credentials and reachability; return one line for ``check``, which names the
        target itself (so the line does not: "API key accepted at …")."""
        return "no probe"

    def close(self) -> None:  # noqa: B027 - optional hook, most connectors have nothing to do
        """Release connections."""


class WorklogClient(Protocol):
    """The calls a one-worklog-per-entry target's HTTP client offers (Tracket, Organi)."""

    def create_worklog(self, payload: Mapping[str, Any]) -> str:
        """Create it; the new worklog's id."""
        ...

    def update_worklog(self, worklog_id: str, payload: Mapping[str, Any]) -> bool:
        """Update it; False when the target no longer has it."""
        ...

    def delete_worklog(self, worklog_id: str) -> bool:
        """Delete it (False when it was confirmed missing already: that counts as deleted)."""
        ...


class OneWorklogConnector(Connector):
    """A target that books each entry as one worklog at its local start (docs/ARCHITECTURE.md
    §6) through a :class:`WorklogClient`: the connector only supplies the payload."""

    client: WorklogClient

    @abstractmethod
    def worklog(self, entry: TimeEntry) -> Mapping[str, Any]:
        """The worklog payload of an entry (the target's pure mapping)."""

    def bookings(self, entry: TimeEntry) -> list[Booking]:
        """One worklog at the entry's local start; none for a zero-length entry."""
        if entry.seconds <= 0:
            return []
        return [Booking(key="", payload=self.worklog(entry))]

    def create(self, entry: TimeEntry, booking: Booking) -> str:
        """Create the worklog; return the target's id for it."""
        return self.client.create_worklog(booking.payload)

    def update(self, entry: TimeEntry, remote_id: str, booking: Booking) -> str:
        """Update the worklog; re-create it (new id) if the target no longer has it."""
        if not remote_id:
            raise PermanentError(f"{self.name}: empty remote id in the ID map")
        if self.client.update_worklog(remote_id, booking.payload):
            return remote_id
        return self.client.create_worklog(booking.payload)

    def delete(self, entry: TimeEntry, remote_id: str) -> None:
        """Delete the worklog; one confirmed missing counts as deleted."""
        if not remote_id:
            raise PermanentError(f"{self.name}: empty remote id in the ID map")
        self.client.delete_worklog(remote_id)
