"""The admin HTTP API: the ``dlq`` and ``events`` operations over HTTP, plus the OpenAPI document.

Every ``/admin`` operation needs ``Authorization: Bearer <JWT>``: HS256 only, signed with
``RELAY_ADMIN_JWT_SECRET``, ``exp`` required (``clockify-relay admin-token`` mints one). Without
a secret the API is off and answers 503 — it fails closed. ``GET /admin/openapi.json`` is public:
it describes the endpoints and holds nothing secret.

Every operation only reads or writes Redis (admin/service.py): a replay is queued for the
workers and answered 202 with a URL to poll, a pause is a flag the workers read. The API holds
no target credential and never calls a target. The Redis calls are blocking, so they run in
Starlette's thread pool.

Each operation is declared once in :data:`OPERATIONS` — path, method, handler, and what the
OpenAPI document says about it — and both the routes and the document are built from that list.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope

from clockify_relay.admin import service, tokens
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.receiver.http import (
    BodyTooLarge,
    error,
    http_error,
    json_response,
    read_body,
)
from clockify_relay.settings import Settings

log = logging.getLogger("clockify_relay.admin")

MAX_IDS = 1000
# RFC 7518 §3.2: an HS256 key should have at least as many bits as the hash (256).
MIN_SECRET_BYTES = 32
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="clockify-relay admin"'}
Handler = Callable[["AdminApi", Request], Awaitable[Response]]


def guarded(handler: Handler) -> Handler:
    """Check the bearer token first, and map the operations' errors to HTTP answers."""

    @functools.wraps(handler)
    async def endpoint(self: AdminApi, request: Request) -> Response:
        denied = self.authorize(request)
        if denied is not None:
            return denied
        request.state.admin_subject = request.scope.get("admin_subject", "?")
        try:
            return await handler(self, request)
        except service.OpsError as exc:
            return error(400, str(exc))
        except service.NotFound as exc:
            return error(404, str(exc))
        except BodyTooLarge:
            return error(413, f"body is larger than {self.settings.max_body_bytes} bytes")
        except (RedisError, OSError) as exc:
            # The class name only: a Redis error's text may carry the connection URL.
            log.warning(
                "admin %s %s: Redis unavailable (%s)",
                request.method,
                request.url.path,
                type(exc).__name__,
            )
            return error(503, "redis unavailable, retry later", {"Retry-After": "5"})

    return endpoint


def _flag(value: Any, name: str) -> bool:
    """A boolean from a query parameter or a JSON body field; anything odd is refused."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "1", "yes"}:
        return True
    if isinstance(value, str) and value.lower() in {"false", "0", "no", ""}:
        return False
    raise service.OpsError(f"{name} must be true or false")


def _text(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise service.OpsError(f"{name} must be a string")


def _filter_from(source: Mapping[str, Any]) -> service.LetterFilter:
    return service.LetterFilter.parse(
        _text(source.get("target"), "target"),
        _text(source.get("event_type"), "event_type"),
        _text(source.get("since"), "since"),
        _text(source.get("until"), "until"),
    )


def _selection(body: Mapping[str, Any]) -> tuple[list[str] | None, service.LetterFilter | None]:
    """``{"ids": [...]}`` or ``{"all": true, <filters>}`` — never an implicit "everything"."""
    ids = body.get("ids")
    every = _flag(body.get("all"), "all")
    if ids is not None:
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise service.OpsError("ids must be a non-empty list of dead letter ids")
        if len(ids) > MAX_IDS:
            raise service.OpsError(f"at most {MAX_IDS} ids per request")
        if every:
            raise service.OpsError("give either ids or all, not both")
        if any(body.get(k) is not None for k in ("target", "event_type", "since", "until")):
            raise service.OpsError("filters go with all: true, not with ids")
        return ids, None
    if not every:
        raise service.OpsError('give "ids": [...] or "all": true (with optional filters)')
    return None, _filter_from(body)


class AdminApi:
    """The admin endpoints and what they share: settings, a lazily built runtime, locks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runtime: Runtime | None = None
        self._runtime_lock = threading.Lock()
        secret = settings.admin_jwt_secret
        if not secret:
            log.info("admin API disabled: RELAY_ADMIN_JWT_SECRET is not set")
        elif len(secret.reveal().encode()) < MIN_SECRET_BYTES:
            log.warning(
                "RELAY_ADMIN_JWT_SECRET is shorter than %d bytes; use a long random "
                "secret (e.g. `openssl rand -hex 32`)",
                MIN_SECRET_BYTES,
            )

    def runtime(self) -> Runtime:
        """The runtime built from the app's settings (not the environment), on first use."""
        with self._runtime_lock:
            if self._runtime is None:
                self._runtime = Runtime(self.settings)
            return self._runtime

    def authorize(self, request: Request) -> Response | None:
        """None when the request carries a valid admin token, else the answer to send."""
        secret = self.settings.admin_jwt_secret
        if not secret:
            return error(503, "admin API disabled: RELAY_ADMIN_JWT_SECRET is not set")
        header = request.headers.get("authorization", "")
        if not header:
            return error(401, "missing bearer token", UNAUTHORIZED_HEADERS)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error(401, "Authorization must be 'Bearer <token>'", UNAUTHORIZED_HEADERS)
        try:
            claims = tokens.verify_admin_token(secret.reveal(), token.strip())
        except tokens.TokenError as exc:
            log.info("admin %s %s refused: %s", request.method, request.url.path, exc)
            return error(401, str(exc), UNAUTHORIZED_HEADERS)
        # Audit trail: who did what (the subject is a name, never the token).
        subject = str(claims.get("sub", "?"))
        request.scope["admin_subject"] = subject
        log.info(
            "admin %s %s by %s",
            request.method,
            request.url.path,
            subject,
            extra={"admin_subject": subject, "method": request.method, "path": request.url.path},
        )
        return None

    async def _json_body(self, request: Request, optional: bool = False) -> dict[str, Any]:
        raw = await read_body(request, self.settings.max_body_bytes)
        if optional and not raw.strip():
            return {}
        try:
            body = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            raise service.OpsError("body is not valid JSON") from None
        if not isinstance(body, dict):
            raise service.OpsError("body must be a JSON object")
        return body

    @guarded
    async def list_letters(self, request: Request) -> Response:
        """GET /admin/dlq?target=&event_type=&since=&until="""
        flt = _filter_from(request.query_params)
        letters = await run_in_threadpool(service.list_letters, self.runtime(), flt)
        return json_response(
            200,
            {"count": len(letters), "dead_letters": [service.letter_summary(x) for x in letters]},
        )

    @guarded
    async def show_letter(self, request: Request) -> Response:
        """GET /admin/dlq/{id}"""
        letter = await run_in_threadpool(
            service.get_letter, self.runtime(), request.path_params["letter_id"]
        )
        return json_response(200, service.letter_detail(letter))

    @guarded
    async def replay_letter(self, request: Request) -> Response:
        """POST /admin/dlq/{id}/replay?force=true&dry_run=true"""
        letter_id = request.path_params["letter_id"]
        force = _flag(request.query_params.get("force"), "force")
        dry_run = _flag(request.query_params.get("dry_run"), "dry_run")
        return await self._replay(request, [letter_id], None, force, dry_run, single=True)

    @guarded
    async def replay_many(self, request: Request) -> Response:
        """POST /admin/dlq/replay with {"ids": [...]} or {"all": true, filters…}"""
        body = await self._json_body(request)
        ids, flt = _selection(body)
        force = _flag(body.get("force"), "force")
        dry_run = _flag(body.get("dry_run"), "dry_run")
        return await self._replay(request, ids, flt, force, dry_run)

    async def _replay(
        self,
        request: Request,
        ids: list[str] | None,
        flt: service.LetterFilter | None,
        force: bool,
        dry_run: bool,
        single: bool = False,
    ) -> Response:
        """Queue the replays for the workers; 202 with where to poll each one."""
        by = f"api:{request.state.admin_subject}"

        def work() -> tuple[list[service.ReplayResult], list[str]]:
            rt = self.runtime()
            letters, missing = service.select_letters(rt, ids, flt, force=force)
            if single and missing:
                raise service.NotFound("dead letter", missing[0])
            return service.replay_many(rt, letters, force=force, dry_run=dry_run, by=by), missing

        results, missing = await run_in_threadpool(work)
        results += service.missing_results(missing)
        body = {
            "dry_run": dry_run,
            "results": [
                {**r.to_json(), "poll": f"/admin/replays/{r.id}" if r.message_id else None}
                for r in results
            ],
            "queued": sum(r.message_id is not None for r in results),
            "missing": len(missing),
        }
        return json_response(200 if dry_run else 202, body)

    @guarded
    async def replay_state(self, request: Request) -> Response:
        """GET /admin/replays/{id}: where the last replay of a dead letter stands."""
        letter_id = request.path_params["letter_id"]

        def work() -> dict[str, Any]:
            rt = self.runtime()
            state = rt.control.replay_states([letter_id])[letter_id]
            if state is None:
                raise service.NotFound("replay of dead letter", letter_id)
            return {
                **state,
                "at": service.iso(state.get("at")),
                "in_dlq": bool(rt.dlq.get(letter_id)),
            }

        return json_response(200, await run_in_threadpool(work))

    @guarded
    async def delete_letter(self, request: Request) -> Response:
        """DELETE /admin/dlq/{id}"""
        letter_id = request.path_params["letter_id"]
        removed = await run_in_threadpool(service.purge, self.runtime(), [letter_id])
        if not removed:
            raise service.NotFound("dead letter", letter_id)
        return json_response(200, {"removed": removed, "id": letter_id})

    @guarded
    async def purge(self, request: Request) -> Response:
        """POST /admin/dlq/purge with {"ids": [...]} or {"all": true, filters…}"""
        body = await self._json_body(request)
        ids, flt = _selection(body)

        def work() -> dict[str, Any]:
            rt = self.runtime()
            letters, missing = service.select_letters(rt, ids, flt)
            removed = service.purge(rt, [letter.id for letter in letters])
            return {"removed": removed, "missing": missing}

        return json_response(200, await run_in_threadpool(work))

    @guarded
    async def show_event(self, request: Request) -> Response:
        """GET /admin/events/{event_id}"""
        view = await run_in_threadpool(
            service.event_view, self.runtime(), request.path_params["event_id"]
        )
        return json_response(200, view.to_json())

    @guarded
    async def list_events(self, request: Request) -> Response:
        """GET /admin/events?since=1h&until=&entry=&target=&outcome=&limit=50"""
        query = request.query_params
        since = service.parse_when(query.get("since") or "1h")
        until = service.parse_when(query["until"]) if query.get("until") else None
        try:
            limit = int(query.get("limit") or 50)
        except ValueError:
            raise service.OpsError("limit must be a whole number") from None
        rows = await run_in_threadpool(
            functools.partial(
                service.list_events,
                self.runtime(),
                since=since,
                until=until,
                entry=query.get("entry") or None,
                target=query.get("target") or None,
                outcome=query.get("outcome") or None,
                limit=min(limit, 10_000),
            )
        )
        return json_response(200, {"count": len(rows), "events": rows})

    @guarded
    async def list_targets(self, request: Request) -> Response:
        """GET /admin/targets"""
        rows = await run_in_threadpool(service.targets_overview, self.runtime())
        return json_response(200, {"targets": rows})

    @guarded
    async def pause_target(self, request: Request) -> Response:
        """POST /admin/targets/{name}/pause with an optional {"reason": "..."}"""
        body = await self._json_body(request, optional=True)
        reason = _text(body.get("reason"), "reason") or ""
        by = f"api:{request.state.admin_subject}"
        result = await run_in_threadpool(
            service.pause_target, self.runtime(), request.path_params["name"], by, reason
        )
        return json_response(200, result)

    @guarded
    async def resume_target(self, request: Request) -> Response:
        """POST /admin/targets/{name}/resume"""
        by = f"api:{request.state.admin_subject}"
        result = await run_in_threadpool(
            service.resume_target, self.runtime(), request.path_params["name"], by
        )
        return json_response(200, result)

    async def openapi(self, request: Request) -> Response:
        """GET /admin/openapi.json (public: it describes, it does not reveal)."""
        return Response(_document(), 200, media_type="application/json")

    def routes(self) -> list[BaseRoute]:
        """The routes under /admin, built from :data:`OPERATIONS` (one route per path)."""
        by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
        for op in OPERATIONS:
            by_path.setdefault(op.path, {})[op.method] = getattr(self, op.handler)
        return [Mount("/admin", routes=[_route(p, **h) for p, h in by_path.items()])]


class _PathOwningRoute(Route):
    """A route that owns its path: a method it does not serve is answered 405 here, never
    handed on to a later route whose pattern matches too (Starlette would serve ``GET
    /admin/dlq/replay`` as the dead letter "replay")."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        return (Match.FULL if match == Match.PARTIAL else match), child_scope


def _route(path: str, **handlers: Callable[[Request], Awaitable[Response]]) -> Route:
    """One route serving several methods of one path, each with its own handler.

    Starlette answers 405 (and OPTIONS) with the methods of the first route whose path matches,
    so a path split over several routes would advertise only some of what it serves.
    """
    by_method = {method.upper(): handler for method, handler in handlers.items()}

    async def endpoint(request: Request) -> Response:
        # Starlette only lets the methods below through; HEAD comes with GET.
        method = "GET" if request.method == "HEAD" else request.method
        return await by_method[method](request)

    return _PathOwningRoute(path, endpoint, methods=list(by_method))


def admin_routes(settings: Settings) -> list[BaseRoute]:
    """The admin API routes for ``create_app`` (mounted under /admin)."""
    return AdminApi(settings).routes()


def admin_only_app(settings: Settings) -> Starlette:
    """The admin API on its own (``serve --admin-port``), with a /healthz for its probes."""

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    return Starlette(
        routes=[Route("/healthz", healthz, methods=["GET"]), *admin_routes(settings)],
        exception_handlers={HTTPException: http_error},
    )


# --- OpenAPI -----------------------------------------------------------------------------------
# Built in Python (no YAML parser needed at run time); tests check that every route of the app
# is described and every $ref resolves.


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_ADMIN_ERRORS = {
    "401": _err("missing, malformed, expired or wrongly signed token, or no exp claim"),
    "503": _err("admin API disabled (RELAY_ADMIN_JWT_SECRET not set) or Redis unavailable"),
}
_FILTER_PARAMS = [
    {
        "name": "target",
        "in": "query",
        "schema": {"type": "string"},
        "description": "only dead letters of this target (a target name, or route)",
    },
    {
        "name": "event_type",
        "in": "query",
        "schema": {"type": "string"},
        "description": "only this Clockify event type, e.g. NEW_TIME_ENTRY",
    },
    {
        "name": "since",
        "in": "query",
        "schema": {"type": "string"},
        "description": "last failure at or after: ISO date/datetime (UTC unless an offset is "
        "given) or an age such as 30m, 2h, 3d, 1w",
    },
    {
        "name": "until",
        "in": "query",
        "schema": {"type": "string"},
        "description": "last failure at or before; same forms as since",
    },
]
_LETTER_ID = {
    "name": "letter_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "dead letter id (as listed)",
}


def _admin(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "tags": ["admin"],
        "summary": summary,
        "security": [{"adminBearer": []}],
        "responses": {**responses, **_ADMIN_ERRORS},
        **extra,
    }


_SELECTION_PROPS: dict[str, Any] = {
    "ids": {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
        "maxItems": MAX_IDS,
        "description": "these dead letters (not with all/filters)",
    },
    "all": {"type": "boolean", "description": "every dead letter matching the filters"},
    "target": {"type": "string"},
    "event_type": {"type": "string"},
    "since": {"type": "string", "description": "ISO date/datetime or age (2h, 3d)"},
    "until": {"type": "string", "description": "ISO date/datetime or age (2h, 3d)"},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "DeadLetterSummary": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "target": {"type": "string"},
            "event_type": {"type": "string"},
            "event_id": {"type": "string"},
            "entry_id": {"type": "string"},
            "error_kind": {
                "type": "string",
                "description": "TransientError, PermanentError, UnknownOutcomeError, "
                "ConfigurationError",
            },
            "error": {"type": "string"},
            "status": {"type": "integer", "nullable": True},
            "attempts": {"type": "integer"},
            "first_failure": {"type": "string", "format": "date-time"},
            "last_failure": {"type": "string", "format": "date-time"},
        },
    },
    "DeadLetterList": {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "dead_letters": {"type": "array", "items": _ref("DeadLetterSummary")},
        },
    },
    "DeadLetter": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "target": {"type": "string"},
            "event_id": {"type": "string"},
            "event_type": {"type": "string"},
            "entity_id": {"type": "string"},
            "error_kind": {"type": "string"},
            "error": {"type": "string"},
            "status": {"type": "integer", "nullable": True},
            "attempts": {"type": "integer"},
            "first_failure": {"type": "number", "description": "Unix time"},
            "last_failure": {"type": "number", "description": "Unix time"},
            "first_failure_at": {"type": "string", "format": "date-time"},
            "last_failure_at": {"type": "string", "format": "date-time"},
            "history": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "at": {"type": "number"},
                        "at_iso": {"type": "string", "format": "date-time"},
                        "kind": {"type": "string"},
                        "error": {"type": "string"},
                        "status": {"type": "integer", "nullable": True},
                    },
                },
            },
            "envelope": _ref("Envelope"),
        },
    },
    "Envelope": {
        "type": "object",
        "description": "the event as ingested",
        "properties": {
            "event_id": {"type": "string"},
            "event_type": {"type": "string"},
            "workspace_id": {"type": "string"},
            "entity_id": {"type": "string"},
            "received_at": {"type": "string", "format": "date-time"},
            "sequence": {"type": "integer"},
            "payload": {"type": "object", "description": "Clockify's webhook body"},
        },
    },
    "ReplayResult": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "ok": {"type": "boolean"},
            "message": {"type": "string", "description": "what the delivery did, or why it failed"},
            "target": {"type": "string", "nullable": True},
            "event_id": {"type": "string", "nullable": True},
            "event_type": {"type": "string", "nullable": True},
            "found": {"type": "boolean"},
            "dry_run": {"type": "boolean"},
            "state": {"type": "string", "nullable": True, "description": "queued when queued"},
            "message_id": {"type": "string", "nullable": True},
            "poll": {"type": "string", "nullable": True, "description": "GET this for progress"},
        },
    },
    "ReplayState": {
        "type": "object",
        "properties": {
            "letter_id": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["queued", "retrying", "held", "delivered", "failed"],
            },
            "at": {"type": "string", "format": "date-time"},
            "detail": {"type": "string"},
            "error": {"type": "string"},
            "in_dlq": {"type": "boolean", "description": "the letter is still in the DLQ"},
        },
    },
    "EventList": {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "event_id": {"type": "string"},
                        "routed_at": {"type": "string", "format": "date-time"},
                        "event_type": {"type": "string"},
                        "entry_id": {"type": "string"},
                        "sequence": {"type": "integer"},
                        "outcomes": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
    "TargetList": {
        "type": "object",
        "properties": {
            "targets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "target": {"type": "string"},
                        "enabled": {"type": "boolean"},
                        "state": {"type": "string", "enum": ["running", "paused", "breaker open"]},
                        "paused_by": {"type": "string", "nullable": True},
                        "reason": {"type": "string", "nullable": True},
                        "since": {"type": "string", "nullable": True},
                        "held": {"type": "integer"},
                        "failures_in_a_row": {"type": "integer"},
                    },
                },
            }
        },
    },
    "PauseRequest": {
        "type": "object",
        "properties": {"reason": {"type": "string", "description": "why (optional)"}},
    },
    "ReplayRequest": {
        "type": "object",
        "properties": {
            **_SELECTION_PROPS,
            "force": {
                "type": "boolean",
                "description": "unknown-outcome letters: create again "
                "after checking the target; only with ids",
            },
            "dry_run": {"type": "boolean", "description": "report what would be replayed"},
        },
    },
    "ReplayReport": {
        "type": "object",
        "properties": {
            "dry_run": {"type": "boolean"},
            "results": {"type": "array", "items": _ref("ReplayResult")},
            "queued": {"type": "integer"},
            "missing": {"type": "integer"},
        },
    },
    "PurgeRequest": {"type": "object", "properties": _SELECTION_PROPS},
    "PurgeReport": {
        "type": "object",
        "properties": {
            "removed": {"type": "integer"},
            "missing": {"type": "array", "items": {"type": "string"}},
        },
    },
    "EventView": {
        "type": "object",
        "properties": {
            "event_id": {"type": "string"},
            "summary": {"type": "object", "nullable": True},
            "envelope": {"allOf": [_ref("Envelope")], "nullable": True},
            "trace": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "at": {"type": "number"},
                        "at_iso": {"type": "string", "format": "date-time"},
                        "stage": {"type": "string"},
                        "target": {"type": "string"},
                        "attempt": {"type": "integer"},
                        "outcome": {"type": "string"},
                        "status": {"type": "integer"},
                        "reason": {"type": "string"},
                        "error_kind": {"type": "string"},
                        "error": {"type": "string"},
                        "response": {"type": "string"},
                        "remote_ids": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                },
            },
            "dead_letters": {"type": "array", "items": _ref("DeadLetterSummary")},
        },
    },
    "WebhookAnswer": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["queued", "duplicate", "ignored"]},
            "event_id": {"type": "string"},
            "sequence": {"type": "integer"},
            "event_type": {"type": "string"},
            "reason": {"type": "string"},
        },
    },
    "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
}

# The receiver's own routes (receiver/app.py); the admin ones come from OPERATIONS.
_RECEIVER_PATHS: dict[str, Any] = {
    "/webhooks/clockify": {
        "post": {
            "tags": ["webhook"],
            "summary": "Receive one Clockify webhook",
            "description": "Verified by the Clockify-Signature header (a configured webhook token, "
            "or an add-on RS256 JWT). 202 only once the event is durably queued.",
            "security": [{"clockifySignature": []}],
            "parameters": [
                {
                    "name": "Clockify-Webhook-Event-Type",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "description": "Clockify's event payload"}
                    }
                },
            },
            "responses": {
                "202": _json(_ref("WebhookAnswer"), "queued"),
                "200": _json(_ref("WebhookAnswer"), "duplicate, or an event type not routed"),
                "400": _err(
                    "bad JSON, not an object, no event-type header, no id, a workspaceId that "
                    "is not a string, or a body beyond the ingest limits (nesting over 32, "
                    "numbers beyond signed 64 bits, timestamps outside 1970-2199, a time entry "
                    "or approval that does not parse)"
                ),
                "401": _err(
                    "bad or missing Clockify-Signature, or an add-on token whose workspaceId "
                    "claim is not the body's"
                ),
                "408": _err("request head or body not received in time"),
                "431": _err("request head too large"),
                "405": _err("method not allowed"),
                "413": _err("body too large"),
                "503": _err("queue unavailable; retry (Retry-After)"),
            },
        }
    },
    "/healthz": {
        "get": {
            "tags": ["health"],
            "summary": "Liveness",
            "responses": {"200": _json(_ref("Status"), "the process answers")},
        }
    },
    "/readyz": {
        "get": {
            "tags": ["health"],
            "summary": "Readiness (Redis answers)",
            "responses": {"200": _json(_ref("Status"), "ready"), "503": _err("Redis unreachable")},
        }
    },
    "/metrics": {
        "get": {
            "tags": ["health"],
            "summary": "Prometheus metrics (answers, queue, dead letters, parked)",
            "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {}}}
            },
        }
    },
}


@dataclass(frozen=True)
class Operation:
    """One admin operation: its route and what the OpenAPI document says about it."""

    method: str
    path: str  # under /admin
    handler: str  # the AdminApi method
    summary: str
    responses: Mapping[str, Any]
    parameters: Sequence[Mapping[str, Any]] = ()
    body: str | None = None  # a schema name
    public: bool = False

    def document(self) -> dict[str, Any]:
        """The operation object of the OpenAPI document."""
        doc: dict[str, Any] = {"tags": ["admin"], "summary": self.summary}
        if self.public:
            doc["responses"] = dict(self.responses)
        else:
            doc["security"] = [{"adminBearer": []}]
            doc["responses"] = {**self.responses, **_ADMIN_ERRORS}
        if self.parameters:
            doc["parameters"] = list(self.parameters)
        if self.body:
            content = {"application/json": {"schema": _ref(self.body)}}
            doc["requestBody"] = {"required": True, "content": content}
        return doc


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": kind}, "description": description}


def _path_param(name: str, description: str) -> dict[str, Any]:
    schema = {"type": "string"}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


_TARGET_NAME = _path_param("name", "a target name (everit, tracket, blikk, organi, mail)")
_QUEUED = "queued for the workers; poll each result's `poll` URL (dry run: 200, nothing queued)"

# Fixed paths before the ``{letter_id}`` ones: Starlette matches in order.
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/openapi.json",
        "openapi",
        "This document (public)",
        {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {}}}},
        public=True,
    ),
    Operation(
        "GET",
        "/dlq",
        "list_letters",
        "List dead letters (oldest last failure first)",
        {
            "200": _json(_ref("DeadLetterList"), "matching dead letters"),
            "400": _err("bad filter value"),
        },
        _FILTER_PARAMS,
    ),
    Operation(
        "POST",
        "/dlq/replay",
        "replay_many",
        "Queue several dead letters for the workers to deliver again (ids, or all + filters)",
        {
            "202": _json(_ref("ReplayReport"), _QUEUED),
            "200": _json(_ref("ReplayReport"), "dry run: what would happen, pauses included"),
            "400": _err("bad body: neither ids nor all, both, force without ids, bad filter"),
            "413": _err("body too large"),
        },
        body="ReplayRequest",
    ),
    Operation(
        "POST",
        "/dlq/purge",
        "purge",
        "Delete dead letters for good (by ids, or all matching filters)",
        {
            "200": _json(_ref("PurgeReport"), "how many were removed, which ids were unknown"),
            "400": _err("bad body"),
            "413": _err("body too large"),
        },
        body="PurgeRequest",
    ),
    Operation(
        "GET",
        "/dlq/{letter_id}",
        "show_letter",
        "One dead letter with history and envelope",
        {"200": _json(_ref("DeadLetter"), "the record"), "404": _err("no such dead letter")},
        [_LETTER_ID],
    ),
    Operation(
        "DELETE",
        "/dlq/{letter_id}",
        "delete_letter",
        "Delete one dead letter",
        {
            "200": _json(
                {
                    "type": "object",
                    "properties": {"removed": {"type": "integer"}, "id": {"type": "string"}},
                },
                "removed",
            ),
            "404": _err("no such dead letter"),
        },
        [_LETTER_ID],
    ),
    Operation(
        "POST",
        "/dlq/{letter_id}/replay",
        "replay_letter",
        "Queue one dead letter for the workers to deliver again",
        {
            "202": _json(_ref("ReplayReport"), _QUEUED),
            "200": _json(_ref("ReplayReport"), "dry run: what would happen, pauses included"),
            "400": _err("bad force or dry_run value"),
            "404": _err("no such dead letter"),
        },
        [
            _LETTER_ID,
            _query("force", "unknown-outcome letters only, after checking the target", "boolean"),
            _query("dry_run", "say what would happen; queue nothing", "boolean"),
        ],
    ),
    Operation(
        "GET",
        "/replays/{letter_id}",
        "replay_state",
        "Where the last replay of a dead letter stands",
        {
            "200": _json(_ref("ReplayState"), "queued, retrying, held, delivered or failed"),
            "404": _err("this dead letter was never replayed (or the record expired)"),
        },
        [_LETTER_ID],
    ),
    Operation(
        "GET",
        "/events",
        "list_events",
        "Recent events (newest first) with each target's latest outcome",
        {
            "200": _json(_ref("EventList"), "matching events"),
            "400": _err("bad since/until/limit"),
        },
        [
            _query("since", "ISO date/datetime or an age such as 30m, 2h (default 1h)"),
            _query("until", "ISO date/datetime or an age"),
            _query("entry", "only events of this Clockify time entry id"),
            _query("target", "only events that went to this target"),
            _query("outcome", "only events whose latest outcome (at target, else any) is this"),
            _query("limit", "at most this many (default 50)", "integer"),
        ],
    ),
    Operation(
        "GET",
        "/events/{event_id}",
        "show_event",
        "An event's envelope, trace and open dead letters",
        {
            "200": _json(_ref("EventView"), "what happened to the event"),
            "404": _err("never received, or its trace expired"),
        },
        [_path_param("event_id", "an event id (from a 202 answer or events list)")],
    ),
    Operation(
        "GET",
        "/targets",
        "list_targets",
        "Every target: enabled, running / paused / breaker open, held deliveries",
        {"200": _json(_ref("TargetList"), "the targets")},
    ),
    Operation(
        "POST",
        "/targets/{name}/pause",
        "pause_target",
        "Pause a target: its deliveries are held in Redis, in order, until resumed",
        {"200": _json({"type": "object"}, "paused"), "400": _err("unknown target or bad body")},
        [_TARGET_NAME],
        body="PauseRequest",
    ),
    Operation(
        "POST",
        "/targets/{name}/resume",
        "resume_target",
        "Resume a target: its held deliveries are queued again in the order they were held",
        {"200": _json({"type": "object"}, "resumed"), "400": _err("unknown target")},
        [_TARGET_NAME],
    ),
)


def _paths() -> dict[str, Any]:
    """The receiver's paths and every admin operation's."""
    paths: dict[str, Any] = dict(_RECEIVER_PATHS)
    for op in OPERATIONS:
        paths.setdefault(f"/admin{op.path}", {})[op.method.lower()] = op.document()
    return paths


@functools.cache
def _document() -> bytes:
    return orjson.dumps(
        {
            "openapi": "3.0.3",
            "info": {
                "title": "clockify-relay",
                "version": "0.1.0",
                "description": "Clockify webhooks in; deliveries to Everit, Blikk, Tracket. "
                "Admin API for the dead-letter queue and event traces.",
            },
            "tags": [{"name": "webhook"}, {"name": "health"}, {"name": "admin"}],
            "paths": _paths(),
            "components": {
                "schemas": _SCHEMAS,
                "securitySchemes": {
                    "adminBearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "HS256 JWT signed with RELAY_ADMIN_JWT_SECRET, "
                        "exp required (clockify-relay admin-token)",
                    },
                    "clockifySignature": {
                        "type": "apiKey",
                        "in": "header",
                        "name": "Clockify-Signature",
                    },
                },
            },
        }
    )


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 document of the webhook, health and admin endpoints (a fresh copy)."""
    document: dict[str, Any] = orjson.loads(_document())
    return document
