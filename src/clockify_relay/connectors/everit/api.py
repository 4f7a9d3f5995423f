"""Everit Timetracker's public Worklog API: the HTTP client the connector (connector.py) calls.

Everit answers some failures with 200 and an ``error`` object (PATCH/DELETE of a worklog it no
longer has: ``WORKLOG_NOT_FOUND``); those are read here. Everything else that is not 2xx is turned
into the relay's error taxonomy by :class:`~clockify_relay.http_client.BaseClient`, with
:meth:`EveritClient.describe_error` putting Everit's documented error bodies into words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from clockify_relay.connectors.everit.config import EveritConfig
from clockify_relay.errors import PermanentError, UnknownOutcomeError
from clockify_relay.http_client import BaseClient, excerpt, json_object

WORKLOG_NOT_FOUND = "WORKLOG_NOT_FOUND"

_STATUS_MEANING = {
    401: "401 Unauthorized: Everit refused the API key (check EVERIT_API_KEY)",
    479: (
        "479: the Everit user lacks a Timetracker permission this call needs "
        "(Everit Global Settings → Permissions; also needed to book on behalf of others)"
    ),
}


def _field_error(item: object) -> str:
    if not isinstance(item, Mapping):
        return str(item)
    kind = str(item.get("errorType") or "Error")
    paths = item.get("paths")
    names = [
        ".".join(str(p) for p in path) if isinstance(path, list) else str(path)
        for path in (paths if isinstance(paths, list) else [])
    ]
    return f"{kind} at {', '.join(names)}" if names else kind


def _additional_error(item: object) -> str:
    if not isinstance(item, Mapping):
        return str(item)
    kind = str(item.get("errorType") or "Error")
    extra = item.get("extra")
    return f"{kind} ({excerpt(str(extra), 120)})" if extra not in (None, "", [], {}) else kind


def describe_everit_body(body: Mapping[str, Any]) -> str | None:
    """Words for Everit's 400 body (``fieldErrors``/``additionalErrors``) or a WorklogError."""
    parts: list[str] = []
    field_errors = body.get("fieldErrors")
    if isinstance(field_errors, list) and field_errors:
        parts.append("field errors: " + "; ".join(_field_error(e) for e in field_errors))
    additional = body.get("additionalErrors")
    if isinstance(additional, list) and additional:
        parts.append("other errors: " + "; ".join(_additional_error(e) for e in additional))
    error = body.get("error")
    if isinstance(error, Mapping) and error.get("result"):
        message = f" ({excerpt(str(error['message']), 120)})" if error.get("message") else ""
        parts.append(f"{error['result']}{message}")
    return " | ".join(parts) if parts else None


class EveritClient(BaseClient):
    """HTTP client for Everit's ``/worklog`` endpoints; raises only relay error types."""

    target = "everit"

    def __init__(
        self, config: EveritConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(
            config.base_url,
            headers={
                "x-everit-api-key": config.api_key.reveal(),
                "x-requested-by": config.requested_by,
                "accept": "application/json",
            },
            timeout=config.timeout,
            transport=transport,
        )

    def describe_error(self, response: httpx.Response) -> str:
        """Everit's documented 400/401/479 answers in words (never echoing the API key)."""
        status = response.status_code
        if status in _STATUS_MEANING:
            return _STATUS_MEANING[status]
        described = describe_everit_body(json_object(response))
        if described:
            return f"everit answered {status}: {described}"
        return super().describe_error(response)

    @staticmethod
    def _headers(zone: str, account: str | None) -> dict[str, str]:
        headers = {"x-timezone": zone}
        if account:
            headers["x-everit-on-behalf-account"] = account
        return headers

    def create_worklog(self, payload: Mapping[str, Any], *, zone: str, account: str | None) -> str:
        """POST /worklog; return the new ``worklogId``."""
        response = self.request(
            "POST", "/worklog", json=dict(payload), headers=self._headers(zone, account)
        )
        worklog_id = json_object(response).get("worklogId")
        if worklog_id is None or isinstance(worklog_id, bool):
            # A 2xx without an id: the worklog probably exists but we cannot name it, and Everit
            # cannot be searched, so a retry could double it.
            raise UnknownOutcomeError(
                "everit: POST /worklog succeeded without a worklogId; check Everit before "
                "replaying",
                status=response.status_code,
                response_excerpt=excerpt(response.text),
            )
        return str(worklog_id)

    def patch_worklog(
        self, worklog_id: int, payload: Mapping[str, Any], *, zone: str, account: str | None
    ) -> bool:
        """PATCH /worklog; True if patched, False if Everit no longer has the worklog."""
        response = self.request(
            "PATCH",
            "/worklog",
            json={"worklogId": worklog_id, "partialWorklog": dict(payload)},
            headers=self._headers(zone, account),
        )
        return self._check_result("PATCH", response)

    def delete_worklog(self, worklog_id: int, *, zone: str, account: str | None) -> bool:
        """DELETE /worklog; True if deleted, False if Everit no longer had it."""
        response = self.request(
            "DELETE",
            "/worklog",
            params={"worklogId": worklog_id},
            headers=self._headers(zone, account),
        )
        return self._check_result("DELETE", response)

    def get_worklog(self, worklog_id: int) -> Mapping[str, Any] | None:
        """GET /worklog; the worklog, or None if Everit does not have it."""
        response = self.request(
            "GET", "/worklog", params={"worklogId": worklog_id}, allow_statuses=frozenset({400})
        )
        body = json_object(response)
        error = body.get("error")
        if isinstance(error, Mapping) and error.get("result") == WORKLOG_NOT_FOUND:
            return None
        if response.status_code == 400:
            self.raise_for_response("GET", "/worklog", response)
        return body

    def _check_result(self, method: str, response: httpx.Response) -> bool:
        """Read the ``error`` object Everit puts in a 200 answer to PATCH and DELETE."""
        error = json_object(response).get("error")
        if not error:
            return True
        if isinstance(error, Mapping) and error.get("result") == WORKLOG_NOT_FOUND:
            return False
        described = describe_everit_body({"error": error}) or excerpt(str(error), 200)
        raise PermanentError(
            f"everit: {method} /worklog → {response.status_code} with error {described}",
            status=response.status_code,
            response_excerpt=excerpt(response.text),
        )
