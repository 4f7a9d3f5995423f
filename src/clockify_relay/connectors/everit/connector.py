"""The Everit connector the delivery engine calls: Clockify entries → Everit worklogs, one per
entry on its Jira issue (mapping.py), written through :class:`~.api.EveritClient`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.connectors.base import Booking, Connector
from clockify_relay.connectors.everit.api import EveritClient
from clockify_relay.connectors.everit.config import parse_config
from clockify_relay.connectors.everit.mapping import new_worklog, on_behalf_account
from clockify_relay.errors import PermanentError
from clockify_relay.settings import Settings
from clockify_relay.timeutil import owner_zone


def _worklog_id(remote_id: str) -> int:
    try:
        return int(remote_id)
    except ValueError:
        # The ID map holds something Everit never issued; retrying cannot fix that.
        raise PermanentError(
            f"everit: remote id {remote_id!r} is not an Everit worklogId"
        ) from None


class EveritConnector(Connector):
    """Books each Clockify entry as one Everit worklog on its Jira issue."""

    name = "everit"
    searchable = False

    def __init__(
        self,
        settings: Settings,
        section: Mapping[str, Any],
        redis_client: redis.Redis,
    ) -> None:
        super().__init__(settings, section, redis_client)
        self.config = parse_config(section)
        self.request_timeout = self.config.timeout
        self.client = EveritClient(self.config)

    def bookings(self, entry: TimeEntry) -> list[Booking]:
        """One worklog at the entry's local start; none for a zero-length entry."""
        if entry.seconds <= 0:
            return []
        # Validate the on-behalf mapping here so an unmapped user fails before any HTTP call.
        on_behalf_account(entry, self.config)
        payload = new_worklog(entry, owner_zone(entry, self.settings), self.config)
        return [Booking(key="", payload=payload)]

    def _context(self, entry: TimeEntry) -> tuple[str, str | None]:
        return owner_zone(entry, self.settings).key, on_behalf_account(entry, self.config)

    def create(self, entry: TimeEntry, booking: Booking) -> str:
        """POST the worklog; return Everit's ``worklogId`` as a string."""
        zone, account = self._context(entry)
        return self.client.create_worklog(booking.payload, zone=zone, account=account)

    def update(self, entry: TimeEntry, remote_id: str, booking: Booking) -> str:
        """PATCH the worklog; re-create it (new id) if Everit answers WORKLOG_NOT_FOUND."""
        zone, account = self._context(entry)
        if self.client.patch_worklog(
            _worklog_id(remote_id), booking.payload, zone=zone, account=account
        ):
            return remote_id
        return self.client.create_worklog(booking.payload, zone=zone, account=account)

    def delete(self, entry: TimeEntry, remote_id: str) -> None:
        """DELETE the worklog; WORKLOG_NOT_FOUND counts as deleted."""
        zone, account = self._context(entry)
        # The on-behalf header is documented for POST and PATCH only.
        if not self.config.on_behalf_for_delete:
            account = None
        self.client.delete_worklog(_worklog_id(remote_id), zone=zone, account=account)

    def probe(self) -> str:
        """Ask for a worklog that cannot exist: any answer but 401/479/5xx proves the key works."""
        self.client.request(
            "GET", "/worklog", params={"worklogId": 0}, allow_statuses=frozenset({400, 404})
        )
        return f"API key accepted at {self.config.base_url}"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
