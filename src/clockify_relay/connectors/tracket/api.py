"""Tracket's worklogs API: the HTTP client the connector (connector.py) calls.

The status → error mapping is the shared one (:mod:`clockify_relay.http_client`): 4xx
permanent, 429/5xx and network failures transient. Two 404s are read here instead: a PUT to a
worklog Tracket no longer has re-creates it, and a DELETE of one counts as done -- but only once
the worklog is confirmed missing. Tracket's document defines no 404 at all, and a wrong base URL
or a retired API version (v1.0 is marked deprecated) answers 404 to everything, which must not
read as "already deleted": a 404 counts only when ``GET /worklogs`` answers its documented list
while ``GET /worklogs/{id}`` answers 404; otherwise it is a :class:`ConfigurationError` naming
``TRACKET_BASE_URL``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from clockify_relay.connectors.tracket.config import TracketConfig
from clockify_relay.errors import ConfigurationError, UnknownOutcomeError
from clockify_relay.http_client import BaseClient, excerpt, json_object

NOT_FOUND = frozenset({404})

_STATUS_MEANING = {
    401: "401 Unauthorized: Tracket refused the token (check TRACKET_TOKEN, auth_header, "
    "auth_scheme)",
    403: "403 Forbidden: the Tracket token may not do this",
}


def worklog_path(worklog_id: str) -> str:
    """The path of one worklog."""
    # Tracket ids are opaque strings: quote them so a '/' or '?' cannot change the URL.
    return f"/worklogs/{quote(worklog_id, safe='')}"


def _shown(url: str) -> str:
    """The base URL for an error message, without any user info or query it may carry."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class TracketClient(BaseClient):
    """HTTP client for Tracket's ``/worklogs`` endpoints; raises only relay error types."""

    target = "tracket"

    def __init__(
        self, config: TracketConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(
            config.base_url,
            headers={config.auth_header: config.auth_value(), "accept": "application/json"},
            timeout=config.timeout,
            transport=transport,
        )

    def describe_error(self, response: httpx.Response) -> str:
        """Tracket's refusal in words: a known status meaning, else its error text and fields.

        The doc does not specify error bodies; ``message`` or ``error`` (text) and ``fields``
        (names) are read when present, anything else falls back to a body excerpt.
        """
        status = response.status_code
        if status in _STATUS_MEANING:
            return _STATUS_MEANING[status]
        body = json_object(response)
        message = body.get("message") or body.get("error")
        if isinstance(message, str) and message:
            fields = body.get("fields")
            named = (
                f" (fields: {', '.join(str(f) for f in fields)})"
                if isinstance(fields, list) and fields
                else ""
            )
            return f"tracket answered {status}: {excerpt(message, 200)}{named}"
        return super().describe_error(response)

    def _created_id(self, method: str, path: str, response: httpx.Response) -> str:
        worklog_id = json_object(response).get("worklogId")
        valid = isinstance(worklog_id, str | int) and not isinstance(worklog_id, bool)
        if not valid or worklog_id == "":
            # 2xx without an id: the worklog probably exists but cannot be named; the engine
            # must not retry blindly (Tracket is not searched for the relay's records).
            raise UnknownOutcomeError(
                f"tracket: {method} {path} succeeded without a worklogId; check Tracket before "
                "replaying",
                status=response.status_code,
                response_excerpt=excerpt(response.text),
            )
        return str(worklog_id)

    def create_worklog(self, payload: Mapping[str, Any]) -> str:
        """POST /worklogs; return the new ``worklogId``."""
        response = self.request("POST", "/worklogs", json=dict(payload))
        return self._created_id("POST", "/worklogs", response)

    def update_worklog(self, worklog_id: str, payload: Mapping[str, Any]) -> bool:
        """PUT /worklogs/{id}; True if updated, False if Tracket does not have the worklog."""
        response = self.request(
            "PUT", worklog_path(worklog_id), json=dict(payload), allow_statuses=NOT_FOUND
        )
        return response.status_code != 404

    def delete_worklog(self, worklog_id: str) -> bool:
        """DELETE /worklogs/{id}; True if deleted, False if Tracket confirmably no longer had
        it (ConfigurationError when the 404 may come from a wrong base URL)."""
        response = self.request("DELETE", worklog_path(worklog_id), allow_statuses=NOT_FOUND)
        if response.status_code != 404:
            return True
        self.require_listing(f"DELETE {worklog_path(worklog_id)}")
        if self.get_worklog(worklog_id) is not None:
            raise ConfigurationError(
                f"tracket: DELETE {worklog_path(worklog_id)} answered 404 although GET finds the "
                f"worklog at {_shown(self.base_url)}; the API there does not delete as "
                "documented: check TRACKET_BASE_URL (or [targets.tracket] base_url) and its "
                "API version"
            )
        return False

    def get_worklog(self, worklog_id: str) -> Mapping[str, Any] | None:
        """GET /worklogs/{id}; the worklog, or None if Tracket does not have it."""
        response = self.request("GET", worklog_path(worklog_id), allow_statuses=NOT_FOUND)
        return None if response.status_code == 404 else json_object(response)

    def require_listing(self, after: str) -> None:
        """Prove the base URL serves the documented API (``GET /worklogs`` answers a list), so
        a 404 to ``after`` means a missing worklog, not a wrong or retired path."""
        response = self.request("GET", "/worklogs", allow_statuses=NOT_FOUND)
        if response.status_code == 404 or not isinstance(
            json_object(response).get("worklogs"), list
        ):
            raise ConfigurationError(
                f"tracket: {after} answered 404 and GET /worklogs answered "
                f"{response.status_code} without a worklog list at {_shown(self.base_url)}: "
                "the base URL or its API version is wrong or retired (Tracket marks v1.0 "
                "deprecated); set TRACKET_BASE_URL (or [targets.tracket] base_url)",
                status=response.status_code,
                response_excerpt=excerpt(response.text),
            )
