"""The Organi connector the delivery engine calls: Clockify entries → Organi worklogs, one per
entry at its local start (mapping.py), written through :class:`~.api.OrganiClient`.

Organi cannot be searched for a create whose answer was lost: the document's "Get filtered
worklogs" takes a ``filter`` whose format (WorklogFilter) it never defines, plus a required
``cacheId``/``generateCache`` pair it does not explain. A search built on a guess that silently
finds nothing would make the engine create the worklog a second time, so ``searchable`` is False
and the engine dead-letters such a create as an unknown outcome (README "Organi")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import redis

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.connectors.base import OneWorklogConnector
from clockify_relay.connectors.organi.api import OrganiClient
from clockify_relay.connectors.organi.approvals import Approvals
from clockify_relay.connectors.organi.config import parse_config
from clockify_relay.connectors.organi.mapping import worklog
from clockify_relay.redis_conn import Keys
from clockify_relay.settings import Settings
from clockify_relay.timeutil import owner_zone


class OrganiConnector(OneWorklogConnector):
    """Books each Clockify entry as one Organi worklog."""

    name = "organi"
    searchable = False
    client: OrganiClient

    def __init__(
        self, settings: Settings, section: Mapping[str, Any], redis_client: redis.Redis
    ) -> None:
        super().__init__(settings, section, redis_client)
        self.config = parse_config(section)
        self.request_timeout = self.config.timeout
        self.client = OrganiClient(self.config)
        self.approvals = Approvals(
            self.client,
            self.config,
            redis_client,
            Keys(settings.key_prefix),
            settings.state_ttl,
        )

    def worklog(self, entry: TimeEntry) -> Mapping[str, Any]:
        """The worklog payload at the entry's local start (mapping.py)."""
        return worklog(entry, owner_zone(entry, self.settings), self.config)

    def booked(
        self, owner: str, day: date, remote_ids: Mapping[str, str], renew: Callable[[], None]
    ) -> list[str]:
        """A worklog booked after its approval request arrived gets the request's current
        status (approvals.py)."""
        return self.approvals.settle(owner, day, remote_ids.values(), renew)

    def probe(self) -> str:
        """List the worklog types (documented, no required parameter): proves the token, the
        base URL and the paths' prefix."""
        types = self.client.worklog_types()
        return f"token accepted at {self.config.base_url} ({len(types)} worklog types)"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
