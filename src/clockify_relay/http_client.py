"""The one HTTP base client every connector (connectors/<target>/api.py) and the Clockify REST
client (clockify/client.py) build on.

It owns timeouts, connection pooling and the mapping of HTTP outcomes to the error taxonomy in
:mod:`clockify_relay.errors`, so no connector decides on its own what a 503 or a timeout means:

- connection errors and timeouts → ``TransientError``
- 429 → ``TransientError`` with ``retry_after`` from ``Retry-After`` (or a body hint)
- 5xx → ``TransientError``
- any other 4xx → ``PermanentError`` whose message is built by :meth:`describe_error`

A subclass overrides :meth:`describe_error` to put the target's documented error body
into words, and :meth:`before_request` to pace calls (Blikk's rate limit).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from clockify_relay.errors import PermanentError, TransientError

# Values of these headers and JSON fields never leave the client (trace, DLQ, logs).
_SECRET_FIELD = re.compile(
    r'("(?:access_?token|accessToken|token|api_?key|apiKey|secret|password|authorization)"\s*:\s*)"[^"]*"',
    re.IGNORECASE,
)
EXCERPT_LENGTH = 300


def excerpt(text: str, length: int = EXCERPT_LENGTH) -> str:
    """A short, secret-free excerpt of a response body for traces and the dead-letter queue."""
    cleaned = _SECRET_FIELD.sub(r'\1"***"', text)
    return cleaned if len(cleaned) <= length else cleaned[:length] + "…"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def json_object_or_none(response: httpx.Response) -> Mapping[str, Any] | None:
    """The response body as a JSON object, or None when it is not one (no JSON, or a list)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, Mapping) else None


def json_object(response: httpx.Response) -> Mapping[str, Any]:
    """The response body as a JSON object, or an empty mapping when it is not one."""
    body = json_object_or_none(response)
    return {} if body is None else body


class BaseClient:
    """An httpx client for one target that turns every failure into a typed relay error."""

    target: str = "target"

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url,
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def before_request(self) -> None:
        """Hook run before every request (e.g. to wait for a rate-limit slot)."""

    def describe_error(self, response: httpx.Response) -> str:
        """Words for a refused request; subclasses read their target's error body here."""
        return f"{self.target} answered {response.status_code}: {excerpt(response.text)}"

    def retry_after(self, response: httpx.Response) -> float | None:
        """How long a 429/503 asks us to wait; subclasses may read a body field too."""
        return parse_retry_after(response.headers.get("retry-after"))

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        allow_statuses: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send one request; return the response if 2xx (or in ``allow_statuses``), else raise."""
        self.before_request()
        try:
            response = self.http.request(
                method, path, json=json, params=params, headers=dict(headers or {})
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the target: safe to send again.
            raise TransientError(
                f"{self.target}: {method} {path} could not connect ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            # Sent, but no answer: the target may have acted on it.
            raise TransientError(
                f"{self.target}: {method} {path} got no answer ({type(exc).__name__})",
                outcome_unknown=True,
            ) from None
        status = response.status_code
        if status < 300 or status in allow_statuses:
            return response
        self.raise_for_response(method, path, response)
        return response  # pragma: no cover - raise_for_response always raises

    def raise_for_response(self, method: str, path: str, response: httpx.Response) -> None:
        """Raise the taxonomy error for a non-2xx response."""
        status = response.status_code
        body = excerpt(response.text)
        if status == 429 or status >= 500:
            raise TransientError(
                f"{self.target}: {method} {path} → {status}",
                status=status,
                response_excerpt=body,
                retry_after=self.retry_after(response),
            )
        raise PermanentError(
            f"{self.target}: {method} {path} → {self.describe_error(response)}",
            status=status,
            response_excerpt=body,
        )
