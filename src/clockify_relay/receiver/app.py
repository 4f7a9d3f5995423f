"""The Starlette receiver: Clockify webhooks in, durable Celery messages out.

Answers (always JSON; every 4xx carries an ``error`` message):

- 202 ``queued``     the Celery message is in Redis (and fsynced where AOF ``always`` is on)
- 200 ``duplicate``  byte-identical to the last accepted body of this entry and event type
- 200 ``ignored``    a verified event type the relay does not route (so Clockify stops retrying)
- 400 bad JSON / not an object / no event-type header / no ``id`` / a body the worker could
  not process (nesting, numbers, dates beyond the limits in ``clockify.models``; a time entry
  or approval that does not parse) / a ``workspaceId`` that is not a string; 401 bad or
  missing token, or an add-on token whose workspace is not the body's; 405 wrong method; 413
  body over the limit; 503 + Retry-After when Redis cannot be reached (a Sentinel failover
  included), or, with ``RELAY_REDIS_MIN_REPLICAS``, when fewer replicas acknowledged the write
  within ``RELAY_REDIS_WAIT_TIMEOUT_MS``
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from clockify_relay import metrics
from clockify_relay.clockify.models import (
    APPROVAL_EVENTS,
    ROUTED_EVENTS,
    TIME_ENTRY_EVENTS,
    PayloadError,
    check_limits,
    parse_approval,
    parse_time_entry,
)
from clockify_relay.clockify.token_store import REFRESH_ON_MISS_SECONDS, TokenCache
from clockify_relay.clockify.verify import VerificationError, WebhookVerifier
from clockify_relay.receiver.http import (
    BodyTooLarge,
    error,
    http_error,
    json_response,
    read_body,
)
from clockify_relay.receiver.ingest import Ingestor, NotReplicated
from clockify_relay.redis_conn import Keys, async_client
from clockify_relay.settings import Settings

log = logging.getLogger("clockify_relay.receiver")
RETRY_AFTER_SECONDS = "5"


def check_processable(event_type: str, payload: Mapping[str, Any]) -> None:
    """Raise PayloadError unless a worker can process this body: a 202 is a promise
    (docs/ARCHITECTURE.md). The same parser and limits as the worker's."""
    check_limits(payload)
    if event_type in TIME_ENTRY_EVENTS:
        parse_time_entry(payload)
    elif event_type in APPROVAL_EVENTS:
        parse_approval(payload)


class Receiver:
    """The webhook endpoint and health checks, with their shared state."""

    def __init__(self, settings: Settings, client: aioredis.Redis) -> None:
        self.settings = settings
        self.client = client
        self.verifier = WebhookVerifier(settings)
        self.ingestor = Ingestor(settings, client)
        self.token_cache = TokenCache(client, settings.key_prefix)
        self.keys = Keys(settings.key_prefix)

    async def webhook(self, request: Request) -> Response:
        """POST /webhooks/clockify (counted by event type and answer status, timed, for
        /metrics; a refusal is logged with its reason, never with the body)."""
        started = time.perf_counter()
        response = await self._webhook(request)
        event_type = request.headers.get("clockify-webhook-event-type", "").strip()
        status = response.status_code
        metrics.observe_webhook(event_type, status, time.perf_counter() - started)
        if status >= 400:
            level = logging.WARNING if status >= 500 else logging.INFO
            log.log(
                level,
                "webhook refused",
                extra={
                    "status": status,
                    "event_type": event_type[:64] or None,
                    "reason": _error_text(response),
                },
            )
        return response

    async def _webhook(self, request: Request) -> Response:
        headers = request.headers
        event_type = headers.get("clockify-webhook-event-type", "").strip()
        try:
            raw = await read_body(request, self.settings.max_body_bytes)
        except BodyTooLarge:
            return error(413, f"body is larger than {self.settings.max_body_bytes} bytes")
        if not event_type:
            return error(400, "missing Clockify-Webhook-Event-Type header")
        if event_type not in ROUTED_EVENTS:
            try:
                await self._verify(headers, event_type, None, body_read=False)
            except VerificationError as exc:
                return error(401, str(exc))
            except TokensUnavailable:
                return _tokens_unavailable()
            log.debug("ignored", extra={"event_type": event_type[:64]})
            return json_response(
                200,
                {
                    "status": "ignored",
                    "event_type": event_type,
                    "reason": "the relay does not route this event type",
                },
            )
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error(400, "body is not valid JSON")
        if not isinstance(payload, dict):
            return error(400, "body must be a JSON object")
        raw_workspace = payload.get("workspaceId")
        workspace_id = raw_workspace if isinstance(raw_workspace, str) else None
        try:
            # After parsing: an add-on JWT's workspace claim must match the body's.
            await self._verify(headers, event_type, workspace_id)
        except VerificationError as exc:
            return error(401, str(exc))
        except TokensUnavailable:
            return _tokens_unavailable()
        if raw_workspace is not None and workspace_id is None:
            return error(400, "workspaceId must be a string")
        entity_id = payload.get("id")
        if not isinstance(entity_id, str) or not entity_id:
            return error(400, f"{event_type} payload has no id")
        try:
            check_processable(event_type, payload)
        except PayloadError as exc:
            return error(400, f"{event_type} payload: {exc}")
        try:
            result = await self.ingestor.ingest(event_type, workspace_id or "", entity_id, raw)
        except NotReplicated as exc:
            # Maybe queued on the master, but not safe from a failover: never 2xx. The body
            # Clockify sends again is absorbed as a duplicate (or queued again after a failover).
            log.warning("write not replicated, answered 503: %s", exc)
            return error(
                503, "queue not replicated, retry later", {"Retry-After": RETRY_AFTER_SECONDS}
            )
        except (RedisError, OSError) as exc:
            # Not queued: never 2xx. Clockify retries non-2xx answers.
            log.warning("queue unavailable, answered 503: %s", type(exc).__name__)
            return error(
                503, "queue unavailable, retry later", {"Retry-After": RETRY_AFTER_SECONDS}
            )
        ids = {"event_id": result.event_id, "entry_id": entity_id, "event_type": event_type}
        if result.queued:
            log.info("received", extra={**ids, "sequence": result.sequence})
            return json_response(
                202, {"status": "queued", "event_id": result.event_id, "sequence": result.sequence}
            )
        log.info("duplicate", extra=ids)
        return json_response(200, {"status": "duplicate", "event_id": result.event_id})

    async def _verify(
        self,
        headers: Mapping[str, str],
        event_type: str,
        workspace_id: str | None,
        *,
        body_read: bool = True,
    ) -> None:
        """The verifier with the environment's tokens and those stored in Redis (cached for
        a moment). Redis unreadable and the environment's tokens not enough: TokensUnavailable
        (503, never a 401 for a token that may well be valid)."""
        signature = headers.get("clockify-signature")
        try:
            stored = await self.token_cache.tokens()
        except (RedisError, OSError) as exc:
            try:
                self.verifier.verify(signature, event_type, workspace_id, body_read=body_read)
            except VerificationError:
                raise TokensUnavailable from exc
            return
        try:
            self.verifier.verify(
                signature, event_type, workspace_id, body_read=body_read, stored=stored
            )
        except VerificationError as exc:
            # Perhaps a token stored since the cache was read (a rotation): read it again once.
            if exc.reason not in ("bad_token", "wrong_event_type", "not_configured"):
                raise
            if self.token_cache.age < REFRESH_ON_MISS_SECONDS:
                raise
            try:
                fresh = await self.token_cache.tokens(max_age=REFRESH_ON_MISS_SECONDS)
            except (RedisError, OSError) as redis_exc:
                raise TokensUnavailable from redis_exc
            self.verifier.verify(
                signature, event_type, workspace_id, body_read=body_read, stored=fresh
            )

    async def healthz(self, request: Request) -> Response:
        """Alive: the process answers."""
        return json_response(200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready: Redis answers within the configured timeout."""
        try:
            await self.client.ping()
        except (RedisError, OSError):
            return error(503, "redis unreachable", {"Retry-After": RETRY_AFTER_SECONDS})
        return json_response(200, {"status": "ready"})

    async def metrics(self, request: Request) -> Response:
        """Prometheus text (metrics.py): webhook answers and ack latency (every receiver
        process's, in multiprocess mode), and the queue, dead-letter and parked sizes and the
        paused targets read from Redis now (``clockify_relay_redis_up 0`` when it does not
        answer: still 200)."""
        snapshot: metrics.RedisSnapshot | None
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(self.keys.queue)
            pipe.hlen(self.keys.dlq)
            pipe.zcard(self.keys.parked)
            pipe.hgetall(self.keys.paused)
            queued, dead, parked, paused = await pipe.execute()
            snapshot = metrics.RedisSnapshot(
                int(queued), int(dead), int(parked), metrics.read_paused(paused)
            )
        except (RedisError, OSError):
            snapshot = None
        text = metrics.exposition(metrics.RedisGauges(lambda: snapshot))
        return Response(text, media_type=metrics.CONTENT_TYPE)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/webhooks/clockify", self.webhook, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]


def _error_text(response: Response) -> str | None:
    """The ``error`` message of one of our JSON error answers (never the request body)."""
    try:
        body = orjson.loads(bytes(response.body))
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        return None
    error_text = body.get("error") if isinstance(body, dict) else None
    return str(error_text)[:200] if error_text else None


class TokensUnavailable(Exception):
    """The webhook tokens stored in Redis could not be read."""


def _tokens_unavailable() -> Response:
    log.warning("webhook tokens unreadable (Redis), answered 503")
    return error(503, "token store unavailable, retry later", {"Retry-After": RETRY_AFTER_SECONDS})


class CollapseLeadingSlashes:
    """ASGI middleware: ``//webhooks/clockify`` (a base URL pasted with a trailing slash) is
    routed as ``/webhooks/clockify``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if path.startswith("//"):
            scope = dict(scope, path="/" + path.lstrip("/"))
        await self.app(scope, receive, send)


def receiver_app(settings: Settings, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    """The receiver ASGI app: webhook, health and metrics routes, plus ``extra_routes`` (the
    admin API, mounted by :func:`clockify_relay.asgi.create_app`)."""
    client = async_client(settings)
    receiver = Receiver(settings, client)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not receiver.verifier.configured:
            log.error(
                "no webhook tokens in the environment and no add-on key: only tokens stored by "
                "`clockify-relay webhooks register` are accepted"
            )
        yield
        await client.aclose()

    return Starlette(
        routes=receiver.routes() + (extra_routes or []),
        exception_handlers={HTTPException: http_error},
        middleware=[Middleware(CollapseLeadingSlashes)],
        lifespan=lifespan,
    )
