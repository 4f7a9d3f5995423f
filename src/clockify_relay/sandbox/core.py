"""Core of the sandbox: configuration, the fake-target contract, request counting and faults.

Every fake (Everit, Tracket, Blikk, the Clockify REST API, ...) is a :class:`FakeTarget` mounted
at ``/{name}``. What all of them share lives here so each fake only implements its API:

* :class:`SandboxConfig` -- the credentials the fakes accept.
* :class:`FaultRegistry` -- faults injected through ``POST /_sandbox/faults``; applied by
  :class:`SandboxMiddleware` to requests under a target's mount, so a fake gets faults without
  writing a line for them.
* :class:`Sandbox` -- the fakes of one app, the request counters and the fault registry, with the
  ``state()``/``reset()`` behind ``GET /_sandbox/state`` and ``POST /_sandbox/reset``.
* Small helpers (:func:`json_response`, :func:`read_json`) so fakes answer JSON the same way, and
  :func:`method_route` so a path's 405 lists every method it takes.

All state is in memory per app instance and guarded by locks: the app runs in a uvicorn thread
while tests read it from another thread through
:class:`~clockify_relay.sandbox.server.SandboxServer`.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clockify_relay.sandbox.smtp import SmtpSink

# How long a ``"timeout": true`` fault holds a request: longer than any client timeout the relay
# uses, so the client gives up first.
DEFAULT_HOLD_SECONDS = 30.0
# Granularity of the hold loop; a reset or server stop releases held requests this fast.
_HOLD_TICK = 0.05

CONTROL_PREFIX = "/_sandbox"
# A fault's path: absolute, no whitespace, no query or fragment.
_FAULT_PATH = re.compile(r"/[^\s?#]*")


@dataclass
class SandboxConfig:
    """Credentials and limits the fakes enforce; the defaults are what tests and the demo use."""

    everit_api_key: str = "sandbox-everit-key"
    tracket_token: str = "sandbox-tracket-token"  # noqa: S105 - a fake's public default
    organi_token: str = "sandbox-organi-token"  # noqa: S105
    blikk_app_id: str = "sandbox-blikk-app"
    blikk_app_secret: str = "sandbox-blikk-secret"  # noqa: S105
    blikk_token_ttl: float = 3600.0  # seconds a Blikk access token lives
    blikk_rate_per_second: int = 4
    clockify_api_key: str = "sandbox-clockify-key"
    smtp_port: int = 0  # the sandbox's SMTP server (sandbox/smtp.py), set when it starts


class FakeTarget(ABC):
    """One fake external API, mounted at ``/{name}``.

    Subclasses keep their records in memory and guard them with ``self.lock`` (handlers run on
    the uvicorn loop, ``state()``/``reset()`` may be called from a test thread).
    """

    name: ClassVar[str]
    # Path under the mount where the real API's base URL path starts (e.g. Tracket's "/api/1.0"),
    # so SandboxServer.base_urls can tell a connector what to use. Optional; default: the mount.
    base_path: ClassVar[str] = ""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.lock = threading.RLock()

    @abstractmethod
    def routes(self) -> list[BaseRoute]:
        """Starlette routes of the fake API, with paths relative to the mount ``/{name}``."""

    def control_routes(self) -> list[BaseRoute]:
        """Extra control routes, mounted at ``/_sandbox/{name}`` (default: none).

        Control routes are neither counted nor subject to faults.
        """
        return []

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """This fake's part of ``GET /_sandbox/state``: records in the API's own field names."""

    @abstractmethod
    def reset(self) -> None:
        """Forget every record (and any other per-run state) this fake holds."""


# --------------------------------------------------------------------------------------------
# JSON helpers


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson (handles datetimes, keeps key order)."""
    return Response(
        orjson.dumps(content),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


class InvalidJSON(Exception):
    """The request body is not JSON (or not the JSON type the handler expects)."""


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON; :class:`InvalidJSON` when it is empty or malformed."""
    body = await request.body()
    if not body:
        raise InvalidJSON("empty body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"malformed JSON: {exc}") from None


Handler = Callable[[Request], Awaitable[Response]]


def method_route(path: str, handlers: Mapping[str, Handler]) -> Route:
    """One route for ``path`` with a handler per method (``{"GET": ..., "POST": ...}``).

    Starlette answers a request with the first route whose path matches, and its 405 lists that
    route's methods only; one route per path makes a 405 list every method the path takes.
    """
    methods = {method.upper(): handler for method, handler in handlers.items()}

    async def dispatch(request: Request) -> Response:
        # Starlette adds HEAD to a route that takes GET.
        method = "GET" if request.method == "HEAD" else request.method
        return await methods[method](request)

    return Route(path, dispatch, methods=list(methods))


# --------------------------------------------------------------------------------------------
# Faults


class FaultError(ValueError):
    """A fault specification is invalid; the message says which field and why."""


@dataclass
class Fault:
    """One injected fault for a target.

    It applies to the next ``count`` requests, or to every request until ``expires_at``
    (monotonic clock), whichever ends first. ``status`` None means "answer normally" (useful
    with ``latency`` alone); ``hold`` > 0 holds the request that long before answering 504, so a
    client with a shorter timeout sees a timeout. ``path`` and ``method``, when set, limit it to
    matching requests (see :meth:`matches`); other requests neither see nor use it up.
    """

    target: str
    status: int | None = None
    path: str | None = None
    method: str | None = None
    count: int | None = None
    expires_at: float | None = None
    latency: float = 0.0
    hold: float = 0.0
    body: Any = None
    retry_after: str | None = None
    id: int = 0
    applied: int = 0

    def active(self, now: float) -> bool:
        """True while the fault still applies to requests."""
        if self.count is not None and self.count <= 0:
            return False
        return not (self.expires_at is not None and now >= self.expires_at)

    def matches(self, method: str, api_path: str | None) -> bool:
        """Whether a request is one this fault is for.

        ``api_path`` is the request's path under the target's base URL (None when outside
        it). A fault's ``path`` matches that path and everything below it, on whole segments:
        ``/v1/Core/TimeReports`` matches ``/v1/Core/TimeReports/7``, not ``/v1/Core/TimeReportsX``.
        """
        if self.method is not None and method.upper() != self.method:
            return False
        if self.path is None:
            return True
        if api_path is None:
            return False
        return self.path == "/" or api_path == self.path or api_path.startswith(self.path + "/")

    def describe(self, now: float) -> dict[str, Any]:
        """The fault as shown in ``GET /_sandbox/state``."""
        return {
            "id": self.id,
            "target": self.target,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "remaining": self.count,
            "seconds_left": (
                None if self.expires_at is None else round(max(0.0, self.expires_at - now), 3)
            ),
            "latency": self.latency,
            "timeout": self.hold > 0,
            "hold": self.hold,
            "retry_after": self.retry_after,
            "body": self.body,
            "applied": self.applied,
        }


def _number(spec: dict[str, Any], key: str, *, minimum: float = 0.0) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    # bool is an int subclass; "true" as a count is a caller mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"'{key}' must be a number")
    if value < minimum:
        raise FaultError(f"'{key}' must be >= {minimum:g}")
    return float(value)


def parse_fault(spec: Any, targets: Sequence[str]) -> Fault:
    """A :class:`Fault` from the JSON of ``POST /_sandbox/faults``; :class:`FaultError` if bad.

    Accepted keys: ``target`` (required), ``status``, ``count``, ``seconds``, ``latency``,
    ``timeout`` (true, or the seconds to hold), ``body``, ``retry_after``, ``path`` (under the
    target's base URL, e.g. ``/v1/Core/TimeReports``: that path and below) and ``method``.
    Without ``count`` and ``seconds`` the fault applies to one request.
    """
    if not isinstance(spec, dict):
        raise FaultError("fault must be a JSON object")
    unknown = set(spec) - {
        "target",
        "status",
        "count",
        "seconds",
        "latency",
        "timeout",
        "body",
        "retry_after",
        "path",
        "method",
    }
    if unknown:
        raise FaultError(f"unknown fault fields: {sorted(unknown)}")
    target = spec.get("target")
    if not isinstance(target, str) or target not in targets:
        raise FaultError(f"'target' must be one of {sorted(targets)}")
    status = spec.get("status")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
    ):
        raise FaultError("'status' must be an HTTP status code (100-599)")
    count = _number(spec, "count", minimum=1)
    if count is not None and count != int(count):
        raise FaultError("'count' must be an integer")
    seconds = _number(spec, "seconds")
    latency = _number(spec, "latency") or 0.0
    timeout = spec.get("timeout", False)
    if timeout is True:
        hold = DEFAULT_HOLD_SECONDS
    elif timeout is False or timeout is None:
        hold = 0.0
    else:
        hold = _number(spec, "timeout") or 0.0
    if status is None and latency == 0 and hold == 0:
        raise FaultError("a fault needs at least one of 'status', 'latency' or 'timeout'")
    retry_after = spec.get("retry_after")
    if retry_after is not None:
        if isinstance(retry_after, bool) or not isinstance(retry_after, int | float | str):
            raise FaultError("'retry_after' must be a number of seconds or an HTTP date")
        retry_after = (
            str(int(retry_after))
            if isinstance(retry_after, float) and retry_after.is_integer()
            else str(retry_after)
        )
    if count is None and seconds is None:
        count = 1.0
    return Fault(
        target=target,
        status=status,
        path=_fault_path(spec.get("path")),
        method=_fault_method(spec.get("method")),
        count=None if count is None else int(count),
        expires_at=None if seconds is None else time.monotonic() + seconds,
        latency=latency,
        hold=hold,
        body=spec.get("body"),
        retry_after=retry_after,
    )


def _fault_path(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _FAULT_PATH.fullmatch(value):
        raise FaultError(
            "'path' must be a path under the target's base URL, starting with '/' "
            "(e.g. '/v1/Core/TimeReports'), without spaces or a query"
        )
    # "/worklogs/" means the same as "/worklogs": matching is on whole segments anyway.
    return value.rstrip("/") or "/"


def _fault_method(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isascii() or not value.isalpha():
        raise FaultError("'method' must be an HTTP method such as 'POST'")
    return value.upper()


class FaultRegistry:
    """Faults per target, applied in the order they were added and dropped once spent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1
        # Bumped by clear(): requests held by a timeout fault watch it and let go on a reset.
        self.generation = 0

    def add(self, fault: Fault) -> Fault:
        """Register a fault; returns it with its id set."""
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._faults.append(fault)
            return fault

    def take(self, target: str, method: str = "GET", api_path: str | None = None) -> Fault | None:
        """The fault that applies to this request of ``target``, consuming one use of it.

        ``api_path`` is the request's path under the target's base URL (see
        :meth:`Sandbox.api_path`); faults limited to a path or method skip other requests.
        """
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.active(now)]
            for fault in self._faults:
                if fault.target == target and fault.matches(method, api_path):
                    if fault.count is not None:
                        fault.count -= 1
                    fault.applied += 1
                    return fault
            return None

    def describe(self) -> list[dict[str, Any]]:
        """Active faults, in order, as JSON-able dicts."""
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.active(now)]
            return [f.describe(now) for f in self._faults]

    def clear(self) -> None:
        """Drop every fault and release held requests."""
        with self._lock:
            self._faults.clear()
            self.generation += 1


# --------------------------------------------------------------------------------------------
# The sandbox of one app


class Sandbox:
    """The fakes of one app with their request counters and faults."""

    def __init__(self, config: SandboxConfig, fakes: Sequence[FakeTarget]) -> None:
        self.config = config
        self.fakes: dict[str, FakeTarget] = {fake.name: fake for fake in fakes}
        self.faults = FaultRegistry()
        # The SMTP server's mails and mode (sandbox/smtp.py); SandboxServer starts it.
        self.smtp = SmtpSink()
        self._lock = threading.Lock()
        self._requests: dict[str, int] = dict.fromkeys(self.fakes, 0)
        # Set when the server stops so held requests return at once.
        self.closing = threading.Event()

    def count_request(self, target: str) -> None:
        """Count one request under ``target``'s mount."""
        with self._lock:
            self._requests[target] = self._requests.get(target, 0) + 1

    def requests(self) -> dict[str, int]:
        """Requests counted per target since the last reset."""
        with self._lock:
            return dict(self._requests)

    def state(self) -> dict[str, Any]:
        """Everything ``GET /_sandbox/state`` shows."""
        state: dict[str, Any] = {name: fake.state() for name, fake in self.fakes.items()}
        state["smtp"] = self.smtp.state()
        state["requests"] = self.requests()
        state["faults"] = self.faults.describe()
        return state

    def reset(self) -> None:
        """Forget every record, fault and counter."""
        self.faults.clear()
        self.smtp.reset()
        for fake in self.fakes.values():
            fake.reset()
        with self._lock:
            self._requests = dict.fromkeys(self.fakes, 0)

    def target_of(self, path: str) -> str | None:
        """The fake whose mount ``path`` is under, or None (control endpoints, unknown paths)."""
        first = path.lstrip("/").split("/", 1)[0]
        return first if first in self.fakes else None

    def api_path(self, target: str, path: str) -> str | None:
        """``path`` relative to ``target``'s base URL (``/tracket/api/1.0/worklogs`` →
        ``/worklogs``), or None when it is outside it."""
        base = f"/{target}{self.fakes[target].base_path}"
        if path == base:
            return "/"
        return path[len(base) :] if path.startswith(base + "/") else None

    def add_fault(self, spec: Any) -> Fault:
        """Validate and register a fault from its JSON form (:class:`FaultError` if invalid)."""
        return self.faults.add(parse_fault(spec, list(self.fakes)))


class SandboxMiddleware:
    """Counts every request under a fake's mount and applies that target's injected faults."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = self.sandbox.target_of(scope["path"])
        if target is None:
            await self.app(scope, receive, send)
            return
        self.sandbox.count_request(target)
        fault = self.sandbox.faults.take(
            target, scope["method"], self.sandbox.api_path(target, scope["path"])
        )
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.latency:
            # Take the whole request before waiting, as a slow server has it: a client that
            # gives up during the wait does not take back what it sent (its outcome is unknown).
            receive = await _buffered(receive)
            if not await self._hold(fault.latency):
                # A reset (the next test) or a stop came first: the request is dropped, so it
                # cannot land in records that belong to someone else.
                await _send_fault_response(send, 503, {"error": "sandbox reset"}, None)
                return
        if fault.hold:
            await self._hold(fault.hold)
            # The client has given up by now; answer something sensible for one that has not.
            await _send_fault_response(send, 504, {"error": "sandbox fault: held request"}, None)
            return
        if fault.status is None:
            await self.app(scope, receive, send)
            return
        body = (
            fault.body
            if fault.body is not None
            else {
                "error": f"sandbox fault: injected status {fault.status}",
            }
        )
        await _send_fault_response(send, fault.status, body, fault.retry_after)

    async def _hold(self, seconds: float) -> bool:
        """Wait ``seconds``; False when a reset or a server stop cut the wait short."""
        # Sleep in ticks so a reset or a server stop releases the request promptly.
        generation = self.sandbox.faults.generation
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.sandbox.closing.is_set() or self.sandbox.faults.generation != generation:
                return False
            await asyncio.sleep(min(_HOLD_TICK, left))
        return True


async def _buffered(receive: Receive) -> Receive:
    """Read the request body now; the returned ``receive`` replays it, then defers to the
    server's (which reports a disconnect once the client is gone)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


async def _send_fault_response(send: Send, status: int, body: Any, retry_after: str | None) -> None:
    if isinstance(body, str | bytes):
        payload = body.encode() if isinstance(body, str) else body
        media_type = b"text/plain; charset=utf-8"
    else:
        payload = orjson.dumps(body)
        media_type = b"application/json"
    headers = [(b"content-type", media_type), (b"content-length", str(len(payload)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": payload})


# Value helpers the fakes share when they check request bodies against their documents.


def is_number(value: Any) -> bool:
    """A JSON number (a boolean is not one, though Python counts it as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def now_iso() -> str:
    """Now in UTC, millisecond precision with "Z", as the documents' examples write it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def aware_datetime(value: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 date-time string with offset, else None: an OpenAPI
    date-time carries an offset, and a naive one hides a time-zone bug in the caller."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
