"""JSON answers and bounded body reading shared by the webhook endpoint and the admin API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response


class BodyTooLarge(Exception):
    """The request body is over the configured limit."""


def json_response(
    status: int, content: Mapping[str, Any], headers: dict[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson (the receiver's hot path)."""
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON error answer: ``{"error": message}``."""
    return json_response(status, {"error": message}, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, stopping as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
