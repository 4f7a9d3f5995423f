"""Fake of Organi's Time API (1.5.27) as far as the relay uses it: worklogs, statuses, mailings.

The document gives no paths, methods or auth; the fake serves the relay's defaults
(config.py ``PATH_DEFAULTS``, methods as api.py uses them) under the mount ``/organi``:

* ``POST /worklog`` (create), ``PUT /worklog`` (update: ``worklogId`` in the body, as the
  document's update has no path id), ``GET``/``DELETE /worklog/{id}``, ``GET /worklogType``.
* ``PUT /status/worklog`` (statusId 1 2 3 4 5 11), ``PUT /status/worklog/undo`` (4 11),
  ``PUT /status/confirmation`` (6 7 8 9 10 12), ``PUT /status/confirmation/undo`` (6 7 8 9 12):
  ``{worklogIds, statusId, comment…}`` → ``{success, failed, denied}`` (ids as strings). An id
  succeeds when the worklog exists (an undo: when its current status is ``statusId``), else it
  fails; ``status_outcomes`` (below) forces ``failed``/``denied`` per id. Every valid call is
  kept, as received, in ``statusUpdates``.
* ``GET /status/worklog/{worklogId}``, ``GET /status/confirmation/{worklogId}``: the history.
  The document types the status type and comments only as StatusTypeEntity/CommentEntity; the
  fake names them ``statusType`` and ``comments``.
* ``POST /mail?list=<name>`` → ``{}``; kept in ``mailings``.

Auth: ``Authorization: Bearer <organi_token>``, else 401. Invalid input → 400. Where the document
is silent the fake plays either reading, chosen with ``PUT /_sandbox/organi/behaviour`` (until a
reset; answers the whole behaviour):

* ``create_response``: ``"worklog"`` (default: the created worklog with ``worklogId``) or
  ``"no-id"`` (the worklog without it -- the document does not mark it required);
* ``delete_missing``: ``"404"`` (default) or ``"200"`` (``{}``) for a DELETE of an unknown id;
* ``cache_id``: ``"required"`` (default, as the document's parameter list marks it) or
  ``"optional"`` (its prose says "often");
* ``error_body``: ``"json"`` (default, ``{"message": …}``) or ``"text"`` (plain text);
* ``status_outcomes``: ``{"<worklogId>": "failed" | "denied" | "success"}``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

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

FIRST_ID = 1001
WORKLOG_TYPES = [
    {"worklogTypeId": 1, "worklogType": "Work", "description": "Billable work"},
    {"worklogTypeId": 2, "worklogType": "Internal", "description": "Internal work"},
]
# The document's status enums, per operation.
WORKLOG_STATUSES = {
    1: "to approve",
    2: "to review",
    3: "reviewed",
    4: "approved",
    5: "invoiced",
    11: "pre-invoiced",
}
CONFIRMATION_STATUSES = {
    6: "to approve",
    7: "approved",
    8: "to review",
    9: "reviewed",
    10: "status 10",
    12: "status 12",
}
WORKLOG_UNDO = frozenset({4, 11})
CONFIRMATION_UNDO = frozenset({6, 7, 8, 9, 12})

_REQUIRED = ("worklogType", "performanceType", "description", "author", "startDate", "endDate")
_WRITABLE = frozenset((*_REQUIRED, "jiraIssue", "attributes", "comments"))
_STATUS_EXTRA = {
    "worklog": ("comment", "orderNumber", "invoiceNumber", "invoiceDate"),
    "worklogUndo": ("orderNumber",),
    "confirmation": ("comment",),
    "confirmationUndo": (),
}
BEHAVIOUR_DEFAULTS: dict[str, Any] = {
    "create_response": "worklog",
    "delete_missing": "404",
    "cache_id": "required",
    "error_body": "json",
    "status_outcomes": {},
}
_CHOICES = {
    "create_response": ("worklog", "no-id"),
    "delete_missing": ("404", "200"),
    "cache_id": ("required", "optional"),
    "error_body": ("json", "text"),
}
_OUTCOMES = ("success", "failed", "denied")


class OrganiInputError(Exception):
    """Invalid request input; answered 400."""


def validate_worklog(data: Any, *, update: bool) -> None:
    """Raise :class:`OrganiInputError` unless ``data`` is a valid create (or update) body."""
    if not isinstance(data, dict):
        raise OrganiInputError("body must be a JSON object")
    allowed = _WRITABLE | {"worklogId"} if update else _WRITABLE
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise OrganiInputError(f"unknown fields: {', '.join(unknown)}")
    if update and not (
        is_number(data.get("worklogId")) and data["worklogId"] == int(data["worklogId"])
    ):
        raise OrganiInputError("worklogId is required and must be a number")
    missing = [key for key in _REQUIRED if data.get(key) is None]
    if missing:
        raise OrganiInputError(f"missing required fields: {', '.join(missing)}")
    bad = [key for key in ("worklogType", "performanceType") if not is_number(data[key])]
    if not isinstance(data["description"], str):
        bad.append("description")
    if not (isinstance(data["author"], str) and data["author"].strip()):
        bad.append("author")
    start, end = aware_datetime(data["startDate"]), aware_datetime(data["endDate"])
    if start is None:
        bad.append("startDate")
    if end is None or (start is not None and end < start):
        bad.append("endDate")
    if "jiraIssue" in data and not isinstance(data["jiraIssue"], dict):
        bad.append("jiraIssue")
    if bad:
        raise OrganiInputError(
            f"invalid fields: {', '.join(bad)} (types numbers, author a non-empty string, dates "
            "ISO 8601 date-times with offset, endDate not before startDate)"
        )


class OrganiFake(FakeTarget):
    """In-memory Organi worklogs, statuses and mailings behind the relay's chosen paths."""

    name = "organi"

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self._worklogs: dict[int, dict[str, Any]] = {}
        self._history: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._status_updates: list[dict[str, Any]] = []
        self._mailings: list[dict[str, Any]] = []
        self._next_id = FIRST_ID
        self._next_status = 1
        self.behaviour: dict[str, Any] = _default_behaviour()

    # -- FakeTarget -------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The worklog, status and mail paths (config.py ``PATH_DEFAULTS``)."""
        return [
            method_route("/worklog", {"POST": self._create, "PUT": self._update}),
            method_route("/worklog/{id}", {"GET": self._get, "DELETE": self._delete}),
            method_route("/worklogType", {"GET": self._worklog_types}),
            method_route("/status/worklog", {"PUT": self._status_handler("worklog")}),
            method_route("/status/worklog/undo", {"PUT": self._status_handler("worklogUndo")}),
            method_route("/status/worklog/{id}", {"GET": self._history_handler("worklog")}),
            method_route("/status/confirmation", {"PUT": self._status_handler("confirmation")}),
            method_route(
                "/status/confirmation/undo", {"PUT": self._status_handler("confirmationUndo")}
            ),
            method_route(
                "/status/confirmation/{id}", {"GET": self._history_handler("confirmation")}
            ),
            method_route("/mail", {"POST": self._mail}),
        ]

    def control_routes(self) -> list[BaseRoute]:
        """``PUT /_sandbox/organi/behaviour``: choose a reading where the document is silent."""
        return [Route("/behaviour", self._put_behaviour, methods=["PUT"])]

    def state(self) -> dict[str, Any]:
        """``{"worklogs": [...], "statusUpdates": [...], "mailings": [...]}``."""
        with self.lock:
            return {
                "worklogs": [dict(w) for w in self._worklogs.values()],
                "statusUpdates": [dict(u) for u in self._status_updates],
                "mailings": [dict(m) for m in self._mailings],
            }

    def reset(self) -> None:
        """Forget every record and go back to the default behaviour."""
        with self.lock:
            self._worklogs.clear()
            self._history.clear()
            self._status_updates.clear()
            self._mailings.clear()
            self._next_id = FIRST_ID
            self._next_status = 1
            self.behaviour = _default_behaviour()

    def set_behaviour(self, changes: Any) -> dict[str, Any]:
        """Apply ``changes`` (see the module docstring); ValueError naming a bad one."""
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        unknown = sorted(set(changes) - set(BEHAVIOUR_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown behaviour keys: {', '.join(unknown)}")
        for key, choices in _CHOICES.items():
            if key in changes and changes[key] not in choices:
                raise ValueError(f"{key} must be one of {', '.join(choices)}")
        outcomes = changes.get("status_outcomes", {})
        if not isinstance(outcomes, dict) or any(v not in _OUTCOMES for v in outcomes.values()):
            raise ValueError(
                'status_outcomes must map worklog ids to "success", "failed" or "denied"'
            )
        with self.lock:
            self.behaviour.update(changes)
            return _copy_behaviour(self.behaviour)

    # -- helpers ----------------------------------------------------------------------------

    def _error(self, message: str, status: int) -> Response:
        if self.behaviour["error_body"] == "text":
            return Response(message, status_code=status, media_type="text/plain")
        return json_response({"message": message}, status_code=status)

    def _unauthorized(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.config.organi_token:
            # Never echo the presented token.
            return self._error("unauthorized: missing or invalid bearer token", 401)
        return None

    def _path_id(self, request: Request) -> int | None:
        raw = request.path_params["id"]
        return int(raw) if raw.isdigit() else None

    async def _body(self, request: Request) -> Any:
        try:
            return await read_json(request)
        except InvalidJSON as exc:
            raise OrganiInputError(f"body must be JSON: {exc}") from None

    # -- worklogs ---------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            data = await self._body(request)
            validate_worklog(data, update=False)
        except OrganiInputError as exc:
            return self._error(str(exc), 400)
        with self.lock:
            worklog_id = self._next_id
            self._next_id += 1
            record: dict[str, Any] = {
                "worklogId": worklog_id,
                **{k: data[k] for k in _REQUIRED},
                "currentStatusTypeId": None,
                "createdBy": "sandbox",
                "modifiedBy": "sandbox",
            }
            record.update(
                {k: data[k] for k in ("jiraIssue", "attributes", "comments") if k in data}
            )
            self._worklogs[worklog_id] = record
            answer = dict(record)
            if self.behaviour["create_response"] == "no-id":
                answer.pop("worklogId")
        return json_response(answer)

    async def _update(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            data = await self._body(request)
            validate_worklog(data, update=True)
        except OrganiInputError as exc:
            return self._error(str(exc), 400)
        worklog_id = int(data["worklogId"])
        with self.lock:
            record = self._worklogs.get(worklog_id)
            if record is None:
                return self._error(f"worklog {worklog_id} not found", 404)
            for key in ("jiraIssue", "attributes", "comments"):
                record.pop(key, None)
            record.update({k: v for k, v in data.items() if k != "worklogId"})
            record["modifiedBy"] = "sandbox"
            return json_response(dict(record))

    async def _get(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        worklog_id = self._path_id(request)
        if worklog_id is None:
            return self._error("id must be a number", 400)
        with self.lock:
            record = self._worklogs.get(worklog_id)
            if record is None:
                return self._error(f"worklog {worklog_id} not found", 404)
            return json_response(dict(record))

    async def _delete(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        worklog_id = self._path_id(request)
        if worklog_id is None:
            return self._error("id must be a number", 400)
        with self.lock:
            if self.behaviour["cache_id"] == "required" and not request.query_params.get("cacheId"):
                return self._error("cacheId is required", 400)
            if self._worklogs.pop(worklog_id, None) is None:
                if self.behaviour["delete_missing"] == "404":
                    return self._error(f"worklog {worklog_id} not found", 404)
                return json_response({})
            self._history.pop(("worklog", worklog_id), None)
            self._history.pop(("confirmation", worklog_id), None)
        return json_response({})

    async def _worklog_types(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return json_response(WORKLOG_TYPES)

    # -- statuses ---------------------------------------------------------------------------

    def _status_handler(self, operation: str) -> Any:
        async def handler(request: Request) -> Response:
            if (denied := self._unauthorized(request)) is not None:
                return denied
            try:
                data = await self._body(request)
                self._validate_status(operation, data)
            except OrganiInputError as exc:
                return self._error(str(exc), 400)
            return json_response(self._apply_status(operation, data))

        return handler

    def _validate_status(self, operation: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise OrganiInputError("body must be a JSON object")
        extra = _STATUS_EXTRA[operation]
        unknown = sorted(set(data) - {"worklogIds", "statusId", *extra})
        if unknown:
            raise OrganiInputError(f"unknown fields: {', '.join(unknown)}")
        ids = data.get("worklogIds")
        if (
            not isinstance(ids, list)
            or not ids
            or not all(is_number(i) and i == int(i) for i in ids)
        ):
            raise OrganiInputError("worklogIds must be a non-empty array of numbers")
        allowed = {
            "worklog": set(WORKLOG_STATUSES),
            "worklogUndo": WORKLOG_UNDO,
            "confirmation": set(CONFIRMATION_STATUSES),
            "confirmationUndo": CONFIRMATION_UNDO,
        }[operation]
        status = data.get("statusId")
        if not is_number(status) or status not in allowed:
            raise OrganiInputError(
                f"statusId must be one of {', '.join(str(s) for s in sorted(allowed))}"
            )
        for key in extra:
            if data.get(key) is not None and not isinstance(data[key], str):
                raise OrganiInputError(f"{key} must be a string")
        if data.get("invoiceDate") is not None and aware_datetime(data["invoiceDate"]) is None:
            raise OrganiInputError("invoiceDate must be an ISO 8601 date-time with offset")

    def _apply_status(self, operation: str, data: dict[str, Any]) -> dict[str, list[str]]:
        kind = "confirmation" if operation.startswith("confirmation") else "worklog"
        undo = operation.endswith("Undo")
        names = CONFIRMATION_STATUSES if kind == "confirmation" else WORKLOG_STATUSES
        status = int(data["statusId"])
        answer: dict[str, list[str]] = {outcome: [] for outcome in _OUTCOMES}
        with self.lock:
            self._status_updates.append({"operation": operation, "comment": None, **data})
            outcomes = self.behaviour["status_outcomes"]
            for raw_id in data["worklogIds"]:
                worklog_id = int(raw_id)
                history = self._history.setdefault((kind, worklog_id), [])
                forced = outcomes.get(str(worklog_id))
                current = history[-1]["statusType"]["statusTypeId"] if history else None
                possible = worklog_id in self._worklogs and (not undo or current == status)
                outcome = forced or ("success" if possible else "failed")
                answer[outcome].append(str(worklog_id))
                if outcome != "success" or worklog_id not in self._worklogs:
                    continue
                if undo:
                    if history:
                        history.pop()
                else:
                    history.append(self._status_row(status, names, data.get("comment")))
                if kind == "worklog":
                    self._worklogs[worklog_id]["currentStatusTypeId"] = (
                        history[-1]["statusType"]["statusTypeId"] if history else None
                    )
        return answer

    def _status_row(self, status: int, names: dict[int, str], comment: Any) -> dict[str, Any]:
        row_id = self._next_status
        self._next_status += 1
        return {
            "statusId": str(row_id),
            "statusDate": now_iso(),
            "recipient": None,
            "author": "sandbox",
            "statusType": {
                "statusTypeId": status,
                "statusType": names[status],
                "description": None,
            },
            "comments": [] if comment is None else [{"comment": comment}],
        }

    def _history_handler(self, kind: str) -> Any:
        async def handler(request: Request) -> Response:
            if (denied := self._unauthorized(request)) is not None:
                return denied
            worklog_id = self._path_id(request)
            if worklog_id is None:
                return self._error("worklogId must be a number", 400)
            with self.lock:
                if worklog_id not in self._worklogs:
                    return self._error(f"worklog {worklog_id} not found", 404)
                rows = self._history.get((kind, worklog_id), [])
                return json_response([dict(row) for row in rows])

        return handler

    # -- mail -------------------------------------------------------------------------------

    async def _mail(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        name = request.query_params.get("list", "")
        if not name.strip():
            return self._error("list is required", 400)
        with self.lock:
            self._mailings.append({"list": name})
        return json_response({})

    # -- control ----------------------------------------------------------------------------

    async def _put_behaviour(self, request: Request) -> Response:
        try:
            body = await read_json(request)
            return json_response(self.set_behaviour(body))
        except (InvalidJSON, ValueError) as exc:
            return json_response({"error": str(exc)}, status_code=400)


def _default_behaviour() -> dict[str, Any]:
    return _copy_behaviour(BEHAVIOUR_DEFAULTS)


def _copy_behaviour(behaviour: dict[str, Any]) -> dict[str, Any]:
    return {**behaviour, "status_outcomes": dict(behaviour["status_outcomes"])}
