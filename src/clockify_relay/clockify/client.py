"""Clockify REST client for re-reading an entry's truth (docs/ARCHITECTURE.md §3, rule 5)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import redis

from clockify_relay.connectors.http import BaseClient
from clockify_relay.errors import ConfigurationError, PermanentError
from clockify_relay.ratelimit import RateLimiter
from clockify_relay.redis_conn import Keys
from clockify_relay.settings import Settings


class ClockifyClient(BaseClient):
    """``X-Api-Key`` client for the few reads the relay needs."""

    target = "clockify"

    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not settings.clockify_api_key:
            raise ConfigurationError("CLOCKIFY_API_KEY is not set")
        super().__init__(
            settings.clockify_api_url,
            headers={"X-Api-Key": settings.clockify_api_key.reveal()},
            transport=transport,
        )
        self._proven_workspaces: set[str] = set()
        # Clockify allows 50 requests/s per key; every worker shares one pace through Redis.
        self._limiter: RateLimiter | None = None
        if redis_client is not None:
            key_id = hashlib.sha256(settings.clockify_api_key.reveal().encode()).hexdigest()[:16]
            self._limiter = RateLimiter(
                redis_client,
                Keys(settings.key_prefix).ratelimit(f"clockify:{key_id}"),
                settings.clockify_rate_per_second,
                max_wait=30.0,
            )

    def before_request(self) -> None:
        if self._limiter is not None:
            self._limiter.acquire()

    def get_time_entry(self, workspace_id: str, entry_id: str) -> dict[str, Any] | None:
        """The entry as Clockify has it now, or None when Clockify says it does not exist.

        A 404 means "deleted" only once the key and workspace are proven valid, so a revoked
        key or a wrong workspace never reads as a wave of deletions.
        """
        try:
            response = self.request(
                "GET",
                f"/v1/workspaces/{workspace_id}/time-entries/{entry_id}",
                allow_statuses=frozenset({404}),
            )
        except PermanentError as exc:
            if exc.status in (401, 403):
                raise ConfigurationError(
                    f"CLOCKIFY_API_KEY was refused ({exc.status}) reading workspace "
                    f"{workspace_id}; fix the key or unset it to deliver without re-reading"
                ) from None
            raise
        if response.status_code == 404:
            self.prove_workspace(workspace_id)
            return None
        data: dict[str, Any] = response.json()
        return data

    def prove_workspace(self, workspace_id: str) -> None:
        """Check that the key can read this workspace (cached once proven)."""
        if workspace_id in self._proven_workspaces:
            return
        try:
            self.request("GET", f"/v1/workspaces/{workspace_id}")
        except PermanentError as exc:
            raise ConfigurationError(
                f"CLOCKIFY_API_KEY cannot read workspace {workspace_id} ({exc.status}); "
                "fix the key or unset it to deliver without re-reading"
            ) from None
        self._proven_workspaces.add(workspace_id)
