"""Fake of the part of the Clockify REST API the relay reads, as Clockify's "Clockify API (v1)"
reference documents it.

API (base URL ``<sandbox>/clockify/api``), all with ``X-Api-Key``:

* ``GET /v1/user`` -- the key's user (the relay's credential probe);
* ``GET /v1/workspaces/{ws}`` -- workspace info; 403 for a workspace the key cannot see;
* ``GET /v1/workspaces/{ws}/time-entries/{id}`` -- a time entry; 404 when unknown (or in
  another workspace). It answers the documented REST shape ("Get a specific time entry on
  workspace"), whatever form the entry was seeded in: only the documented keys, ids instead of
  ``project``/``task``/``user``/``tags`` objects, ``timeInterval`` with ``start``, ``end`` and
  ``duration`` in seconds as a string (``"8000"``) -- and no ``timeZone``, which only webhooks
  carry. The ``hydrated`` variant is not documented and not modelled.

Errors look like Clockify's: ``{"message": ..., "code": ...}``; a missing or wrong key gets
401 ``{"message": "Full authentication is required to access this resource", "code": 1000}``.

Control (not counted, not faulted), under ``/_sandbox/clockify``:

* ``PUT /time-entries`` -- add or replace a time entry given in Clockify REST or webhook form
  (``id``, ``workspaceId`` and ``timeInterval.start`` required); its workspace becomes known;
* ``DELETE /time-entries/{id}``;
* ``PUT /workspaces/{ws}`` -- make a workspace known without entries.

Users, per-user listing and webhooks (the documented paths and shapes):

* ``GET /v1/workspaces/{ws}/users`` (``page``, ``page-size``, ``status``, ``email``, ``name``) --
  the workspace's users: those seeded, plus one made up for every ``userId`` of its entries;
* ``GET /v1/workspaces/{ws}/user/{userId}/time-entries`` (``start``, ``end``, ``page`` from 1,
  ``page-size`` default 50) -- the user's entries, newest start first, in REST form; ``start``
  and ``end`` bound the entry's start;
* ``GET|POST /v1/workspaces/{ws}/webhooks``, ``GET|DELETE .../webhooks/{id}``, ``PATCH
  .../webhooks/{id}/token`` (a new ``authToken``; the old one is invalid), ``POST
  .../webhooks/{id}/logs?page=0&size=50`` with ``{"from", "to", "status", "sortByNewest"}``.
  Creating a webhook enforces the documented limits ("Workspace admins can create up to 10
  webhooks each, with a total of 100 webhooks allowed per workspace"): the document names no
  status or body for it, so the fake answers 400 in Clockify's error shape with that sentence
  (``WEBHOOK_LIMIT_CODE``). Names must be 2 to 30 characters, as documented.

The fake enforces a request rate per key (``rate_per_second``, default 50 as documented for
add-on tokens) with 429 ``{"message": "Too many requests", "code": 429}``; ``state()`` counts
them under ``too_many_requests``.

More control routes: ``PUT /users`` (``{"workspaceId", "id", "name", "email", "status"}``),
``POST /webhook-logs`` (``{"webhookId", "requestBody", "statusCode", "responseBody",
"respondedAt"}``: record a delivery in a webhook's log, e.g. one the relay answered 503),
``POST /deliver`` (``{"event": "NEW_TIME_ENTRY", "body": {...}}``: send the body to every
enabled webhook of that event type with its token, as Clockify does, and log each answer),
``PUT /rate-limit`` (``{"rate_per_second": 10}``).
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from clockify_relay.clockify.models import KNOWN_EVENTS
from clockify_relay.sandbox.core import (
    FakeTarget,
    InvalidJSON,
    SandboxConfig,
    json_response,
    read_json,
)

BASE_PATH = "/api"
SANDBOX_USER_ID = "5a0ab5acb07987125438b60f"
# The documented webhook limits ("Webhooks" in the API reference).
WEBHOOKS_PER_ADMIN = 10
WEBHOOKS_PER_WORKSPACE = 100
WEBHOOK_LIMIT_MESSAGE = (
    "Workspace admins can create up to 10 webhooks each, with a total of 100 webhooks "
    "allowed per workspace"
)
WEBHOOK_LIMIT_CODE = 501
TRIGGER_SOURCE_TYPES = frozenset(
    {"PROJECT_ID", "USER_ID", "TAG_ID", "TASK_ID", "WORKSPACE_ID", "ASSIGNMENT_ID", "EXPENSE_ID"}
)
# The keys of the documented webhook response, in the doc's order.
WEBHOOK_KEYS = (
    "authToken",
    "enabled",
    "id",
    "name",
    "triggerSource",
    "triggerSourceType",
    "url",
    "userId",
    "webhookEvent",
    "workspaceId",
)
LOG_KEYS = ("id", "requestBody", "respondedAt", "responseBody", "statusCode", "webhookId")
USER_KEYS = (
    "activeWorkspace",
    "customFields",
    "defaultWorkspace",
    "email",
    "id",
    "memberships",
    "name",
    "profilePicture",
    "settings",
    "status",
)
_TOO_MANY = {"message": "Too many requests", "code": 429}

_AUTH_ERROR = {"message": "Full authentication is required to access this resource", "code": 1000}
# The keys of the documented time entry response, in the doc's order.
REST_KEYS = (
    "billable",
    "costRate",
    "customFieldValues",
    "description",
    "hourlyRate",
    "id",
    "isLocked",
    "kioskId",
    "projectId",
    "tagIds",
    "taskId",
    "timeInterval",
    "type",
    "userId",
    "workspaceId",
)


def _error(message: str, code: int, status: int) -> Response:
    return json_response({"message": message, "code": code}, status_code=status)


class ClockifyFake(FakeTarget):
    """In-memory Clockify time entries and workspaces behind the documented REST paths."""

    name = "clockify"
    base_path = BASE_PATH

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self._entries: dict[str, dict[str, Any]] = {}
        self._workspaces: set[str] = set()
        self._users: dict[str, dict[str, Any]] = {}  # (seeded) user id → user, with workspaceId
        self._webhooks: dict[str, dict[str, Any]] = {}
        self._logs: list[dict[str, Any]] = []
        self.rate_per_second = 50.0
        self._recent: deque[float] = deque()
        self._too_many = 0

    # -- FakeTarget -------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The read-only REST paths the relay uses."""
        return [
            Route(f"{BASE_PATH}/v1/user", self._user, methods=["GET"]),
            Route(f"{BASE_PATH}/v1/workspaces/{{ws}}", self._workspace, methods=["GET"]),
            Route(
                f"{BASE_PATH}/v1/workspaces/{{ws}}/time-entries/{{id}}",
                self._time_entry,
                methods=["GET"],
            ),
            Route(f"{BASE_PATH}/v1/workspaces/{{ws}}/users", self._list_users, methods=["GET"]),
            Route(
                f"{BASE_PATH}/v1/workspaces/{{ws}}/user/{{user}}/time-entries",
                self._user_entries,
                methods=["GET"],
            ),
            Route(
                f"{BASE_PATH}/v1/workspaces/{{ws}}/webhooks",
                self._webhooks_root,
                methods=["GET", "POST"],
            ),
            Route(
                f"{BASE_PATH}/v1/workspaces/{{ws}}/webhooks/{{id}}",
                self._webhook_one,
                methods=["GET", "DELETE"],
            ),
            Route(
                f"{BASE_PATH}/v1/workspaces/{{ws}}/webhooks/{{id}}/token",
                self._webhook_token,
                methods=["PATCH"],
            ),
            Route(
                f"{BASE_PATH}/v1/workspaces/{{ws}}/webhooks/{{id}}/logs",
                self._webhook_logs,
                methods=["POST"],
            ),
        ]

    def control_routes(self) -> list[BaseRoute]:
        """Seeding routes under ``/_sandbox/clockify``."""
        return [
            Route("/time-entries", self._put_entry, methods=["PUT"]),
            Route("/time-entries/{id}", self._delete_entry, methods=["DELETE"]),
            Route("/workspaces/{ws}", self._put_workspace, methods=["PUT"]),
            Route("/users", self._put_user, methods=["PUT"]),
            Route("/webhook-logs", self._post_log, methods=["POST"]),
            Route("/deliver", self._post_deliver, methods=["POST"]),
            Route("/rate-limit", self._put_rate, methods=["PUT"]),
        ]

    def state(self) -> dict[str, Any]:
        """``{"time_entries", "workspaces", "users", "webhooks", "webhook_logs",
        "too_many_requests"}``."""
        with self.lock:
            return {
                "time_entries": [dict(e) for e in self._entries.values()],
                "workspaces": sorted(self._workspaces),
                "users": [dict(u) for u in self._users.values()],
                "webhooks": [dict(w) for w in self._webhooks.values()],
                "webhook_logs": [dict(entry) for entry in self._logs],
                "too_many_requests": self._too_many,
            }

    def reset(self) -> None:
        """Forget every time entry, workspace, user, webhook and log; the rate back to 50/s."""
        with self.lock:
            self._entries.clear()
            self._workspaces.clear()
            self._users.clear()
            self._webhooks.clear()
            self._logs.clear()
            self.rate_per_second = 50.0
            self._recent.clear()
            self._too_many = 0

    # -- direct seeding (tests holding the app in-process) ----------------------------------

    def put_time_entry(self, entry: dict[str, Any]) -> None:
        """Add or replace a time entry (REST or webhook form); ValueError when malformed."""
        problem = _entry_problem(entry)
        if problem:
            raise ValueError(problem)
        with self.lock:
            self._entries[entry["id"]] = dict(entry)
            self._workspaces.add(entry["workspaceId"])

    def add_workspace(self, workspace_id: str) -> None:
        """Make a workspace known."""
        with self.lock:
            self._workspaces.add(workspace_id)

    def delete_time_entry(self, entry_id: str) -> bool:
        """Remove an entry (no webhook is sent); False when unknown."""
        with self.lock:
            return self._entries.pop(entry_id, None) is not None

    def put_user(self, workspace_id: str, user_id: str, **fields: Any) -> dict[str, Any]:
        """Add or replace a workspace user (``name``, ``email``, ``status``)."""
        user: dict[str, Any] = {
            "activeWorkspace": workspace_id,
            "customFields": [],
            "defaultWorkspace": workspace_id,
            "email": fields.get("email") or f"{user_id}@example.com",
            "id": user_id,
            "memberships": [],
            "name": fields.get("name") or f"User {user_id}",
            "profilePicture": None,
            "settings": {"timeZone": "UTC", "weekStart": "MONDAY"},
            "status": fields.get("status") or "ACTIVE",
        }
        with self.lock:
            self._users[user_id] = {**user, "workspaceId": workspace_id}
            self._workspaces.add(workspace_id)
        return user

    def add_webhook(
        self,
        workspace_id: str,
        event: str,
        url: str,
        *,
        name: str = "sandbox webhook",
        user_id: str = SANDBOX_USER_ID,
        enabled: bool = True,
    ) -> dict[str, Any]:
        """A webhook made outside the API (another admin's, a disabled one); no limits."""
        with self.lock:
            webhook = self._new_webhook(workspace_id, event, url, name, user_id)
            webhook["enabled"] = enabled
            return dict(webhook)

    def record_log(
        self,
        webhook_id: str,
        request_body: str,
        status_code: int,
        response_body: str = "",
        responded_at: str | None = None,
    ) -> dict[str, Any]:
        """Record one delivery in a webhook's log (as Clockify keeps it); KeyError if unknown."""
        with self.lock:
            if webhook_id not in self._webhooks:
                raise KeyError(webhook_id)
            entry = {
                "id": secrets.token_hex(12),
                "requestBody": request_body,
                "respondedAt": responded_at or _now_log_time(),
                "responseBody": response_body,
                "statusCode": status_code,
                "webhookId": webhook_id,
            }
            self._logs.append(entry)
            return dict(entry)

    def deliver(self, event: str, body: Mapping[str, Any], timeout: float = 10.0) -> list[int]:
        """Send ``body`` to every enabled webhook of ``event`` in its workspace, with the
        webhook's token as Clockify does, and log each answer; returns the status codes (0: no
        answer). Blocking: call it from a thread, not the server's loop."""
        raw = json_bytes(body)
        with self.lock:
            hooks = [
                dict(w)
                for w in self._webhooks.values()
                if w["webhookEvent"] == event
                and w["enabled"]
                and w["workspaceId"] == body.get("workspaceId")
            ]
        statuses = []
        for hook in hooks:
            try:
                answer = httpx.post(
                    hook["url"],
                    content=raw,
                    headers={
                        "Content-Type": "application/json",
                        "Clockify-Signature": hook["authToken"],
                        "Clockify-Webhook-Event-Type": event,
                    },
                    timeout=timeout,
                )
                status, text = answer.status_code, answer.text
            except httpx.HTTPError as exc:
                status, text = 0, type(exc).__name__
            self.record_log(hook["id"], raw.decode(), status, text)
            statuses.append(status)
        return statuses

    def _new_webhook(
        self, workspace_id: str, event: str, url: str, name: str, user_id: str
    ) -> dict[str, Any]:
        webhook: dict[str, Any] = {
            "authToken": _new_token(),
            "enabled": True,
            "id": secrets.token_hex(12),
            "name": name,
            "triggerSource": [workspace_id],
            "triggerSourceType": "WORKSPACE_ID",
            "url": url,
            "userId": user_id,
            "webhookEvent": event,
            "workspaceId": workspace_id,
        }
        self._webhooks[webhook["id"]] = webhook
        self._workspaces.add(workspace_id)
        return webhook

    # -- API handlers -----------------------------------------------------------------------

    def _unauthorized(self, request: Request) -> Response | None:
        if request.headers.get("x-api-key") != self.config.clockify_api_key:
            return json_response(_AUTH_ERROR, status_code=401)
        now = time.monotonic()
        with self.lock:
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.rate_per_second:
                self._too_many += 1
                return json_response(_TOO_MANY, status_code=429)
            self._recent.append(now)
        return None

    def _known_workspace(self, ws: str) -> Response | None:
        with self.lock:
            known = ws in self._workspaces
        return None if known else _error("Access Denied", 403, 403)

    async def _list_users(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        ws = request.path_params["ws"]
        if (denied := self._known_workspace(ws)) is not None:
            return denied
        try:
            page, size = _paging(request, "page", 1, "page-size")
        except ValueError as exc:
            return _error(str(exc), 400, 400)
        query = request.query_params
        status = query.get("status", "ALL").upper()
        with self.lock:
            users = {
                u["id"]: {k: u[k] for k in USER_KEYS}
                for u in self._users.values()
                if u["workspaceId"] == ws
            }
            for entry in self._entries.values():
                uid = _id_of(entry, "userId", "user")
                if entry["workspaceId"] == ws and isinstance(uid, str) and uid not in users:
                    users[uid] = {
                        "activeWorkspace": ws,
                        "customFields": [],
                        "defaultWorkspace": ws,
                        "email": f"{uid}@example.com",
                        "id": uid,
                        "memberships": [],
                        "name": f"User {uid}",
                        "profilePicture": None,
                        "settings": {"timeZone": "UTC", "weekStart": "MONDAY"},
                        "status": "ACTIVE",
                    }
        listed = [
            u
            for u in users.values()
            if (status == "ALL" or u["status"] == status)
            and query.get("email", "").lower() in u["email"].lower()
            and query.get("name", "").lower() in u["name"].lower()
        ]
        listed.sort(key=lambda u: str(u["email"]))  # the documented default sort: EMAIL
        return json_response(listed[(page - 1) * size : page * size])

    async def _user_entries(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        ws, user = request.path_params["ws"], request.path_params["user"]
        if (denied := self._known_workspace(ws)) is not None:
            return denied
        query = request.query_params
        try:
            page, size = _paging(request, "page", 1, "page-size")
            start = _bound(query.get("start"), "start")
            end = _bound(query.get("end"), "end")
        except ValueError as exc:
            return _error(str(exc), 400, 400)
        with self.lock:
            entries = [
                (started, rest_form(e))
                for e in self._entries.values()
                if e["workspaceId"] == ws
                and _id_of(e, "userId", "user") == user
                and (started := _instant(e["timeInterval"]["start"])) is not None
                and (start is None or started >= start)
                and (end is None or started <= end)
            ]
        entries.sort(key=lambda pair: pair[0], reverse=True)
        return json_response([e for _, e in entries[(page - 1) * size : page * size]])

    async def _webhooks_root(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        ws = request.path_params["ws"]
        if (denied := self._known_workspace(ws)) is not None:
            return denied
        if request.method == "GET":
            with self.lock:
                hooks = [
                    _webhook_form(w) for w in self._webhooks.values() if w["workspaceId"] == ws
                ]
            kind = request.query_params.get("type")
            if kind not in (None, "USER_CREATED"):
                hooks = []  # the fake holds user-created webhooks only
            return json_response({"webhooks": hooks, "workspaceWebhookCount": len(hooks)})
        try:
            spec = await read_json(request)
        except InvalidJSON as exc:
            return _error(str(exc), 400, 400)
        problem = _webhook_problem(spec)
        if problem:
            return _error(problem, 400, 400)
        with self.lock:
            in_ws = [w for w in self._webhooks.values() if w["workspaceId"] == ws]
            mine = [w for w in in_ws if w["userId"] == SANDBOX_USER_ID]
            if len(mine) >= WEBHOOKS_PER_ADMIN or len(in_ws) >= WEBHOOKS_PER_WORKSPACE:
                return _error(WEBHOOK_LIMIT_MESSAGE, WEBHOOK_LIMIT_CODE, 400)
            webhook = self._new_webhook(
                ws, spec["webhookEvent"], spec["url"], spec.get("name") or "", SANDBOX_USER_ID
            )
            webhook["triggerSource"] = list(spec["triggerSource"])
            webhook["triggerSourceType"] = spec["triggerSourceType"]
            return json_response(_webhook_form(webhook), status_code=201)

    def _find_webhook(self, request: Request) -> dict[str, Any] | Response:
        ws, hook_id = request.path_params["ws"], request.path_params["id"]
        webhook = self._webhooks.get(hook_id)
        if webhook is None or webhook["workspaceId"] != ws:
            return _error(f"Webhook with id {hook_id} doesn't exist", 501, 404)
        return webhook

    async def _webhook_one(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        with self.lock:
            found = self._find_webhook(request)
            if isinstance(found, Response):
                return found
            if request.method == "DELETE":
                del self._webhooks[found["id"]]
                return Response(status_code=200)
            return json_response(_webhook_form(found))

    async def _webhook_token(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        with self.lock:
            found = self._find_webhook(request)
            if isinstance(found, Response):
                return found
            found["authToken"] = _new_token()  # the previous one is invalid from now on
            return json_response(_webhook_form(found))

    async def _webhook_logs(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            page, size = _paging(request, "page", 0, "size")
            spec = await read_json(request)
            if not isinstance(spec, dict):
                raise ValueError("body must be a JSON object")
            since = _bound(spec.get("from"), "from")
            until = _bound(spec.get("to"), "to")
        except (ValueError, InvalidJSON) as exc:
            return _error(str(exc), 400, 400)
        status = str(spec.get("status") or "ALL").upper()
        if status not in ("ALL", "SUCCEEDED", "FAILED"):
            return _error(f"status must be ALL, SUCCEEDED or FAILED, not {status}", 400, 400)
        with self.lock:
            found = self._find_webhook(request)
            if isinstance(found, Response):
                return found
            logs = [dict(e) for e in self._logs if e["webhookId"] == found["id"]]
        picked = []
        for entry in logs:
            at = _instant(entry["respondedAt"])
            ok = 200 <= int(entry["statusCode"]) < 300
            if (status == "SUCCEEDED" and not ok) or (status == "FAILED" and ok):
                continue
            if at is not None and ((since and at < since) or (until and at > until)):
                continue
            picked.append(entry)
        if spec.get("sortByNewest"):
            picked.reverse()
        return json_response(picked[page * size : (page + 1) * size])

    async def _user(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        with self.lock:
            default_ws = min(self._workspaces) if self._workspaces else None
        return json_response(
            {
                "activeWorkspace": default_ws,
                "customFields": [],
                "defaultWorkspace": default_ws,
                "email": "sandbox@example.com",
                "id": SANDBOX_USER_ID,
                "memberships": [],
                "name": "Sandbox User",
                "profilePicture": None,
                "settings": {"timeZone": "UTC", "weekStart": "MONDAY"},
                "status": "ACTIVE",
            }
        )

    async def _workspace(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        ws = request.path_params["ws"]
        with self.lock:
            known = ws in self._workspaces
        if not known:
            return _error("Access Denied", 403, 403)
        return json_response(
            {
                "id": ws,
                "name": f"Sandbox workspace {ws}",
                "memberships": [],
                "workspaceSettings": {},
            }
        )

    async def _time_entry(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        ws, entry_id = request.path_params["ws"], request.path_params["id"]
        with self.lock:
            entry = self._entries.get(entry_id)
            if entry is None or entry.get("workspaceId") != ws:
                return _error(f"TimeEntry with id {entry_id} doesn't exist", 501, 404)
            return json_response(rest_form(entry))

    # -- control handlers -------------------------------------------------------------------

    async def _put_entry(self, request: Request) -> Response:
        try:
            entry = await read_json(request)
        except InvalidJSON as exc:
            return json_response({"error": str(exc)}, status_code=400)
        try:
            self.put_time_entry(entry)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status_code=400)
        return json_response(entry)

    async def _delete_entry(self, request: Request) -> Response:
        with self.lock:
            removed = self._entries.pop(request.path_params["id"], None)
        if removed is None:
            return json_response({"error": "no such time entry"}, status_code=404)
        return json_response({"deleted": removed["id"]})

    async def _put_workspace(self, request: Request) -> Response:
        ws = request.path_params["ws"]
        self.add_workspace(ws)
        return json_response({"workspace": ws})

    async def _put_user(self, request: Request) -> Response:
        try:
            spec = await read_json(request)
        except InvalidJSON as exc:
            return json_response({"error": str(exc)}, status_code=400)
        if not isinstance(spec, dict) or not all(
            isinstance(spec.get(k), str) and spec[k] for k in ("workspaceId", "id")
        ):
            return json_response({"error": "'workspaceId' and 'id' are required"}, status_code=400)
        fields = {k: spec[k] for k in ("name", "email", "status") if isinstance(spec.get(k), str)}
        return json_response(self.put_user(spec["workspaceId"], spec["id"], **fields))

    async def _post_log(self, request: Request) -> Response:
        try:
            spec = await read_json(request)
            if not isinstance(spec, dict):
                raise InvalidJSON("body must be a JSON object")
            body = spec["requestBody"]
            entry = self.record_log(
                str(spec["webhookId"]),
                body if isinstance(body, str) else json_bytes(body).decode(),
                int(spec["statusCode"]),
                str(spec.get("responseBody") or ""),
                spec.get("respondedAt"),
            )
        except (InvalidJSON, KeyError, TypeError, ValueError) as exc:
            return json_response({"error": f"bad log entry: {exc}"}, status_code=400)
        return json_response(entry, status_code=201)

    async def _post_deliver(self, request: Request) -> Response:
        try:
            spec = await read_json(request)
        except InvalidJSON as exc:
            return json_response({"error": str(exc)}, status_code=400)
        if not isinstance(spec, dict) or not isinstance(spec.get("body"), dict):
            return json_response(
                {"error": "'event' and an object 'body' required"}, status_code=400
            )
        statuses = await run_in_threadpool(self.deliver, str(spec.get("event")), spec["body"])
        return json_response({"statuses": statuses})

    async def _put_rate(self, request: Request) -> Response:
        try:
            spec = await read_json(request)
            rate = float(spec["rate_per_second"])
        except (InvalidJSON, KeyError, TypeError, ValueError):
            return json_response(
                {"error": "'rate_per_second' (a number) required"}, status_code=400
            )
        with self.lock:
            self.rate_per_second = rate
        return json_response({"rate_per_second": rate})


def json_bytes(value: Any) -> bytes:
    """Compact JSON, as Clockify sends it."""
    return orjson.dumps(value)


def _new_token() -> str:
    # Shaped like Clockify's (a JWT-looking string); opaque to everyone but the fake.
    return "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48)


def _now_log_time() -> str:
    # The documented form: 2024-03-04T12:02:28.125+00:00.
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _webhook_form(webhook: Mapping[str, Any]) -> dict[str, Any]:
    return {key: webhook.get(key) for key in WEBHOOK_KEYS}


def _webhook_problem(spec: Any) -> str | None:
    if not isinstance(spec, dict):
        return "body must be a JSON object"
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not 2 <= len(name) <= 30):
        return "name must be 2 to 30 characters"
    if not isinstance(spec.get("url"), str) or not spec["url"]:
        return "url is required"
    if spec.get("webhookEvent") not in KNOWN_EVENTS:
        return "webhookEvent is required and must be a known event type"
    if spec.get("triggerSourceType") not in TRIGGER_SOURCE_TYPES:
        return "triggerSourceType is required"
    sources = spec.get("triggerSource")
    if not isinstance(sources, list) or not all(isinstance(x, str) for x in sources):
        return "triggerSource must be a list of strings"
    return None


def _paging(request: Request, page_key: str, first: int, size_key: str) -> tuple[int, int]:
    query = request.query_params
    try:
        page = int(query.get(page_key, first))
        size = int(query.get(size_key, 50))
    except ValueError:
        raise ValueError(f"{page_key} and {size_key} must be integers") from None
    if page < first or size < 1:
        raise ValueError(f"{page_key} must be at least {first}, {size_key} at least 1")
    return page, size


def _bound(value: Any, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    moment = _instant(value)
    if moment is None:
        raise ValueError(f"{name} must be in yyyy-MM-ddThh:mm:ssZ format")
    return moment


def _id_of(entry: Mapping[str, Any], key: str, obj: str) -> Any:
    """``entry[key]``, else the id of the webhook form's ``entry[obj]`` object, else None."""
    if entry.get(key) is not None:
        return entry[key]
    nested = entry.get(obj)
    return nested.get("id") if isinstance(nested, Mapping) else None


def _instant(value: Any) -> datetime | None:
    """A timestamp with offset (``2024-01-01T08:00:00Z``), else None."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _seconds(start: Any, end: Any) -> str | None:
    """The documented duration: whole seconds from start to end as a string; None if running."""
    begin, finish = _instant(start), _instant(end)
    if begin is None or finish is None:
        return None
    return str(int((finish - begin).total_seconds()))


def rest_form(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A stored entry as "Get a specific time entry on workspace" documents it."""
    tag_ids = entry.get("tagIds")
    if tag_ids is None and isinstance(entry.get("tags"), list):
        tag_ids = [t["id"] for t in entry["tags"] if isinstance(t, Mapping) and "id" in t]
    interval = entry["timeInterval"]
    derived = {
        "projectId": _id_of(entry, "projectId", "project"),
        "taskId": _id_of(entry, "taskId", "task"),
        "userId": _id_of(entry, "userId", "user"),
        "tagIds": tag_ids if tag_ids is not None else [],
        # No timeZone (nor the webhook's offsets and zoned times): the REST entry has none.
        "timeInterval": {
            "duration": _seconds(interval.get("start"), interval.get("end")),
            "end": interval.get("end"),
            "start": interval["start"],
        },
    }
    return {key: derived[key] if key in derived else entry.get(key) for key in REST_KEYS}


def _entry_problem(entry: Any) -> str | None:
    """Why ``entry`` cannot be stored as a Clockify REST time entry, or None."""
    if not isinstance(entry, dict):
        return "time entry must be a JSON object"
    for key in ("id", "workspaceId"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            return f"'{key}' must be a non-empty string"
    interval = entry.get("timeInterval")
    if not isinstance(interval, dict) or not isinstance(interval.get("start"), str):
        return "'timeInterval.start' is required (Clockify REST form)"
    for key in ("start", "end"):
        value = interval.get(key)
        if (value is not None or key == "start") and _instant(value) is None:
            return f"'timeInterval.{key}' must be a UTC timestamp like 2024-01-01T08:00:00Z"
    return None
