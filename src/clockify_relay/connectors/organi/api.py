"""Organi's Time API: the HTTP client the connector (connector.py) and, later, the approval and
mailing flows call.

The document (Organi Time API 1.5.27) gives operations and their bodies but no paths, methods,
auth or error bodies. Paths come from the section (config.py ``PATH_DEFAULTS``, after the
document's tags); the methods are fixed here: create ``POST``, update ``PUT`` (the update
operation has no path id, so ``worklogId`` travels in the body), get ``GET``, delete ``DELETE``
(with ``?cacheId=`` when ``cache_id`` is configured: the document marks it required and says it
is "often" needed), the three status updates and the two undos ``PUT``, status histories
``GET``, the mail trigger ``POST ?list=``.

The status → error mapping is the shared one (:mod:`clockify_relay.http_client`): 4xx permanent,
429/5xx and network failures transient. Two 404s are read here instead, since the document
defines none: a PUT to a worklog Organi no longer has re-creates it, and a DELETE of one counts
as done -- only once the worklog is confirmed missing (``GET /worklog/{id}`` 404 while
``GET /worklogType`` answers its documented list); a wrong base URL answers 404 to everything,
which must not read as "already deleted".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit

import httpx

from clockify_relay.connectors.organi.config import OrganiConfig
from clockify_relay.errors import ConfigurationError, PermanentError, UnknownOutcomeError
from clockify_relay.http_client import BaseClient, excerpt, json_object, json_object_or_none

NOT_FOUND = frozenset({404})

_STATUS_MEANING = {
    401: "401 Unauthorized: Organi refused the token (check ORGANI_TOKEN, auth_header, "
    "auth_scheme)",
    403: "403 Forbidden: the Organi token may not do this",
}


class WorklogStatus(IntEnum):
    """The document's internal worklog statuses (``statusId`` of "Update worklog status")."""

    TO_APPROVE = 1
    TO_REVIEW = 2
    REVIEWED = 3
    APPROVED = 4
    INVOICED = 5
    PRE_INVOICED = 11


class ConfirmationStatus(IntEnum):
    """The document's confirmation statuses; it lists 10 and 12 without naming them."""

    TO_APPROVE = 6
    APPROVED = 7
    TO_REVIEW = 8
    REVIEWED = 9
    STATUS_10 = 10
    STATUS_12 = 12


# The enums of each status operation, as the document gives them.
WORKLOG_STATUS_IDS = frozenset(int(s) for s in WorklogStatus)
WORKLOG_UNDO_STATUS_IDS = frozenset({4, 11})
CONFIRMATION_STATUS_IDS = frozenset(int(s) for s in ConfirmationStatus)
CONFIRMATION_UNDO_STATUS_IDS = frozenset({6, 7, 8, 9, 12})


@dataclass(frozen=True)
class StatusResult:
    """The answer of a status update or undo: the worklog ids (as Organi sends them, strings)
    the operation succeeded, failed and was denied for."""

    success: tuple[str, ...]
    failed: tuple[str, ...]
    denied: tuple[str, ...]


@dataclass(frozen=True)
class StatusRecord:
    """One row of a worklog's status history. ``raw`` is the whole row: the document names the
    status type object and the comment list only by their types (StatusTypeEntity,
    CommentEntity), not by their field names."""

    status_id: str | None
    status_date: str | None
    recipient: str | None
    author: str | None
    raw: Mapping[str, Any]


def worklog_number(worklog_id: str | int) -> int:
    """A worklog id as the number the document types it as; PermanentError otherwise."""
    if isinstance(worklog_id, bool):
        raise PermanentError(f"organi: worklog id {worklog_id!r} is not a number")
    if isinstance(worklog_id, int):
        return worklog_id
    text = str(worklog_id).strip()
    if not text.isdigit():
        raise PermanentError(f"organi: worklog id {worklog_id!r} is not a number")
    return int(text)


def _shown(url: str) -> str:
    """The base URL for an error message, without any user info or query it may carry."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _optional_text(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    return None if value is None else str(value)


class OrganiClient(BaseClient):
    """HTTP client for Organi's worklog, status and mail operations; raises only relay errors."""

    target = "organi"

    def __init__(
        self, config: OrganiConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(
            config.base_url,
            headers={config.auth_header: config.auth_value(), "accept": "application/json"},
            timeout=config.timeout,
            transport=transport,
        )
        self.config = config

    def path(self, name: str, worklog_id: str | int | None = None) -> str:
        """The configured path of an operation, with the worklog id filled in."""
        path = self.config.paths[name]
        if worklog_id is None:
            return path
        return path.replace("{id}", str(worklog_number(worklog_id)))

    def describe_error(self, response: httpx.Response) -> str:
        """Organi's refusal in words: a known status meaning, else its error text.

        The document defines no error body; ``message``, ``error``, ``title`` or ``detail``
        (text) is read when the body is a JSON object with one, else a body excerpt is shown.
        """
        status = response.status_code
        if status in _STATUS_MEANING:
            return _STATUS_MEANING[status]
        body = json_object(response)
        for key in ("message", "error", "title", "detail"):
            message = body.get(key)
            if isinstance(message, str) and message:
                return f"organi answered {status}: {excerpt(message, 200)}"
        return super().describe_error(response)

    # -- worklogs ---------------------------------------------------------------------------

    def _created_id(self, response: httpx.Response) -> str:
        worklog_id = json_object(response).get("worklogId")
        if isinstance(worklog_id, str) and worklog_id.strip().isdigit():
            return str(int(worklog_id))
        if isinstance(worklog_id, int) and not isinstance(worklog_id, bool):
            return str(worklog_id)
        # 2xx without an id (the document does not mark it required): the worklog probably
        # exists but cannot be named, and Organi is not searched for the relay's records.
        raise UnknownOutcomeError(
            f"organi: POST {self.path('worklogs')} succeeded without a worklogId; check Organi "
            "before replaying with --force",
            status=response.status_code,
            response_excerpt=excerpt(response.text),
        )

    def create_worklog(self, payload: Mapping[str, Any]) -> str:
        """POST the worklog; return the new ``worklogId`` (as a string, for the ID map)."""
        response = self.request("POST", self.path("worklogs"), json=dict(payload))
        return self._created_id(response)

    def update_worklog(self, worklog_id: str | int, payload: Mapping[str, Any]) -> bool:
        """PUT the worklog with its ``worklogId`` in the body; True if updated, False if Organi
        answers 404 (it no longer has the worklog)."""
        body = {"worklogId": worklog_number(worklog_id), **payload}
        response = self.request("PUT", self.path("worklogs"), json=body, allow_statuses=NOT_FOUND)
        return response.status_code != 404

    def get_worklog(self, worklog_id: str | int) -> Mapping[str, Any] | None:
        """GET one worklog; None if Organi answers 404."""
        response = self.request("GET", self.path("worklog", worklog_id), allow_statuses=NOT_FOUND)
        return None if response.status_code == 404 else json_object(response)

    def delete_worklog(self, worklog_id: str | int) -> bool:
        """DELETE the worklog; True if deleted, False if Organi confirmably no longer had it.

        ``cacheId`` is sent when configured. A 400 without one is a ConfigurationError naming
        ``cache_id``; a 404 that may come from a wrong base URL names ``ORGANI_BASE_URL``."""
        path = self.path("worklog", worklog_id)
        params = {"cacheId": self.config.cache_id} if self.config.cache_id else None
        try:
            response = self.request("DELETE", path, params=params, allow_statuses=NOT_FOUND)
        except PermanentError as exc:
            if exc.status == 400 and not self.config.cache_id:
                raise ConfigurationError(
                    f"organi: DELETE {path} refused without a cacheId ({exc.message}); set "
                    '[targets.organi] cache_id = "<cache id>"',
                    status=exc.status,
                    response_excerpt=exc.response_excerpt,
                ) from None
            raise
        if response.status_code != 404:
            return True
        if self.get_worklog(worklog_id) is not None:
            raise ConfigurationError(
                f"organi: DELETE {path} answered 404 although GET finds the worklog at "
                f"{_shown(self.base_url)}; check [targets.organi.paths] worklog"
            )
        self.require_api(f"DELETE {path}")
        return False

    def worklog_types(self) -> list[Any]:
        """GET the worklog types (a documented list with no required parameter)."""
        response = self.request("GET", self.path("worklog_types"))
        body = _json(response)
        if not isinstance(body, list):
            raise PermanentError(
                f"organi: GET {self.path('worklog_types')} answered no list",
                status=response.status_code,
                response_excerpt=excerpt(response.text),
            )
        return body

    def require_api(self, after: str) -> None:
        """Prove the base URL serves the documented API (the worklog types are a list), so a
        404 to ``after`` means a missing worklog, not a wrong base URL or path."""
        response = self.request("GET", self.path("worklog_types"), allow_statuses=NOT_FOUND)
        if response.status_code == 404 or not isinstance(_json(response), list):
            raise ConfigurationError(
                f"organi: {after} answered 404 and GET {self.path('worklog_types')} answered "
                f"{response.status_code} without a list at {_shown(self.base_url)}: the base "
                "URL or a path is wrong; set ORGANI_BASE_URL (or [targets.organi] base_url) "
                "and check [targets.organi.paths]",
                status=response.status_code,
                response_excerpt=excerpt(response.text),
            )

    # -- statuses (used by the approval flows) ----------------------------------------------

    def _status_call(
        self,
        operation: str,
        worklog_ids: Iterable[str | int],
        status_id: int,
        allowed: frozenset[int],
        extra: Mapping[str, Any],
    ) -> StatusResult:
        ids = [worklog_number(w) for w in worklog_ids]
        if not ids:
            raise PermanentError(f"organi: {operation} needs at least one worklog id")
        if isinstance(status_id, bool) or int(status_id) not in allowed:
            raise PermanentError(
                f"organi: statusId {status_id!r} is not one the document allows for "
                f"{operation} ({', '.join(str(s) for s in sorted(allowed))})"
            )
        body: dict[str, Any] = {"worklogIds": ids, "statusId": int(status_id)}
        body.update({k: v for k, v in extra.items() if v is not None})
        path = self.path(operation)
        response = self.request("PUT", path, json=body)
        return _status_result(f"PUT {path}", response)

    def set_worklog_status(
        self,
        worklog_ids: Sequence[str | int],
        status_id: int,
        comment: str | None = None,
        *,
        order_number: str | None = None,
        invoice_number: str | None = None,
        invoice_date: datetime | None = None,
    ) -> StatusResult:
        """Set the internal worklog status of many worklogs in one call ("Update worklog
        status": ``{worklogIds, statusId, comment, orderNumber, invoiceNumber, invoiceDate}``)."""
        return self._status_call(
            "worklog_status",
            worklog_ids,
            status_id,
            WORKLOG_STATUS_IDS,
            {
                "comment": comment,
                "orderNumber": order_number,
                "invoiceNumber": invoice_number,
                "invoiceDate": None if invoice_date is None else invoice_date.isoformat(),
            },
        )

    def undo_worklog_status(
        self,
        worklog_ids: Sequence[str | int],
        status_id: int,
        *,
        order_number: str | None = None,
    ) -> StatusResult:
        """Revert the last worklog status change ("Undo worklog status": ``{worklogIds,
        statusId, orderNumber}``; ``statusId`` 4 or 11, the status being undone)."""
        return self._status_call(
            "worklog_status_undo",
            worklog_ids,
            status_id,
            WORKLOG_UNDO_STATUS_IDS,
            {"orderNumber": order_number},
        )

    def set_confirmation_status(
        self, worklog_ids: Sequence[str | int], status_id: int, comment: str | None = None
    ) -> StatusResult:
        """Set the confirmation (customer approval) status ("Update confirmation status":
        ``{worklogIds, statusId, comment}``)."""
        return self._status_call(
            "confirmation_status",
            worklog_ids,
            status_id,
            CONFIRMATION_STATUS_IDS,
            {"comment": comment},
        )

    def undo_confirmation_status(
        self, worklog_ids: Sequence[str | int], status_id: int
    ) -> StatusResult:
        """Revert the last confirmation status change ("Undo confirmation status":
        ``{worklogIds, statusId}``)."""
        return self._status_call(
            "confirmation_status_undo", worklog_ids, status_id, CONFIRMATION_UNDO_STATUS_IDS, {}
        )

    def _history(self, operation: str, worklog_id: str | int) -> list[StatusRecord]:
        path = self.path(operation, worklog_id)
        response = self.request("GET", path)
        body = _json(response)
        if not isinstance(body, list) or not all(isinstance(row, Mapping) for row in body):
            raise PermanentError(
                f"organi: GET {path} answered no list of status rows",
                status=response.status_code,
                response_excerpt=excerpt(response.text),
            )
        return [
            StatusRecord(
                status_id=_optional_text(row, "statusId"),
                status_date=_optional_text(row, "statusDate"),
                recipient=_optional_text(row, "recipient"),
                author=_optional_text(row, "author"),
                raw=row,
            )
            for row in body
        ]

    def worklog_status_history(self, worklog_id: str | int) -> list[StatusRecord]:
        """The history of a worklog's internal statuses ("Get worklog status history")."""
        return self._history("worklog_status_history", worklog_id)

    def confirmation_status_history(self, worklog_id: str | int) -> list[StatusRecord]:
        """The history of a worklog's confirmation statuses ("Get confirmation status
        history")."""
        return self._history("confirmation_status_history", worklog_id)

    def send_mailing(self, list_name: str) -> Mapping[str, Any]:
        """Trigger the pre-configured mailing ``list_name`` ("Send configured mailings",
        ``?list=``); returns Organi's answer (an object, ``{}`` in the document)."""
        if not list_name.strip():
            raise PermanentError("organi: a mailing needs a list name")
        path = self.path("mail")
        response = self.request("POST", path, params={"list": list_name})
        return json_object(response)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _id_list(body: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = body.get(key)
    if not isinstance(value, list):
        return None
    ids: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int):
            return None
        ids.append(str(item))
    return tuple(ids)


def _status_result(call: str, response: httpx.Response) -> StatusResult:
    """``{success, failed, denied}`` (all required lists of ids); a 2xx without them leaves the
    outcome per worklog unknown."""
    body = json_object_or_none(response) or {}
    lists = {key: _id_list(body, key) for key in ("success", "failed", "denied")}
    success, failed, denied = lists["success"], lists["failed"], lists["denied"]
    if success is None or failed is None or denied is None:
        missing = ", ".join(key for key, ids in lists.items() if ids is None)
        raise UnknownOutcomeError(
            f"organi: {call} answered {response.status_code} without the id lists {missing}; "
            "which worklogs changed is unknown",
            status=response.status_code,
            response_excerpt=excerpt(response.text),
        )
    return StatusResult(success=success, failed=failed, denied=denied)
