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
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from clockify_relay.sandbox.core import (
    FakeTarget,
    InvalidJSON,
    SandboxConfig,
    json_response,
    read_json,
)

BASE_PATH = "/api"
SANDBOX_USER_ID = "5a0ab5acb07987125438b60f"

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
        ]

    def control_routes(self) -> list[BaseRoute]:
        """Seeding routes under ``/_sandbox/clockify``."""
        return [
            Route("/time-entries", self._put_entry, methods=["PUT"]),
            Route("/time-entries/{id}", self._delete_entry, methods=["DELETE"]),
            Route("/workspaces/{ws}", self._put_workspace, methods=["PUT"]),
        ]

    def state(self) -> dict[str, Any]:
        """``{"time_entries": [...], "workspaces": [...]}``."""
        with self.lock:
            return {
                "time_entries": [dict(e) for e in self._entries.values()],
                "workspaces": sorted(self._workspaces),
            }

    def reset(self) -> None:
        """Forget every time entry and workspace."""
        with self.lock:
            self._entries.clear()
            self._workspaces.clear()

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

    # -- API handlers -----------------------------------------------------------------------

    def _unauthorized(self, request: Request) -> Response | None:
        if request.headers.get("x-api-key") != self.config.clockify_api_key:
            return json_response(_AUTH_ERROR, status_code=401)
        return None

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
