"""The bare endpoint the receiver is compared with: read the body, parse the JSON, answer 202.

Same framework (Starlette), same server settings and same JSON library as the receiver, but no
verification, no Redis and no message building -- the cost every webhook endpoint on this stack
pays, so ``receiver / bare`` shows what the relay's own work costs.

Run as a uvicorn factory: ``uvicorn --factory clockify_relay.bench.baseline:create_app``.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_ACCEPTED = b'{"status":"queued"}'


async def webhook(request: Request) -> Response:
    """POST /webhooks/clockify: parse the body; 400 when it is not JSON, else 202."""
    try:
        orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return Response(b'{"error":"body is not valid JSON"}', 400, media_type="application/json")
    return Response(_ACCEPTED, 202, media_type="application/json")


async def healthz(request: Request) -> Response:
    """GET /healthz: alive."""
    return Response(b'{"status":"ok"}', 200, media_type="application/json")


def create_app() -> Starlette:
    """The bare app (a uvicorn factory, like the receiver's ``create_app``)."""
    return Starlette(
        routes=[
            Route("/webhooks/clockify", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
