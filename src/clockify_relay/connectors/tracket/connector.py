"""The Tracket connector the delivery engine calls: Clockify entries → Tracket worklogs, one per
entry on its item (mapping.py), written through :class:`~.api.TracketClient`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.connectors.base import OneWorklogConnector
from clockify_relay.connectors.tracket.api import TracketClient, worklog_path
from clockify_relay.connectors.tracket.config import parse_config
from clockify_relay.connectors.tracket.mapping import worklog
from clockify_relay.settings import Settings
from clockify_relay.timeutil import owner_zone

# Asked for by probe(): an id no worklog has, so a 404 proves the token was accepted.
PROBE_ID = "clockify-relay-probe"


class TracketConnector(OneWorklogConnector):
    """Books each Clockify entry as one Tracket worklog on its item."""

    name = "tracket"
    searchable = False
    client: TracketClient

    def __init__(
        self, settings: Settings, section: Mapping[str, Any], redis_client: redis.Redis
    ) -> None:
        super().__init__(settings, section, redis_client)
        self.config = parse_config(section)
        self.request_timeout = self.config.timeout
        self.client = TracketClient(self.config)

    def worklog(self, entry: TimeEntry) -> Mapping[str, Any]:
        """The worklog payload at the entry's local start (mapping.py)."""
        return worklog(entry, owner_zone(entry, self.settings), self.config)

    def probe(self) -> str:
        """Ask for a worklog that cannot exist: a 404 (or 200) proves the token works, once the
        listing proves the base URL serves the API (a wrong one answers 404 too)."""
        if self.client.get_worklog(PROBE_ID) is None:
            self.client.require_listing(f"GET {worklog_path(PROBE_ID)}")
        return f"token accepted at {self.config.base_url}"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
