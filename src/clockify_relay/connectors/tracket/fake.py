"""Fake of Tracket's worklog API v1.0, as its "Time entries" document (v1.0, marked deprecated)
describes it.

* ``GET /api/1.0/worklogs`` -- ``{"worklogs": [...], "next-cursor": "..."}``, oldest first,
  optional ``startDate`` (date or date-time: worklogs with ``worklogDate`` at or after it),
  ``cursor`` (the previous page's ``next-cursor``) and ``limit`` (page size, default
  :data:`DEFAULT_PAGE_SIZE`). ``next-cursor`` is left out on the last page (the doc marks it
  optional).
* ``POST /api/1.0/worklogs``; ``GET``/``PUT``/``DELETE /api/1.0/worklogs/{id}``; unknown id
  -> 404.

The doc says nothing on auth; the fake requires ``Authorization: Bearer <tracket_token>`` and
answers 401 ``{"error": ...}`` otherwise. Invalid input -> 400 ``{"error": ..., "fields":
[...]}``. Records carry Tracket's field names (``worklogId``, ``createdDate``, ``updatedDate``,
``approvalStatus`` "open", ``approverUserId``). As in the doc, the PUT response has no
``approvalStatus``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from clockify_relay.sandbox.core import (
    FakeTarget,
    InvalidJSON,
    SandboxConfig,
    aware_datetime,
    is_number,
    json_response,
    method_route,
    now_iso,
    read_json,
)

BASE_PATH = "/api/1.0"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_REQUIRED = ("itemId", "userId", "worklogDate", "worklogMinutes")
_NULLABLE_STRINGS = ("description", "worklogCategory")
_WRITABLE = (*_REQUIRED, *_NULLABLE_STRINGS, "worklogBillableMinutes")


class TracketInputError(Exception):
    """Invalid request input; answered as 400 ``{"error": message, "fields": [...]}``."""

    def __init__(self, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or []

    def response(self) -> Response:
        """The 400 response."""
        return json_response({"error": str(self), "fields": self.fields}, status_code=400)


def validate_worklog(data: Any, *, partial: bool) -> None:
    """Raise :class:`TracketInputError` unless ``data`` is a valid create (or update) body."""
    if not isinstance(data, dict):
        raise TracketInputError("body must be a JSON object")
    unknown = sorted(set(data) - set(_WRITABLE))
    if unknown:
        raise TracketInputError(f"unknown fields: {', '.join(unknown)}", unknown)
    if not partial:
        missing = [key for key in _REQUIRED if data.get(key) is None]
        if missing:
            raise TracketInputError(f"missing required fields: {', '.join(missing)}", missing)
    bad: list[str] = []
    for key in ("itemId", "userId"):
        if key in data and not (isinstance(data[key], str) and data[key]):
            bad.append(key)
    if "worklogDate" in data and aware_datetime(data["worklogDate"]) is None:
        bad.append("worklogDate")
    if "worklogMinutes" in data and not (
        is_number(data["worklogMinutes"]) and data["worklogMinutes"] >= 0
    ):
        bad.append("worklogMinutes")
    billable = data.get("worklogBillableMinutes")
    if billable is not None and not (is_number(billable) and billable >= 0):
        bad.append("worklogBillableMinutes")
    for key in _NULLABLE_STRINGS:
        if data.get(key) is not None and not isinstance(data[key], str):
            bad.append(key)
    if bad:
        raise TracketInputError(
            f"invalid fields: {', '.join(bad)} (itemId/userId non-empty strings, worklogDate an "
            "ISO 8601 date-time with offset, minutes non-negative numbers)",
            bad,
        )


class TracketFake(FakeTarget):
    """In-memory Tracket worklogs behind the documented v1.0 API."""

    name = "tracket"
    base_path = BASE_PATH

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        # Insertion-ordered: the list endpoint pages in creation order.
        self._worklogs: dict[str, dict[str, Any]] = {}
        self._seq: dict[str, int] = {}
        self._next_seq = 1

    # -- FakeTarget -------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """``/api/1.0/worklogs`` and ``/api/1.0/worklogs/{id}``."""
        return [
            method_route(f"{BASE_PATH}/worklogs", {"GET": self._list, "POST": self._create}),
            method_route(
                f"{BASE_PATH}/worklogs/{{id}}",
                {"GET": self._get, "PUT": self._update, "DELETE": self._delete},
            ),
        ]

    def state(self) -> dict[str, Any]:
        """``{"worklogs": [...]}`` in Tracket's field names, creation order."""
        with self.lock:
            return {"worklogs": [dict(w) for w in self._worklogs.values()]}

    def reset(self) -> None:
        """Forget every worklog."""
        with self.lock:
            self._worklogs.clear()
            self._seq.clear()
            self._next_seq = 1

    # -- handlers ---------------------------------------------------------------------------

    def _unauthorized(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.config.tracket_token:
            # Never echo the presented token.
            return json_response(
                {"error": "unauthorized: missing or invalid bearer token"}, status_code=401
            )
        return None

    async def _list(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        params = request.query_params
        try:
            limit = int(params.get("limit", DEFAULT_PAGE_SIZE))
        except ValueError:
            return TracketInputError("limit must be an integer", ["limit"]).response()
        if not 1 <= limit <= MAX_PAGE_SIZE:
            return TracketInputError(f"limit must be 1..{MAX_PAGE_SIZE}", ["limit"]).response()
        start: datetime | None = None
        if (raw_start := params.get("startDate")) is not None:
            start = aware_datetime(raw_start)
            if start is None:
                try:
                    start = datetime.combine(
                        date.fromisoformat(raw_start), datetime.min.time(), tzinfo=UTC
                    )
                except ValueError:
                    return TracketInputError(
                        "startDate must be an ISO 8601 date or date-time", ["startDate"]
                    ).response()
        after = 0
        if (cursor := params.get("cursor")) is not None:
            # The cursor is the sequence number of the last worklog of the previous page, so
            # pages stay stable while worklogs are added.
            try:
                after = int(cursor)
            except ValueError:
                return TracketInputError("invalid cursor", ["cursor"]).response()
        with self.lock:
            matching = [
                (self._seq[wid], w)
                for wid, w in self._worklogs.items()
                if self._seq[wid] > after
                and (start is None or _sort_key(w["worklogDate"]) >= start)
            ]
        page = matching[:limit]
        body: dict[str, Any] = {"worklogs": [dict(w) for _, w in page]}
        if len(matching) > limit:
            body["next-cursor"] = str(page[-1][0])
        return json_response(body)

    async def _create(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            data = await read_json(request)
            validate_worklog(data, partial=False)
        except InvalidJSON as exc:
            return TracketInputError(f"body must be JSON: {exc}").response()
        except TracketInputError as exc:
            return exc.response()
        now = now_iso()
        record: dict[str, Any] = {
            "itemId": data["itemId"],
            "userId": data["userId"],
            "description": data.get("description"),
            "worklogCategory": data.get("worklogCategory"),
            "worklogDate": data["worklogDate"],
            "worklogMinutes": data["worklogMinutes"],
            "worklogBillableMinutes": data.get("worklogBillableMinutes"),
            "worklogId": str(uuid.uuid4()),
            "createdDate": now,
            "updatedDate": now,
            "approvalStatus": "open",
            "approverUserId": None,
        }
        with self.lock:
            self._worklogs[record["worklogId"]] = record
            self._seq[record["worklogId"]] = self._next_seq
            self._next_seq += 1
            return json_response(dict(record))

    async def _get(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        with self.lock:
            record = self._worklogs.get(request.path_params["id"])
            if record is None:
                return _not_found()
            return json_response(dict(record))

    async def _update(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        worklog_id = request.path_params["id"]
        with self.lock:
            if worklog_id not in self._worklogs:
                return _not_found()
        try:
            data = await read_json(request)
            validate_worklog(data, partial=True)
        except InvalidJSON as exc:
            return TracketInputError(f"body must be JSON: {exc}").response()
        except TracketInputError as exc:
            return exc.response()
        for key in _REQUIRED:
            # Required fields of the record cannot be nulled by an update.
            if key in data and data[key] is None:
                return TracketInputError(f"{key} cannot be null", [key]).response()
        with self.lock:
            record = self._worklogs.get(worklog_id)
            if record is None:  # deleted while the body was read
                return _not_found()
            record.update(data)
            record["updatedDate"] = now_iso()
            # The doc's PUT response has no approvalStatus.
            return json_response({k: v for k, v in record.items() if k != "approvalStatus"})

    async def _delete(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        worklog_id = request.path_params["id"]
        with self.lock:
            if self._worklogs.pop(worklog_id, None) is None:
                return _not_found()
            self._seq.pop(worklog_id, None)
        return json_response({"message": f"Worklog {worklog_id} deleted"})


def _sort_key(worklog_date: str) -> datetime:
    parsed = aware_datetime(worklog_date)
    assert parsed is not None  # validated on write
    return parsed


def _not_found() -> Response:
    return json_response({"error": "worklog not found"}, status_code=404)
