"""Fake of Blikk's public API, mounted at ``/blikk`` in the sandbox.

What it enforces, as Blikk's "Blikk API documentation" (its public API reference) has it:

* ``POST /v1/Auth/Token`` with ``Authorization: Basic base64(app id:secret)`` answers
  ``{"objectName": "auth.token", "accessToken": ..., "expires": "YYYY-MM-DD hh:mm:ss +00:00"}``.
  Tokens really expire after ``SandboxConfig.blikk_token_ttl`` seconds.
* Every other endpoint needs ``Authorization: Bearer <token>``; missing, unknown or expired →
  401 ``{"message": "Invalid token"}``.
* Rate limiting: a request that would be the fifth within any one second (a sliding window over
  arrival times) for one access token is answered 429 ``{"waitInSeconds": n}`` with
  ``Retry-After: n``. Token requests are limited the same way per app id. Refused requests do
  not count toward the window (so a paced client is not punished for one refusal), but every
  arrival counts toward the *measured* ``max_requests_in_any_second`` in :meth:`state`, so
  tests can prove a client's pacing.
* Time reports: ``GET /v1/Core/TimeReports`` (paged; ``filter.from``/``filter.to`` on the date,
  ``filter.userIds``, ``filter.projectId``, ``filter.internalProjectId``,
  ``filter.absenceProjectId``, ``filter.isAttested``; ``sortBy``/``sortOrder``), ``POST``, and
  ``GET``/``PUT``/``DELETE /v1/Core/TimeReports/{id}``. Missing required fields or ids that point
  to nothing → 400 ``{"message": "The request is invalid.", "modelState": {...}}``; so is a
  ``clockEnd`` at or before ``clockStart`` (both "hh:mm", 24-hour clock, on the report's one
  date: ``23:15``-``00:00`` is refused). As the doc says, an unknown report id is a 400 (not a
  404), and so is changing or deleting a report that is attested or invoiced. Create and update
  answer 200; the doc shows no response body for them ("200 OK"), so what comes with it is the
  fake's :attr:`BlikkFake.write_response`: ``"detail"`` (default: the ``timereport.detail``
  object, as other create endpoints answer) or ``"empty"`` (the bare 200 the doc shows).
* Registries, paged: ``/v1/Admin/Users``, ``/v1/Core/Projects``, ``/v1/Admin/InternalProjects``,
  ``/v1/Admin/AbsenceProjects``, ``/v1/Admin/Activities``, ``/v1/Admin/TimeCodes``,
  ``/v1/Admin/TimeArticles`` -- seeded with a few records.

Control routes (under ``/_sandbox/blikk``, neither counted nor faulted):

* ``POST /timereports/{id}/attest`` -- mark a report attested (sets ``attestedDate``).
* ``POST /timereports/{id}/invoice`` -- put a report on an invoice (body ``{"invoiceId": n}``,
  optional).
* ``POST /tokens/expire`` -- make every issued token expire now (a 401 on the next call).
* ``POST /registries/{name}`` -- add a record to a registry (``users``, ``projects``,
  ``internalprojects``, ``absenceprojects``, ``activities``, ``timecodes``, ``timearticles``);
  body: the record's fields (``id`` optional).
* ``PUT /write-response`` -- body ``{"write_response": "detail" | "empty"}``: what create and
  update answer with their 200 until the next reset.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from clockify_relay.sandbox.core import (
    FakeTarget,
    InvalidJSON,
    SandboxConfig,
    is_number,
    json_response,
    method_route,
    read_json,
)

WINDOW = 1.0  # seconds of the sliding rate-limit window
# What a create/update 200 carries (the doc shows none): the detail object, or nothing.
WRITE_RESPONSES = ("detail", "empty")
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_REQUIRED = (
    "date",
    "hours",
    "invoiceableHours",
    "userId",
    "activityId",
    "timeCodeId",
    "timeArticleId",
)
_SORTABLE = {
    "date",
    "userName",
    "hours",
    "invoiceableHours",
    "sentToAttestDate",
    "attestedDate",
    "createdDate",
    "updatedDate",
}

# Registry name (control route) → (API path, objectName of list items).
REGISTRIES: dict[str, tuple[str, str]] = {
    "users": ("/v1/Admin/Users", "user.list"),
    "projects": ("/v1/Core/Projects", "project.list"),
    "internalprojects": ("/v1/Admin/InternalProjects", "internalproject.list"),
    "absenceprojects": ("/v1/Admin/AbsenceProjects", "absenceproject.list"),
    "activities": ("/v1/Admin/Activities", "activity.list"),
    "timecodes": ("/v1/Admin/TimeCodes", "timecode.list"),
    "timearticles": ("/v1/Admin/TimeArticles", "timearticle.list"),
}


def _stamp(when: datetime | None = None) -> str:
    """Blikk's timestamp format: ``2022-07-01 05:43:12 +00:00``."""
    return (when or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S +00:00")


def _name_id(object_id: int, name: str, object_name: str = "generic.name_id") -> dict[str, Any]:
    return {"objectName": object_name, "id": object_id, "name": name}


def _seed() -> dict[str, dict[int, dict[str, Any]]]:
    created = "2022-06-21 04:43:12 +00:00"
    admin = _name_id(1, "John Doe")

    def user(uid: int, first: str, last: str) -> dict[str, Any]:
        return {
            "id": uid,
            "firstName": first,
            "lastName": last,
            "startDate": "2021-02-01",
            "endDate": None,
            "timeReportingProfile": _name_id(5, "Default profile"),
            "department": None,
            "license": "total",
            "permissions": ["administrator"],
            "createdBy": admin,
            "updatedBy": None,
            "createdDate": created,
            "updatedDate": None,
        }

    def project(pid: int, number: str, title: str, customer: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": pid,
            "orderNumber": number,
            "title": title,
            "status": {
                "objectName": "project.list.status",
                "id": 1,
                "name": "Ongoing",
                "isCompletedStatus": False,
            },
            "startDate": "2021-02-01",
            "endDate": None,
            "invoiceType": "Ongoing",
            "location": None,
            "projectManager": admin,
            "customer": customer,
            "projectCollection": None,
            "createdBy": admin,
            "updatedBy": None,
            "created": created,
            "updated": None,
        }

    def simple(rid: int, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": rid,
            "name": name,
            "isActive": True,
            **extra,
            "createdBy": admin,
            "updatedBy": None,
            "created": created,
            "updated": None,
        }

    return {
        "users": {
            u["id"]: u
            for u in (user(1, "John", "Doe"), user(2, "Jane", "Doe"), user(3, "Anna", "Lindqvist"))
        },
        "projects": {
            p["id"]: p
            for p in (
                project(1, "26", "Website relaunch", _name_id(87, "Nordlys AB")),
                project(2, "27", "Maintenance", _name_id(88, "Microsoft")),
            )
        },
        "internalprojects": {10: simple(10, "Internal", commentRequiredWhenTimeReporting=False)},
        "absenceprojects": {
            20: simple(
                20,
                "Vacation",
                commentRequiredWhenTimeReporting=False,
                salaryCodeForMonthlySalary="040",
                salaryCodeForHourlySalary="040",
                refersToSickness=False,
            )
        },
        "activities": {
            a["id"]: a
            for a in (
                simple(1, "Development", preferredTimeCode=None, preferredTimeArticle=None),
                simple(2, "Project management", preferredTimeCode=None, preferredTimeArticle=None),
                simple(3, "Design", preferredTimeCode=None, preferredTimeArticle=None),
            )
        },
        "timecodes": {
            c["id"]: c
            for c in (
                simple(1, "Normal", description="Normal time", isStandard=True),
                simple(2, "Overtime", description="Overtime", isStandard=False),
            )
        },
        "timearticles": {
            a["id"]: a
            for a in (
                simple(1, "Work hours", description="Hours worked"),
                simple(2, "Travel hours", description="Hours travelled"),
            )
        },
    }


def _registry_name(kind: str, record: Mapping[str, Any]) -> str:
    if kind == "users":
        return f"{record.get('firstName', '')} {record.get('lastName', '')}".strip()
    if kind == "projects":
        return str(record.get("title", ""))
    return str(record.get("name", ""))


def _invalid(model_state: dict[str, list[str]]) -> Response:
    return json_response(
        {"message": "The request is invalid.", "modelState": model_state}, status_code=400
    )


def _message(text: str, status: int = 400) -> Response:
    return json_response({"message": text}, status_code=status)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_date(value: Any) -> date | None:
    """Dates as Blikk accepts them: ``2021-11-10``, ``2021-11-10 00:00:00`` or ISO 8601."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


class BlikkFake(FakeTarget):
    """In-memory Blikk: tokens, a per-token sliding rate limit, time reports and registries."""

    name: ClassVar[str] = "blikk"

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self.clock: Callable[[], float] = time.monotonic
        self.reset()

    # -- state ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every report, token, counter and added registry record; reseed registries."""
        with self.lock:
            self.reports: dict[int, dict[str, Any]] = {}
            self.next_report_id = 1000
            self.tokens: dict[str, tuple[str, float]] = {}  # token → (app id, expiry, wall)
            self.registries = _seed()
            # Sliding windows: accepted arrivals (enforcement) and all arrivals (measurement).
            self.accepted: dict[str, deque[float]] = {}
            self.arrivals: dict[str, deque[float]] = {}
            self.requests_per_key: dict[str, int] = {}
            self.max_in_any_second = 0
            self.rejected_429 = 0
            self.write_response = "detail"

    def state(self) -> dict[str, Any]:
        """Reports in Blikk's field names, rate-limit counters and the measured peak rate."""
        with self.lock:
            return {
                "timereports": [self._render(r, detail=True) for r in self.reports.values()],
                "rejected_429": self.rejected_429,
                "requests_per_token": dict(self.requests_per_key),
                "max_requests_in_any_second": self.max_in_any_second,
                "tokens_issued": len(self.tokens),
                "write_response": self.write_response,
            }

    def set_write_response(self, mode: str) -> None:
        """Make create/update answer ``"detail"`` or ``"empty"`` (ValueError otherwise)."""
        if mode not in WRITE_RESPONSES:
            raise ValueError(f"write_response must be one of {list(WRITE_RESPONSES)}")
        with self.lock:
            self.write_response = mode

    # -- routes ---------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The documented endpoints this fake serves."""
        routes: list[BaseRoute] = [
            Route("/v1/Auth/Token", self._token, methods=["POST"]),
            method_route(
                "/v1/Core/TimeReports", {"GET": self._list_reports, "POST": self._create_report}
            ),
            method_route(
                "/v1/Core/TimeReports/{id:int}",
                {
                    "GET": self._get_report,
                    "PUT": self._update_report,
                    "DELETE": self._delete_report,
                },
            ),
        ]
        for kind, (path, object_name) in REGISTRIES.items():
            routes.append(Route(path, self._registry_handler(kind, object_name), methods=["GET"]))
        return routes

    def control_routes(self) -> list[BaseRoute]:
        """Test controls: attest / invoice a report, expire tokens, add registry records, choose
        what create/update answer."""
        return [
            Route("/timereports/{id:int}/attest", self._attest, methods=["POST"]),
            Route("/timereports/{id:int}/invoice", self._invoice, methods=["POST"]),
            Route("/tokens/expire", self._expire_tokens, methods=["POST"]),
            Route("/registries/{kind}", self._add_registry_record, methods=["POST"]),
            Route("/write-response", self._put_write_response, methods=["PUT"]),
        ]

    # -- rate limiting and auth -----------------------------------------------------------------

    def _admit(self, key: str) -> Response | None:
        """Record an arrival for ``key``; a 429 response when it is the fifth within a second."""
        now = self.clock()
        with self.lock:
            self.requests_per_key[key] = self.requests_per_key.get(key, 0) + 1
            arrivals = self.arrivals.setdefault(key, deque())
            arrivals.append(now)
            while arrivals and now - arrivals[0] >= WINDOW:
                arrivals.popleft()
            self.max_in_any_second = max(self.max_in_any_second, len(arrivals))
            accepted = self.accepted.setdefault(key, deque())
            while accepted and now - accepted[0] >= WINDOW:
                accepted.popleft()
            if len(accepted) >= self.config.blikk_rate_per_second:
                self.rejected_429 += 1
                # Whole seconds, as documented, until the oldest request leaves the window.
                wait = max(1, math.ceil(accepted[0] + WINDOW - now))
                return json_response(
                    {"waitInSeconds": wait}, status_code=429, headers={"Retry-After": str(wait)}
                )
            accepted.append(now)
            return None

    def _bearer(self, request: Request) -> Response | None:
        """None when the request carries a live token and is within the rate limit."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self.lock:
            entry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None or time.time() >= entry[1]:
            return _message("Invalid token", 401)
        # Counters are keyed by a digest so state() never shows a token.
        return self._admit("token:" + hashlib.sha256(token.strip().encode()).hexdigest()[:12])

    async def _token(self, request: Request) -> Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return _message("Authorization has been denied for this request.", 401)
        try:
            app_id, sep, secret = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return _message("Authorization has been denied for this request.", 401)
        refused = self._admit(f"app:{app_id}")
        if refused is not None:
            return refused
        if not sep or app_id != self.config.blikk_app_id or secret != self.config.blikk_app_secret:
            return _message("Invalid application id or secret.", 401)
        token = f"pk_{uuid.uuid4()}.pa_{uuid.uuid4()}"
        expires_at = time.time() + self.config.blikk_token_ttl
        with self.lock:
            self.tokens[token] = (app_id, expires_at)
        return json_response(
            {
                "objectName": "auth.token",
                "accessToken": token,
                "expires": _stamp(datetime.fromtimestamp(expires_at, UTC)),
            }
        )

    # -- paging ---------------------------------------------------------------------------------

    @staticmethod
    def _paging(request: Request) -> tuple[int, int] | Response:
        params = request.query_params
        errors: dict[str, list[str]] = {}
        page = size = 0
        raw_page = params.get("page")
        if raw_page is None:
            errors["page"] = ["The Page field is required."]
        elif not raw_page.isdigit() or int(raw_page) < 1:
            errors["page"] = ["The field Page must be greater than or equal to 1."]
        else:
            page = int(raw_page)
        raw_size = params.get("pageSize", str(DEFAULT_PAGE_SIZE))
        if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
            errors["pageSize"] = [f"The field PageSize must be between 1 and {MAX_PAGE_SIZE}."]
        else:
            size = int(raw_size)
        sort_order = params.get("sortOrder")
        if sort_order is not None and sort_order not in ("ascending", "descending"):
            errors["sortOrder"] = ["The field SortOrder must be ascending or descending."]
        return _invalid(errors) if errors else (page, size)

    @staticmethod
    def _page(items: list[dict[str, Any]], page: int, size: int) -> dict[str, Any]:
        chunk = items[(page - 1) * size : page * size]
        return {
            "objectName": "generic.pagedlist",
            "page": page,
            "pageSize": size,
            "itemCount": len(chunk),
            "totalItemCount": len(items),
            "totalPages": math.ceil(len(items) / size) if items else 0,
            "items": chunk,
        }

    def _registry_handler(self, kind: str, object_name: str) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            refused = self._bearer(request)
            if refused is not None:
                return refused
            paging = self._paging(request)
            if isinstance(paging, Response):
                return paging
            query = request.query_params.get("filter.query", "").lower()
            with self.lock:
                records = [
                    {"objectName": object_name, **copy.deepcopy(r)}
                    for _, r in sorted(self.registries[kind].items())
                    if query in _registry_name(kind, r).lower()
                ]
            return json_response(self._page(records, *paging))

        return handler

    # -- time reports ---------------------------------------------------------------------------

    def _render(self, report: Mapping[str, Any], *, detail: bool) -> dict[str, Any]:
        """A stored report as Blikk answers it (``timereport.detail`` or ``timereport.list``)."""
        regs = self.registries

        def ref(kind: str, rid: int | None) -> dict[str, Any] | None:
            if rid is None:
                return None
            record = regs[kind].get(rid)
            name = _registry_name(kind, record) if record else ""
            if kind == "projects":
                number = record.get("orderNumber") if record else None
                return {"objectName": "project.name_id", "id": rid, "name": name, "number": number}
            return _name_id(rid, name)

        project = regs["projects"].get(report["projectId"] or -1)
        out: dict[str, Any] = {
            "objectName": "timereport.detail" if detail else "timereport.list",
            "id": report["id"],
            "date": report["date"],
            "clockStart": report["clockStart"],
            "clockEnd": report["clockEnd"],
            "hours": report["hours"],
            "invoiceableHours": report["invoiceableHours"],
            "breakMinutes": report["breakMinutes"],
            "cost": None,
            "rate": None,
            "discount": None,
            "comment": report["comment"],
            "internalComment": report["internalComment"],
            "sentToAttestDate": report["sentToAttestDate"],
            "attestedDate": report["attestedDate"],
        }
        if detail:
            out["attestedByUser"] = _name_id(1, "John Doe") if report["attestedDate"] else None
        out.update(
            {
                "user": ref("users", report["userId"]),
                "contact": copy.deepcopy(project["customer"]) if project else None,
                "project": ref("projects", report["projectId"]),
                "internalProject": ref("internalprojects", report["internalProjectId"]),
                "absenceProject": ref("absenceprojects", report["absenceProjectId"]),
                "activity": ref("activities", report["activityId"]),
                "timeCode": ref("timecodes", report["timeCodeId"]),
                "timeArticle": ref("timearticles", report["timeArticleId"]),
                "costCenter": None,
                "invoiceId": report["invoiceId"],
            }
        )
        if detail:
            out.update(
                {
                    "bookingProject": None,
                    "task": _name_id(report["taskId"], f"Task {report['taskId']}")
                    if report["taskId"] is not None
                    else None,
                    "travelReport": None,
                    "allowanceReport": None,
                    "materials": [],
                    "equipments": [],
                    "additions": [],
                }
            )
        else:
            out.update({"travelReportId": None, "allowanceReportId": None})
        out.update({"createdDate": report["createdDate"], "updatedDate": report["updatedDate"]})
        return out

    def _validate(self, body: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The writable fields of a create/update body, and modelState errors (empty if valid)."""
        if not isinstance(body, dict):
            return {}, {"model": ["The request body must be a JSON object."]}
        errors: dict[str, list[str]] = {}
        for key in _REQUIRED:
            if body.get(key) is None:
                errors[key] = [f"The {key[0].upper()}{key[1:]} field is required."]
        day = _parse_date(body.get("date"))
        if body.get("date") is not None and day is None:
            errors["date"] = ["The value is not a valid date."]
        for key in ("hours", "invoiceableHours"):
            value = body.get(key)
            if value is not None and (not is_number(value) or value < 0 or value > 24):
                errors[key] = [f"The field {key} must be a number between 0 and 24."]
        for key in ("clockStart", "clockEnd"):
            value = body.get(key)
            if value is not None and not (isinstance(value, str) and _CLOCK.match(value)):
                errors[key] = [f'The field {key} must be formatted as "hh:mm".']
        # One report is one date: its end cannot come at or before its start ("hh:mm" has no
        # 24:00, so "00:00" is the start of that date, not the end of it).
        start, end = body.get("clockStart"), body.get("clockEnd")
        clocks_valid = not errors.keys() & {"clockStart", "clockEnd"}
        if start is not None and end is not None and clocks_valid and end <= start:
            errors["clockEnd"] = ["The field clockEnd must be later than clockStart."]
        refs = {
            "userId": "users",
            "projectId": "projects",
            "internalProjectId": "internalprojects",
            "absenceProjectId": "absenceprojects",
            "activityId": "activities",
            "timeCodeId": "timecodes",
            "timeArticleId": "timearticles",
        }
        with self.lock:
            for key, kind in refs.items():
                value = body.get(key)
                if value is None:
                    continue
                if not _is_int(value):
                    errors[key] = [f"The field {key} must be an integer."]
                elif value not in self.registries[kind]:
                    errors[key] = [f"There is no {kind[:-1]} with id {value}."]
        for key in ("breakMinutes", "taskId"):
            value = body.get(key)
            if value is not None and not _is_int(value):
                errors[key] = [f"The field {key} must be an integer."]
        for key in ("comment", "internalComment"):
            value = body.get(key)
            if value is not None and not isinstance(value, str):
                errors[key] = [f"The field {key} must be a string."]
        if errors:
            return {}, errors
        fields = {
            "date": day.isoformat() if day else None,
            **{
                key: body.get(key)
                for key in (
                    "clockStart",
                    "clockEnd",
                    "hours",
                    "invoiceableHours",
                    "breakMinutes",
                    "comment",
                    "internalComment",
                    *refs,
                    "taskId",
                )
            },
        }
        return fields, {}

    async def _create_report(self, request: Request) -> Response:
        refused = self._bearer(request)
        if refused is not None:
            return refused
        try:
            body = await read_json(request)
        except InvalidJSON:
            return _invalid({"model": ["A non-empty JSON request body is required."]})
        fields, errors = self._validate(body)
        if errors:
            return _invalid(errors)
        with self.lock:
            report_id = self.next_report_id
            self.next_report_id += 1
            report = {
                "id": report_id,
                **fields,
                "sentToAttestDate": None,
                "attestedDate": None,
                "invoiceId": None,
                "createdDate": _stamp(),
                "updatedDate": None,
            }
            self.reports[report_id] = report
            return self._written(report)

    def _written(self, report: Mapping[str, Any]) -> Response:
        """The 200 of a create or update, with or without the report (``write_response``)."""
        if self.write_response == "empty":
            return Response(status_code=200)
        return json_response(self._render(report, detail=True))

    def _not_found(self) -> Response:
        # The doc: 400 (not 404) when the report could not be found.
        return _message("The time report could not be found.")

    async def _get_report(self, request: Request) -> Response:
        refused = self._bearer(request)
        if refused is not None:
            return refused
        with self.lock:
            report = self.reports.get(request.path_params["id"])
            if report is None:
                return self._not_found()
            return json_response(self._render(report, detail=True))

    @staticmethod
    def _locked_reason(report: Mapping[str, Any]) -> str | None:
        if report["invoiceId"] is not None:
            return "The time report is invoiced and can not be changed."
        if report["attestedDate"] is not None:
            return "The time report is attested and can not be changed."
        return None

    async def _update_report(self, request: Request) -> Response:
        refused = self._bearer(request)
        if refused is not None:
            return refused
        try:
            body = await read_json(request)
        except InvalidJSON:
            return _invalid({"model": ["A non-empty JSON request body is required."]})
        with self.lock:
            report = self.reports.get(request.path_params["id"])
            if report is None:
                return self._not_found()
            reason = self._locked_reason(report)
            if reason:
                return _message(reason)
        fields, errors = self._validate(body)
        if errors:
            return _invalid(errors)
        with self.lock:
            report = self.reports.get(request.path_params["id"])
            if report is None:
                return self._not_found()
            report.update(fields, updatedDate=_stamp())
            return self._written(report)

    async def _delete_report(self, request: Request) -> Response:
        refused = self._bearer(request)
        if refused is not None:
            return refused
        with self.lock:
            report = self.reports.get(request.path_params["id"])
            if report is None:
                return self._not_found()
            reason = self._locked_reason(report)
            if reason:
                return _message(reason)
            del self.reports[report["id"]]
        return Response(status_code=200)

    async def _list_reports(self, request: Request) -> Response:
        refused = self._bearer(request)
        if refused is not None:
            return refused
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        params = request.query_params
        errors: dict[str, list[str]] = {}
        bounds: dict[str, date] = {}
        for key in ("filter.from", "filter.to"):
            if key in params:
                parsed = _parse_date(params[key])
                if parsed is None:
                    errors[key] = ["The value is not a valid datetime."]
                else:
                    bounds[key] = parsed
        user_ids: set[int] | None = None
        if params.get("filter.userIds"):
            parts = [p.strip() for p in params["filter.userIds"].split(",")]
            if all(p.isdigit() for p in parts):
                user_ids = {int(p) for p in parts}
            else:
                errors["filter.userIds"] = ["The value is not a valid integer array."]
        equal: dict[str, int] = {}
        for key in ("projectId", "internalProjectId", "absenceProjectId"):
            raw = params.get(f"filter.{key}")
            if raw is not None:
                if raw.isdigit():
                    equal[key] = int(raw)
                else:
                    errors[f"filter.{key}"] = ["The value is not a valid integer."]
        attested = params.get("filter.isAttested")
        if attested is not None and attested.lower() not in ("true", "false"):
            errors["filter.isAttested"] = ["The value is not a valid boolean."]
        sort_by = params.get("sortBy")
        if sort_by is not None and sort_by not in _SORTABLE:
            errors["sortBy"] = [f"Valid values are: {' '.join(sorted(_SORTABLE))}"]
        if errors:
            return _invalid(errors)
        with self.lock:
            selected = []
            for report in sorted(self.reports.values(), key=lambda r: r["id"]):
                day = date.fromisoformat(report["date"])
                if "filter.from" in bounds and day < bounds["filter.from"]:
                    continue
                if "filter.to" in bounds and day > bounds["filter.to"]:
                    continue
                if user_ids is not None and report["userId"] not in user_ids:
                    continue
                if any(report[k] != v for k, v in equal.items()):
                    continue
                if attested is not None and (
                    (report["attestedDate"] is not None) != (attested.lower() == "true")
                ):
                    continue
                selected.append(self._render(report, detail=False))
        if sort_by is not None:

            def sort_key(item: dict[str, Any]) -> tuple[bool, Any]:
                value = item["user"]["name"] if sort_by == "userName" else item.get(sort_by)
                return (value is None, value if value is not None else 0)

            selected.sort(key=sort_key, reverse=params.get("sortOrder") == "descending")
        elif params.get("sortOrder") == "descending":
            selected.reverse()
        return json_response(self._page(selected, *paging))

    # -- control --------------------------------------------------------------------------------

    async def _attest(self, request: Request) -> Response:
        with self.lock:
            report = self.reports.get(request.path_params["id"])
            if report is None:
                return _message("no such time report", 404)
            report["sentToAttestDate"] = report["sentToAttestDate"] or _stamp()
            report["attestedDate"] = _stamp()
            return json_response(self._render(report, detail=True))

    async def _invoice(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except InvalidJSON:
            body = {}
        invoice_id = body.get("invoiceId", 5001) if isinstance(body, dict) else 5001
        if not _is_int(invoice_id):
            return _message("invoiceId must be an integer")
        with self.lock:
            report = self.reports.get(request.path_params["id"])
            if report is None:
                return _message("no such time report", 404)
            report["invoiceId"] = invoice_id
            return json_response(self._render(report, detail=True))

    async def _expire_tokens(self, request: Request) -> Response:
        with self.lock:
            self.tokens = {t: (app, 0.0) for t, (app, _) in self.tokens.items()}
            return json_response({"expired": len(self.tokens)})

    def expire_tokens(self) -> None:
        """Make every issued token invalid from now on (for in-process tests)."""
        with self.lock:
            self.tokens = {t: (app, 0.0) for t, (app, _) in self.tokens.items()}

    async def _put_write_response(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except InvalidJSON as exc:
            return _message(str(exc))
        mode = body.get("write_response") if isinstance(body, dict) else None
        try:
            self.set_write_response(mode if isinstance(mode, str) else "")
        except ValueError as exc:
            return _message(str(exc))
        return json_response({"write_response": self.write_response})

    async def _add_registry_record(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in REGISTRIES:
            return _message(f"unknown registry; one of {sorted(REGISTRIES)}", 404)
        try:
            body = await read_json(request)
        except InvalidJSON as exc:
            return _message(str(exc))
        if not isinstance(body, dict):
            return _message("body must be a JSON object")
        with self.lock:
            registry = self.registries[kind]
            record_id = body.get("id")
            if record_id is None:
                record_id = max(registry, default=0) + 1
            if not _is_int(record_id):
                return _message("id must be an integer")
            record = {**body, "id": record_id}
            if kind != "users" and kind != "projects":
                # Registries whose list items carry isActive (users and projects do not).
                record.setdefault("isActive", True)
            registry[record_id] = record
        return json_response({"objectName": REGISTRIES[kind][1], **record}, status_code=201)
