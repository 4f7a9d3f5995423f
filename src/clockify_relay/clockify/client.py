"""Clockify REST client for re-reading an entry's truth (docs/ARCHITECTURE.md §3, rule 5).

Clockify documents its rate limit (50 requests/s, for add-on tokens) and the answer past it: an
error whose description is "Too many requests" -- no status is given. So that answer is a
:class:`TransientError` whatever status it comes with: a 404 carrying it is no deletion, a
403 no refused key, a 200 no time entry.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import redis

from clockify_relay.errors import ConfigurationError, PermanentError, TransientError
from clockify_relay.http_client import BaseClient, excerpt
from clockify_relay.ratelimit import RateLimiter
from clockify_relay.redis_conn import Keys
from clockify_relay.settings import Settings

TOO_MANY_REQUESTS = "too many requests"
# Seconds every worker holds off after a "Too many requests" that names no wait.
TOO_MANY_REQUESTS_PAUSE = 1.0


def too_many_requests(response: httpx.Response) -> bool:
    """True when the body is Clockify's "Too many requests" error (JSON ``message`` or text).

    Only an error's ``message`` (or a body that is not JSON) is read, so a time entry whose
    description mentions the words is not mistaken for it.
    """
    try:
        body = response.json()
    except ValueError:
        return TOO_MANY_REQUESTS in response.text[:200].lower()
    if isinstance(body, Mapping):
        body = body.get("message")
    return isinstance(body, str) and TOO_MANY_REQUESTS in body.lower()


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
        # Every worker shares one pace through Redis: CLOCKIFY_API_RATE, by default below the
        # 50 requests/s Clockify documents for add-on tokens (this client uses X-Api-Key).
        self._limiter: RateLimiter | None = None
        if redis_client is not None:
            key_id = hashlib.sha256(settings.clockify_api_key.reveal().encode()).hexdigest()[:16]
            self._limiter = RateLimiter(
                redis_client,
                Keys(settings.key_prefix).ratelimit(f"clockify:{key_id}"),
                settings.clockify_rate_per_second,
                max_wait=30.0,
                name="clockify",
            )

    def before_request(self) -> None:
        if self._limiter is not None:
            self._limiter.acquire()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        allow_statuses: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """As the base client, but "Too many requests" is transient even with a 2xx or an
        allowed status (a 404 that says it must not read as "deleted")."""
        response = super().request(
            method, path, json=json, params=params, headers=headers, allow_statuses=allow_statuses
        )
        if too_many_requests(response):
            self._refused(method, path, response)
        return response

    def raise_for_response(self, method: str, path: str, response: httpx.Response) -> None:
        """As the base client, but "Too many requests" is transient whatever its status."""
        if too_many_requests(response):
            self._refused(method, path, response)
        super().raise_for_response(method, path, response)

    def _refused(self, method: str, path: str, response: httpx.Response) -> None:
        wait = self.retry_after(response)
        if self._limiter is not None:
            # Slow every worker down, not only this one.
            self._limiter.hold_off(TOO_MANY_REQUESTS_PAUSE if wait is None else wait)
        raise TransientError(
            f"clockify: {method} {path} → {response.status_code} Too many requests",
            status=response.status_code,
            response_excerpt=excerpt(response.text),
            retry_after=wait,
        )

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

    # -- users, per-user time entries, webhooks (the operator commands) ----------------------
    # Every call goes through :meth:`request`, so through the shared rate limiter; the paged
    # listings retry a transient answer (a "Too many requests" included) a few times.

    def patiently(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """:meth:`request`, retrying a transient failure up to ``PATIENCE`` times."""
        for attempt in range(PATIENCE):
            try:
                return self.request(method, path, **kwargs)
            except TransientError as exc:
                if attempt == PATIENCE - 1:
                    raise
                time.sleep(min(exc.retry_after or 0.5 * 2**attempt, 30.0))
        raise AssertionError("unreachable")

    def current_user(self) -> dict[str, Any]:
        """``GET /v1/user``: the key's user (its id owns the webhooks this key creates)."""
        data: dict[str, Any] = self.patiently("GET", "/v1/user").json()
        return data

    def list_users(self, workspace_id: str, page_size: int = 50) -> Iterator[dict[str, Any]]:
        """Every user of the workspace ("Find all users on workspace", ``status=ALL``), paged."""
        page = 1
        while True:
            batch = self.patiently(
                "GET",
                f"/v1/workspaces/{workspace_id}/users",
                params={"page": page, "page-size": page_size, "status": "ALL"},
            ).json()
            yield from batch
            if len(batch) < page_size:
                return
            page += 1

    def list_user_time_entries(
        self,
        workspace_id: str,
        user_id: str,
        start: datetime,
        end: datetime,
        page_size: int = 50,
    ) -> Iterator[dict[str, Any]]:
        """A user's time entries between ``start`` and ``end`` ("Get time entries for a user on
        workspace"), page by page (``page`` from 1, ``page-size``)."""
        page = 1
        while True:
            batch = self.patiently(
                "GET",
                f"/v1/workspaces/{workspace_id}/user/{user_id}/time-entries",
                params={
                    "start": clockify_time(start),
                    "end": clockify_time(end),
                    "page": page,
                    "page-size": page_size,
                },
            ).json()
            yield from batch
            if len(batch) < page_size:
                return
            page += 1

    def list_webhooks(self, workspace_id: str) -> list[dict[str, Any]]:
        """ "Get all webhooks on workspace": the ``webhooks`` of its answer."""
        data = self.patiently("GET", f"/v1/workspaces/{workspace_id}/webhooks").json()
        hooks: list[dict[str, Any]] = data.get("webhooks") or []
        return hooks

    def create_webhook(self, workspace_id: str, name: str, url: str, event: str) -> dict[str, Any]:
        """ "Create webhooks" for the whole workspace (``triggerSourceType`` WORKSPACE_ID); the
        answer carries the new ``authToken``. Not retried: a lost answer could leave a second
        webhook, and the caller's next run finds the first by name, URL and event."""
        data: dict[str, Any] = self.request(
            "POST",
            f"/v1/workspaces/{workspace_id}/webhooks",
            json={
                "name": name,
                "triggerSource": [workspace_id],
                "triggerSourceType": "WORKSPACE_ID",
                "url": url,
                "webhookEvent": event,
            },
        ).json()
        return data

    def get_webhook(self, workspace_id: str, webhook_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.patiently(
            "GET", f"/v1/workspaces/{workspace_id}/webhooks/{webhook_id}"
        ).json()
        return data

    def delete_webhook(self, workspace_id: str, webhook_id: str) -> None:
        self.patiently("DELETE", f"/v1/workspaces/{workspace_id}/webhooks/{webhook_id}")

    def generate_webhook_token(self, workspace_id: str, webhook_id: str) -> dict[str, Any]:
        """ "Generate new token": the webhook with its new ``authToken``; the old one is invalid
        at once. Not retried (a lost answer means a token nobody knows: run it again)."""
        data: dict[str, Any] = self.request(
            "PATCH", f"/v1/workspaces/{workspace_id}/webhooks/{webhook_id}/token"
        ).json()
        return data

    def webhook_logs(
        self,
        workspace_id: str,
        webhook_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        status: str = "ALL",
        page_size: int = 50,
    ) -> Iterator[dict[str, Any]]:
        """ "Get logs for a webhook" (``POST …/logs``, ``page`` from 0, ``size``), oldest first."""
        body: dict[str, Any] = {"status": status, "sortByNewest": False}
        if since is not None:
            body["from"] = clockify_time(since)
        if until is not None:
            body["to"] = clockify_time(until)
        page = 0
        while True:
            batch = self.patiently(
                "POST",
                f"/v1/workspaces/{workspace_id}/webhooks/{webhook_id}/logs",
                params={"page": page, "size": page_size},
                json=body,
            ).json()
            yield from batch
            if len(batch) < page_size:
                return
            page += 1


PATIENCE = 5


def clockify_time(moment: datetime) -> str:
    """``yyyy-MM-ddThh:mm:ssZ``, the form Clockify's query parameters document."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
