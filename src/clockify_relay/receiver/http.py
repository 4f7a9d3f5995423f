"""JSON answers and bounded body reading shared by the webhook endpoint and the admin API."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

log = logging.getLogger("clockify_relay.receiver")

# nginx's "client closed request": never sent (the client is gone), it only names the outcome.
CLIENT_CLOSED_REQUEST = 499


class BodyTooLarge(Exception):
    """The request body is over the configured limit."""


class ClientGone(HTTPException):
    """The client disconnected before its body was complete.

    An ``HTTPException`` so that Starlette ends the request through its exception handler
    without a traceback, whichever endpoint was reading; the answer goes nowhere (uvicorn drops
    what is sent on a closed connection) and nothing was queued or changed.
    """

    def __init__(self) -> None:
        super().__init__(CLIENT_CLOSED_REQUEST, "client disconnected before the body was complete")


def json_response(
    status: int, content: Mapping[str, Any], headers: dict[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson (the receiver's hot path)."""
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON error answer: ``{"error": message}``."""
    return json_response(status, {"error": message}, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, stopping as soon as it passes ``limit`` bytes.

    Raises :class:`BodyTooLarge` over the limit and :class:`ClientGone` when the client
    disconnects first (a routine event for a server on the internet, not an error).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
    except ClientDisconnect:
        log.info(
            "%s %s: client disconnected after %d of %s body bytes",
            request.method,
            request.url.path,
            size,
            declared if declared is not None and declared.isdigit() else "?",
        )
        raise ClientGone from None
    return b"".join(chunks)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 answers, as JSON with an ``error`` message."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, dict(exc.headers or {}))
