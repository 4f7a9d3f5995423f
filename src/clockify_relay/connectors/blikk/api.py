"""Blikk's public API: the HTTP client (auth, pacing, Blikk's error bodies) the connector
(connector.py) and the look-ups (lookups.py) call.

Every request -- token requests and look-ups included -- first takes a slot from the shared
Redis :class:`~clockify_relay.ratelimit.RateLimiter`, keyed by the app id, so all workers
together stay under Blikk's four requests per second. A 429 is honoured exactly: its
``waitInSeconds`` (or ``Retry-After``) becomes ``TransientError.retry_after`` and pushes the
shared schedule out, so no worker hammers Blikk while it is refusing.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import redis

from clockify_relay.connectors.blikk.auth import AccessToken, TokenCache, parse_expires, scope_of
from clockify_relay.connectors.blikk.config import BlikkConfig
from clockify_relay.errors import ConfigurationError, PermanentError
from clockify_relay.http_client import (
    BaseClient,
    excerpt,
    json_object,
    json_object_or_none,
    parse_retry_after,
)
from clockify_relay.ratelimit import RateLimiter
from clockify_relay.redis_conn import Keys

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1/Auth/Token"  # noqa: S105 - a URL path, not a secret
REPORTS_PATH = "/v1/Core/TimeReports"
PAGE_SIZE = 100
MAX_PAGES = 1000  # a runaway guard: 100 000 records is far beyond one user's day


class BlikkClient(BaseClient):
    """HTTP client for Blikk's public API with shared token and shared rate limit."""

    target = "blikk"

    def __init__(
        self,
        config: BlikkConfig,
        redis_client: redis.Redis,
        keys: Keys,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        config.require_credentials()
        super().__init__(config.base_url, timeout=config.timeout, transport=transport)
        self.config = config
        scope = scope_of(config.app_id)
        self.limiter = RateLimiter(
            redis_client,
            keys.ratelimit(scope),
            config.rate_per_second,
            padding=config.rate_padding,
            max_wait=config.rate_max_wait,
            name="blikk",
        )
        self.tokens = TokenCache(
            redis_client,
            keys.cache(f"{scope}:token"),
            self._fetch_token,
            refresh_margin=config.token_refresh_margin,
        )

    # -- BaseClient hooks -----------------------------------------------------------------------

    def before_request(self) -> None:
        """Wait for this app's next slot in the shared schedule."""
        self.limiter.acquire()

    def retry_after(self, response: httpx.Response) -> float | None:
        """Blikk's ``waitInSeconds`` body field, else the ``Retry-After`` header."""
        wait = json_object(response).get("waitInSeconds")
        if isinstance(wait, int | float) and not isinstance(wait, bool) and wait >= 0:
            return float(wait)
        return parse_retry_after(response.headers.get("retry-after"))

    def raise_for_response(self, method: str, path: str, response: httpx.Response) -> None:
        """As the base client, plus: a 429 holds off every worker; a refused token request is a
        configuration problem (wrong app id or secret), not a per-entry one."""
        if response.status_code == 429:
            wait = self.retry_after(response)
            if wait:
                self.limiter.hold_off(wait)
        if path == TOKEN_PATH and response.status_code in (400, 401, 403):
            raise ConfigurationError(
                f"blikk: token request refused ({response.status_code}): check BLIKK_APP_ID and "
                f"BLIKK_APP_SECRET (app id {self.config.app_id!r})",
                status=response.status_code,
                response_excerpt=excerpt(response.text),
            )
        super().raise_for_response(method, path, response)

    def describe_error(self, response: httpx.Response) -> str:
        """Blikk's ``message`` and ``modelState`` in words."""
        body = json_object_or_none(response)
        if body is None:
            return super().describe_error(response)
        parts = [str(body.get("message") or "").strip()]
        model_state = body.get("modelState")
        if isinstance(model_state, Mapping):
            for field_name, problems in model_state.items():
                text = (
                    "; ".join(str(p) for p in problems) if isinstance(problems, list) else problems
                )
                parts.append(f"{field_name}: {text}")
        detail = " ".join(p for p in parts if p) or excerpt(response.text)
        return f"blikk answered {response.status_code}: {excerpt(detail)}"

    # -- auth -----------------------------------------------------------------------------------

    def _fetch_token(self) -> AccessToken:
        credentials = f"{self.config.app_id}:{self.config.app_secret.reveal()}"
        basic = base64.b64encode(credentials.encode()).decode()
        response = self.request("POST", TOKEN_PATH, headers={"Authorization": f"Basic {basic}"})
        body = json_object_or_none(response)
        if body is None:
            raise PermanentError("blikk: token response is not a JSON object")
        token = body.get("accessToken")
        if not isinstance(token, str) or not token:
            raise PermanentError("blikk: token response has no accessToken")
        return AccessToken(token, parse_expires(body.get("expires")))

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        allow_statuses: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """An authenticated request; on a 401 the token is refreshed once and the call retried."""

        def send(token: AccessToken) -> httpx.Response:
            return self.request(
                method,
                path,
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {token.token}"},
                allow_statuses=allow_statuses,
            )

        token = self.tokens.get()
        try:
            return send(token)
        except PermanentError as exc:
            if exc.status != 401:
                raise
        # The token expired early or was revoked: drop it (unless already replaced) and retry.
        log.info("blikk: 401 on %s %s, refreshing the access token", method, path)
        self.tokens.invalidate(token)
        try:
            return send(self.tokens.get())
        except PermanentError as exc:
            if exc.status == 401:
                raise PermanentError(
                    f"blikk: {method} {path} refused a freshly issued access token (401); "
                    f"check the API application's permissions",
                    status=401,
                    response_excerpt=exc.response_excerpt,
                ) from None
            raise

    def paged(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a Blikk paged list, page by page (``page``/``pageSize``/``totalPages``)."""
        page = 1
        while page <= MAX_PAGES:
            response = self.call(
                "GET", path, params={**(params or {}), "page": page, "pageSize": PAGE_SIZE}
            )
            body = json_body(response, f"GET {path}")
            items = body.get("items")
            if not isinstance(items, list):
                raise PermanentError(f"blikk: GET {path} answered a list without items")
            yield from (item for item in items if isinstance(item, dict))
            total_pages = body.get("totalPages")
            if not isinstance(total_pages, int) or page >= total_pages or not items:
                return
            page += 1


def json_body(response: httpx.Response, what: str) -> Mapping[str, Any]:
    """The body of a Blikk answer that must be a JSON object; PermanentError otherwise."""
    body = json_object_or_none(response)
    if body is None:
        raise PermanentError(f"blikk: {what} answered no JSON object: {excerpt(response.text)}")
    return body
