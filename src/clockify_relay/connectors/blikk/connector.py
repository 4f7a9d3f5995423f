"""The Blikk connector the delivery engine calls: Clockify entries → Blikk time reports, one per
local day (mapping.py), written through :class:`~.api.BlikkClient`.

Blikk answers 400 both when a time report does not exist and when it is attested or invoiced.
On a 400 to an update or a delete the connector reads the report to tell which: gone → a delete
is done and an update re-creates it; attested or invoiced → :class:`PermanentError` saying so.

Blikk documents a create's answer as "200 OK" with no body. When the answer carries no report
id, the report is looked up by its ``clockify:<entry id>`` marker; a 2xx is never taken to mean
"nothing was created".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
import redis

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.connectors.base import Booking, Connector
from clockify_relay.connectors.blikk import mapping
from clockify_relay.connectors.blikk.api import REPORTS_PATH, BlikkClient, json_body
from clockify_relay.connectors.blikk.config import SECTION, parse_config
from clockify_relay.errors import ConfigurationError, PermanentError, RelayError, TransientError
from clockify_relay.http_client import excerpt, json_object
from clockify_relay.redis_conn import Keys
from clockify_relay.settings import Settings
from clockify_relay.timeutil import owner_zone

log = logging.getLogger(__name__)


def _created_id(response: httpx.Response) -> int | None:
    """The report id in a create's answer, or None (the doc shows no body at all)."""
    report_id = json_object(response).get("id")
    if isinstance(report_id, int) and not isinstance(report_id, bool):
        return report_id
    return None


def _report_id(remote_id: str) -> int:
    if not remote_id.isdigit():
        raise PermanentError(f"blikk: {remote_id!r} is not a Blikk time report id")
    return int(remote_id)


class BlikkConnector(Connector):
    """Books Clockify entries as Blikk time reports, one per local day."""

    name = "blikk"
    searchable = True

    def __init__(
        self,
        settings: Settings,
        section: Mapping[str, Any],
        redis_client: redis.Redis,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(settings, section, redis_client)
        self.config = parse_config(section)
        self.request_timeout = self.config.timeout
        self.rate_wait = self.config.rate_max_wait
        self.client = BlikkClient(
            self.config, redis_client, Keys(settings.key_prefix), transport=transport
        )

    def bookings(self, entry: TimeEntry) -> list[Booking]:
        """One report per local day in the owner's zone (see :mod:`.mapping`)."""
        return mapping.bookings(entry, self.config, owner_zone(entry, self.settings))

    def create(self, entry: TimeEntry, booking: Booking) -> str:
        """``POST /v1/Core/TimeReports``; the new report's id (from the answer, else found by
        its marker)."""
        response = self.client.call("POST", REPORTS_PATH, json=dict(booking.payload))
        report_id = _created_id(response)
        if report_id is not None:
            return str(report_id)
        # A 2xx without an id: the report was made. Errors from here on must leave the create
        # "pending" (outcome unknown), so a retry reconciles instead of booking it twice.
        what = (
            f"blikk: POST {REPORTS_PATH} answered {response.status_code} without a report id "
            f"and the report with marker {mapping.marker(entry.id)} on {booking.key}"
        )
        try:
            found = self.find(entry, booking)
        except RelayError as exc:
            raise TransientError(
                f"{what} could not be searched ({exc.message}); kept pending",
                status=exc.status,
                response_excerpt=exc.response_excerpt,
                retry_after=exc.retry_after if isinstance(exc, TransientError) else None,
                outcome_unknown=True,
            ) from None
        if found is None:
            raise TransientError(f"{what} is not listed yet; kept pending", outcome_unknown=True)
        return found

    def _existing(self, report_id: int) -> Mapping[str, Any] | None:
        """The report, or None when Blikk does not have it (it answers 400 for that)."""
        path = f"{REPORTS_PATH}/{report_id}"
        response = self.client.call("GET", path, allow_statuses=frozenset({400}))
        if response.status_code == 400:
            return None
        return json_body(response, f"GET {path}")

    @staticmethod
    def _locked(report: Mapping[str, Any], report_id: int, action: str) -> PermanentError | None:
        if report.get("invoiceId") is not None:
            return PermanentError(
                f"blikk: cannot {action} time report {report_id}: it is invoiced "
                f"(invoice {report.get('invoiceId')}); change it in Blikk by hand"
            )
        if report.get("attestedDate"):
            return PermanentError(
                f"blikk: cannot {action} time report {report_id}: it is attested "
                f"({report.get('attestedDate')}); un-attest it in Blikk first"
            )
        return None

    def update(self, entry: TimeEntry, remote_id: str, booking: Booking) -> str:
        """``PUT``; a report Blikk no longer has is re-created (its new id is returned)."""
        report_id = _report_id(remote_id)
        path = f"{REPORTS_PATH}/{report_id}"
        response = self.client.call(
            "PUT", path, json=dict(booking.payload), allow_statuses=frozenset({400})
        )
        if response.status_code != 400:
            return remote_id
        existing = self._existing(report_id)
        if existing is None:
            log.info("blikk: time report %s is gone, re-creating it", report_id)
            return self.create(entry, booking)
        locked = self._locked(existing, report_id, "update")
        if locked is not None:
            raise locked
        raise PermanentError(
            f"blikk: PUT {path} → {self.client.describe_error(response)}",
            status=400,
            response_excerpt=excerpt(response.text),
        )

    def delete(self, entry: TimeEntry, remote_id: str) -> None:
        """``DELETE``; a report Blikk no longer has counts as deleted."""
        report_id = _report_id(remote_id)
        path = f"{REPORTS_PATH}/{report_id}"
        response = self.client.call("DELETE", path, allow_statuses=frozenset({400}))
        if response.status_code != 400:
            return
        existing = self._existing(report_id)
        if existing is None:
            return
        locked = self._locked(existing, report_id, "delete")
        if locked is not None:
            raise locked
        raise PermanentError(
            f"blikk: DELETE {path} → {self.client.describe_error(response)}",
            status=400,
            response_excerpt=excerpt(response.text),
        )

    def find(self, entry: TimeEntry, booking: Booking) -> str | None:
        """The report of this entry on the booking's day (by the ``internalComment`` marker)."""
        day = str(booking.payload.get("date", booking.key))[:10]
        user_id = booking.payload.get("userId")
        if not isinstance(user_id, int):
            raise ConfigurationError(
                f"blikk: booking of entry {entry.id} has no userId; map the user in "
                f"[{SECTION}.users]"
            )
        params = {"filter.userIds": str(user_id), "filter.from": day, "filter.to": day}
        matches = [
            item["id"]
            for item in self.client.paged(REPORTS_PATH, params)
            if mapping.has_marker(item.get("internalComment"), entry.id)
            and isinstance(item.get("id"), int)
        ]
        if len(matches) > 1:
            log.warning("blikk: %d reports carry entry %s on %s", len(matches), entry.id, day)
        return str(min(matches)) if matches else None

    def probe(self) -> str:
        """Fetch a token and read one page of users."""
        response = self.client.call("GET", "/v1/Admin/Users", params={"page": 1, "pageSize": 1})
        body = json_body(response, "GET /v1/Admin/Users")
        return (
            f"credentials accepted at {self.config.base_url}: app {self.config.app_id!r}, "
            f"{body.get('totalItemCount', '?')} users visible"
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
