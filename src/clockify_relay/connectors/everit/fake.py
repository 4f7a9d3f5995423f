"""Fake of Everit Timetracker's public Worklog API (``/timetracker/api/latest/public/worklog``).

Faithful to Everit's "Worklog API" document (Timetracker's public REST API reference):

* one path, ``/worklog``: ``POST`` (body NewWorklog), ``GET``/``DELETE`` with the id in the query
  (``worklogId``, or ``jiraWorklogId``; ``worklogId`` wins), ``PATCH`` with the id in the body
  (``{"worklogId", "jiraWorklogId", "partialWorklog"}``);
* ``x-everit-api-key`` must equal the configured key (401 otherwise); ``x-requested-by`` (CSRF)
  must be present on writes, empty allowed; ``x-timezone`` and ``x-everit-on-behalf-account``
  are optional and recorded under ``_headers`` in the state (for a DELETE, in ``deleted``);
* ``x-everit-on-behalf-account`` is documented for POST and PATCH only: there, an account on the
  fake's forbidden list (``PUT /_sandbox/everit/forbidden-accounts``) gets 479 (missing
  Timetracker permission). DELETE and GET are accepted with or without it (the doc is silent on
  what Everit does with it there), and it has no effect on them;
* invalid input -> 400 ``{"additionalErrors": [...], "fieldErrors": [{"errorType", "paths"}]}``;
* an unknown id -> 200 ``{"error": {"message": null, "result": "WORKLOG_NOT_FOUND",
  "worklogId": N}}`` on PATCH/DELETE (plus ``"worklog": null`` on PATCH), 400 with the same
  ``error`` object on GET, as the doc lists it under GET's 400.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from clockify_relay.sandbox.core import (
    FakeTarget,
    InvalidJSON,
    SandboxConfig,
    is_number,
    json_response,
    read_json,
)

BASE_PATH = "/timetracker/api/latest/public"

# Every field of NewWorklog / PartialWorklog, in the doc's order.
WORKLOG_FIELDS = (
    "description",
    "durationInSeconds",
    "isBillable",
    "issueId",
    "workDate",
    "worklogTagIds",
    "workStartTime",
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^\d{2}:\d{2}$")
# Jira worklog ids are a separate, larger number space than Everit's internal ids.
_JIRA_ID_OFFSET = 230000


class EveritValidationError(Exception):
    """Collects fieldErrors to answer with the documented 400 body."""

    def __init__(self, field_errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid parameters")
        self.field_errors = field_errors

    def response(self) -> Response:
        """The documented 400 "Invalid parameters" response."""
        return json_response(
            {"additionalErrors": [], "fieldErrors": self.field_errors}, status_code=400
        )


def _field_error(error_type: str, *path: str) -> dict[str, Any]:
    return {"errorType": error_type, "paths": [list(path)]}


def _valid_date(value: str) -> bool:
    if not _DATE_RE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _valid_time(value: str) -> bool:
    if not _TIME_RE.match(value):
        return False
    try:
        datetime.strptime(value, "%H:%M")
    except ValueError:
        return False
    return True


def validate_worklog(
    data: Any, *, partial: bool, prefix: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """fieldErrors for a NewWorklog (``partial`` False) or PartialWorklog (True); [] if valid.

    In a PartialWorklog a null value means "leave unchanged", so nulls are not checked.
    """
    if not isinstance(data, dict):
        return [_field_error("InvalidFormat", *prefix)]
    errors: list[dict[str, Any]] = []
    for key in data:
        if key not in WORKLOG_FIELDS:
            # The real API would ignore or reject it; rejecting catches connector typos here.
            errors.append(_field_error("Invalid", *prefix, key))

    def present(key: str) -> bool:
        return data.get(key) is not None

    if not partial and not present("workDate"):
        errors.append(_field_error("Required", *prefix, "workDate"))
    if present("workDate") and not (
        isinstance(data["workDate"], str) and _valid_date(data["workDate"])
    ):
        errors.append(_field_error("InvalidFormat", *prefix, "workDate"))
    if present("workStartTime") and not (
        isinstance(data["workStartTime"], str) and _valid_time(data["workStartTime"])
    ):
        errors.append(_field_error("InvalidFormat", *prefix, "workStartTime"))
    if present("durationInSeconds"):
        if not is_number(data["durationInSeconds"]):
            errors.append(_field_error("InvalidFormat", *prefix, "durationInSeconds"))
        elif data["durationInSeconds"] < 0:
            errors.append(_field_error("Invalid", *prefix, "durationInSeconds"))
    if present("isBillable") and not isinstance(data["isBillable"], bool):
        errors.append(_field_error("InvalidFormat", *prefix, "isBillable"))
    if present("issueId") and not is_number(data["issueId"]):
        errors.append(_field_error("InvalidFormat", *prefix, "issueId"))
    if present("description") and not isinstance(data["description"], str):
        errors.append(_field_error("InvalidFormat", *prefix, "description"))
    if present("worklogTagIds"):
        tags = data["worklogTagIds"]
        if not isinstance(tags, list):
            errors.append(_field_error("InvalidFormat", *prefix, "worklogTagIds"))
        else:
            errors.extend(
                _field_error("InvalidFormat", *prefix, "worklogTagIds", str(i))
                for i, tag in enumerate(tags)
                if not is_number(tag)
            )
    return errors


def _not_found(worklog_id: int | None) -> dict[str, Any]:
    return {"message": None, "result": "WORKLOG_NOT_FOUND", "worklogId": worklog_id}


class EveritFake(FakeTarget):
    """In-memory Everit Timetracker worklogs behind the documented public Worklog API."""

    name = "everit"
    base_path = BASE_PATH

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self._worklogs: dict[int, dict[str, Any]] = {}
        self._next_id = 1
        self._forbidden_accounts: set[str] = set()
        self._deleted: list[dict[str, Any]] = []

    # -- FakeTarget -------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """``/timetracker/api/latest/public/worklog`` with GET, POST, PATCH and DELETE."""
        return [
            Route(
                f"{BASE_PATH}/worklog",
                self._worklog,
                methods=["GET", "POST", "PATCH", "DELETE"],
            )
        ]

    def control_routes(self) -> list[BaseRoute]:
        """``PUT /_sandbox/everit/forbidden-accounts`` -- on-behalf accounts answered with 479."""
        return [Route("/forbidden-accounts", self._put_forbidden, methods=["PUT"])]

    def state(self) -> dict[str, Any]:
        """``{"worklogs": [...], "deleted": [...], "forbidden_accounts": [...]}`` in Everit's
        field names; ``deleted`` lists each deletion's ``worklogId`` and ``_headers``."""
        with self.lock:
            return {
                "worklogs": [
                    {**self._public(w), "_headers": dict(w["_headers"])}
                    for w in self._worklogs.values()
                ],
                "deleted": [dict(d, _headers=dict(d["_headers"])) for d in self._deleted],
                "forbidden_accounts": sorted(self._forbidden_accounts),
            }

    def reset(self) -> None:
        """Forget worklogs and forbidden accounts; ids start at 1 again."""
        with self.lock:
            self._worklogs.clear()
            self._next_id = 1
            self._forbidden_accounts.clear()
            self._deleted.clear()

    # -- handlers ---------------------------------------------------------------------------

    async def _put_forbidden(self, request: Request) -> Response:
        try:
            accounts = await read_json(request)
        except InvalidJSON as exc:
            return json_response({"error": str(exc)}, status_code=400)
        if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
            return json_response({"error": "body must be a list of account ids"}, status_code=400)
        with self.lock:
            self._forbidden_accounts = set(accounts)
        return json_response({"forbidden_accounts": sorted(accounts)})

    async def _worklog(self, request: Request) -> Response:
        denied = self._check_headers(request)
        if denied is not None:
            return denied
        try:
            if request.method == "POST":
                return await self._create(request)
            if request.method == "PATCH":
                return await self._patch(request)
            worklog_id = self._query_id(request)
            if request.method == "GET":
                return self._get(worklog_id)
            return self._delete(worklog_id, self._recorded_headers(request))
        except EveritValidationError as exc:
            return exc.response()

    def _check_headers(self, request: Request) -> Response | None:
        key = request.headers.get("x-everit-api-key")
        if key is None or key != self.config.everit_api_key:
            return PlainTextResponse("Unauthorized", status_code=401)
        if request.method != "GET" and "x-requested-by" not in request.headers:
            # The doc makes the CSRF header mandatory on writes (value may be empty).
            return EveritValidationError([_field_error("Required", "x-requested-by")]).response()
        account = request.headers.get("x-everit-on-behalf-account")
        documented = request.method in ("POST", "PATCH")  # the header's documented methods
        with self.lock:
            forbidden = documented and account is not None and account in self._forbidden_accounts
        if forbidden:
            return PlainTextResponse(
                "The user does not have one of the necessary Timetracker permissions.",
                status_code=479,
            )
        return None

    async def _create(self, request: Request) -> Response:
        data = await self._body(request)
        errors = validate_worklog(data, partial=False)
        if errors:
            raise EveritValidationError(errors)
        with self.lock:
            worklog_id = self._next_id
            self._next_id += 1
            record: dict[str, Any] = {
                "worklogId": worklog_id,
                "jiraWorklogId": _JIRA_ID_OFFSET + worklog_id,
                **{key: data.get(key) for key in WORKLOG_FIELDS},
                "_headers": self._recorded_headers(request),
            }
            if record["worklogTagIds"] is None:
                record["worklogTagIds"] = []
            self._worklogs[worklog_id] = record
            return json_response(self._public(record))

    async def _patch(self, request: Request) -> Response:
        data = await self._body(request)
        if not isinstance(data, dict):
            raise EveritValidationError([_field_error("InvalidFormat")])
        errors: list[dict[str, Any]] = []
        for key in data:
            if key not in ("worklogId", "jiraWorklogId", "partialWorklog"):
                errors.append(_field_error("Invalid", key))
        for key in ("worklogId", "jiraWorklogId"):
            if data.get(key) is not None and not is_number(data[key]):
                errors.append(_field_error("InvalidFormat", key))
        if data.get("worklogId") is None and data.get("jiraWorklogId") is None:
            errors.append(_field_error("Required", "worklogId"))
        if data.get("partialWorklog") is None:
            errors.append(_field_error("Required", "partialWorklog"))
        else:
            errors.extend(
                validate_worklog(data["partialWorklog"], partial=True, prefix=("partialWorklog",))
            )
        if errors:
            raise EveritValidationError(errors)
        worklog_id = self._resolve(data.get("worklogId"), data.get("jiraWorklogId"))
        with self.lock:
            record = self._worklogs.get(worklog_id) if worklog_id is not None else None
            if record is None:
                missing = data.get("worklogId")
                return json_response(
                    {
                        "error": _not_found(None if missing is None else int(missing)),
                        "worklog": None,
                    }
                )
            for key, value in data["partialWorklog"].items():
                if value is not None:
                    record[key] = value
            record["_headers"] = self._recorded_headers(request)
            return json_response({"error": None, "worklog": self._public(record)})

    def _get(self, worklog_id: int | None) -> Response:
        with self.lock:
            record = self._worklogs.get(worklog_id) if worklog_id is not None else None
            if record is None:
                return json_response({"error": _not_found(worklog_id)}, status_code=400)
            return json_response(self._public(record))

    def _delete(self, worklog_id: int | None, headers: dict[str, str | None]) -> Response:
        with self.lock:
            if worklog_id is None or worklog_id not in self._worklogs:
                return json_response({"error": _not_found(worklog_id)})
            del self._worklogs[worklog_id]
            self._deleted.append({"worklogId": worklog_id, "_headers": headers})
            return json_response({"error": None})

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    async def _body(request: Request) -> Any:
        try:
            return await read_json(request)
        except InvalidJSON:
            raise EveritValidationError([_field_error("InvalidFormat")]) from None

    def _query_id(self, request: Request) -> int | None:
        """The worklog addressed by ``?worklogId=`` or ``?jiraWorklogId=`` (worklogId wins).

        Returns the internal id, or the given worklogId when nothing matches (so the
        WORKLOG_NOT_FOUND body can echo it); 400 when neither parameter is a number.
        """
        params = request.query_params
        parsed: dict[str, int] = {}
        errors: list[dict[str, Any]] = []
        for key in ("worklogId", "jiraWorklogId"):
            raw = params.get(key)
            if raw is None:
                continue
            try:
                parsed[key] = int(raw)
            except ValueError:
                errors.append(_field_error("InvalidFormat", key))
        if errors:
            raise EveritValidationError(errors)
        if not parsed:
            raise EveritValidationError([_field_error("Required", "worklogId")])
        resolved = self._resolve(parsed.get("worklogId"), parsed.get("jiraWorklogId"))
        return resolved if resolved is not None else parsed.get("worklogId")

    def _resolve(self, worklog_id: Any, jira_worklog_id: Any) -> int | None:
        if worklog_id is not None:
            return int(worklog_id)
        with self.lock:
            for record in self._worklogs.values():
                if record["jiraWorklogId"] == jira_worklog_id:
                    return int(record["worklogId"])
        return None

    @staticmethod
    def _recorded_headers(request: Request) -> dict[str, str | None]:
        return {
            "x-timezone": request.headers.get("x-timezone"),
            "x-everit-on-behalf-account": request.headers.get("x-everit-on-behalf-account"),
            "x-requested-by": request.headers.get("x-requested-by"),
        }

    @staticmethod
    def _public(record: dict[str, Any]) -> dict[str, Any]:
        """The worklog as the API returns it (no sandbox bookkeeping)."""
        return {k: v for k, v in record.items() if not k.startswith("_")}
