"""The Blikk connector: HTTP client (auth, pacing, Blikk's error bodies) and the Connector.

Every request -- token requests and look-ups included -- first takes a slot from the shared
Redis :class:`~clockify_relay.ratelimit.RateLimiter`, keyed by the app id, so all workers
together stay under Blikk's four requests per second. A 429 is honoured exactly: its
``waitInSeconds`` (or ``Retry-After``) becomes ``TransientError.retry_after`` and pushes the
shared schedule out, so no worker hammers Blikk while it is refusing.

Blikk answers 400 both when a time report does not exist and when it is attested or invoiced.
On a 400 to an update or a delete the connector reads the report to tell which: gone → a delete
is done and an update re-creates it; attested or invoiced → :class:`PermanentError` saying so.

Blikk documents a create's answer as "200 OK" with no body. When the answer carries no report
id, the report is looked up by its ``clockify:<entry id>`` marker; a 2xx is never taken to mean
"nothing was created".
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import redis

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.connectors.base import Booking, Connector
from clockify_relay.connectors.blikk import mapping
from clockify_relay.connectors.blikk.auth import AccessToken, TokenCache, parse_expires, scope_of
from clockify_relay.connectors.blikk.config import SECTION, BlikkConfig, parse_config
from clockify_relay.errors import ConfigurationError, PermanentError, RelayError, TransientError
from clockify_relay.http_client import (
    BaseClient,
    excerpt,
    json_object,
    json_object_or_none,
    parse_retry_after,
)
from clockify_relay.ratelimit import RateLimiter
from clockify_relay.redis_conn import Keys
from clockify_relay.settings import Settings
from clockify_relay.timeutil import owner_zone

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
            body = _json_object(response, f"GET {path}")
            items = body.get("items")
            if not isinstance(items, list):
                raise PermanentError(f"blikk: GET {path} answered a list without items")
            yield from (item for item in items if isinstance(item, dict))
            total_pages = body.get("totalPages")
            if not isinstance(total_pages, int) or page >= total_pages or not items:
                return
            page += 1


def _json_object(response: httpx.Response, what: str) -> Mapping[str, Any]:
    body = json_object_or_none(response)
    if body is None:
        raise PermanentError(f"blikk: {what} answered no JSON object: {excerpt(response.text)}")
    return body


def _created_id(response: httpx.Response) -> int | None:
    """The report id in a create's answer, or None (the doc shows no body at all)."""
    report_id = json_object(response).get("id")
    if isinstance(report_id, int) and not isinstance(report_id, bool):
        return report_id
    return None


def _report_id(remote_id: str) -> int:
    if not remote_id.isdigit():
        raise PermanentError(f"blikk: {remote_id!r} is not a Blikk time report id")
    return int(remote_id)


class BlikkConnector(Connector):
    """Books Clockify entries as Blikk time reports, one per local day."""

    name = "blikk"
    searchable = True

    def __init__(
        self,
        settings: Settings,
        section: Mapping[str, Any],
        redis_client: redis.Redis,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(settings, section, redis_client)
        self.config = parse_config(section)
        self.request_timeout = self.config.timeout
        self.rate_wait = self.config.rate_max_wait
        self.client = BlikkClient(
            self.config, redis_client, Keys(settings.key_prefix), transport=transport
        )

    def bookings(self, entry: TimeEntry) -> list[Booking]:
        """One report per local day in the owner's zone (see :mod:`.mapping`)."""
        return mapping.bookings(entry, self.config, owner_zone(entry, self.settings))

    def create(self, entry: TimeEntry, booking: Booking) -> str:
        """``POST /v1/Core/TimeReports``; the new report's id (from the answer, else found by
        its marker)."""
        response = self.client.call("POST", REPORTS_PATH, json=dict(booking.payload))
        report_id = _created_id(response)
        if report_id is not None:
            return str(report_id)
        # A 2xx without an id: the report was made. Errors from here on must leave the create
        # "pending" (outcome unknown), so a retry reconciles instead of booking it twice.
        what = (
            f"blikk: POST {REPORTS_PATH} answered {response.status_code} without a report id "
            f"and the report with marker {mapping.marker(entry.id)} on {booking.key}"
        )
        try:
            found = self.find(entry, booking)
        except RelayError as exc:
            raise TransientError(
                f"{what} could not be searched ({exc.message}); kept pending",
                status=exc.status,
                response_excerpt=exc.response_excerpt,
                retry_after=exc.retry_after if isinstance(exc, TransientError) else None,
                outcome_unknown=True,
            ) from None
        if found is None:
            raise TransientError(f"{what} is not listed yet; kept pending", outcome_unknown=True)
        return found

    def _existing(self, report_id: int) -> Mapping[str, Any] | None:
        """The report, or None when Blikk does not have it (it answers 400 for that)."""
        path = f"{REPORTS_PATH}/{report_id}"
        response = self.client.call("GET", path, allow_statuses=frozenset({400}))
        if response.status_code == 400:
            return None
        return _json_object(response, f"GET {path}")

    @staticmethod
    def _locked(report: Mapping[str, Any], report_id: int, action: str) -> PermanentError | None:
        if report.get("invoiceId") is not None:
            return PermanentError(
                f"blikk: cannot {action} time report {report_id}: it is invoiced "
                f"(invoice {report.get('invoiceId')}); change it in Blikk by hand"
            )
        if report.get("attestedDate"):
            return PermanentError(
                f"blikk: cannot {action} time report {report_id}: it is attested "
                f"({report.get('attestedDate')}); un-attest it in Blikk first"
            )
        return None

    def update(self, entry: TimeEntry, remote_id: str, booking: Booking) -> str:
        """``PUT``; a report Blikk no longer has is re-created (its new id is returned)."""
        report_id = _report_id(remote_id)
        path = f"{REPORTS_PATH}/{report_id}"
        response = self.client.call(
            "PUT", path, json=dict(booking.payload), allow_statuses=frozenset({400})
        )
        if response.status_code != 400:
            return remote_id
        existing = self._existing(report_id)
        if existing is None:
            log.info("blikk: time report %s is gone, re-creating it", report_id)
            return self.create(entry, booking)
        locked = self._locked(existing, report_id, "update")
        if locked is not None:
            raise locked
        raise PermanentError(
            f"blikk: PUT {path} → {self.client.describe_error(response)}",
            status=400,
            response_excerpt=excerpt(response.text),
        )

    def delete(self, entry: TimeEntry, remote_id: str) -> None:
        """``DELETE``; a report Blikk no longer has counts as deleted."""
        report_id = _report_id(remote_id)
        path = f"{REPORTS_PATH}/{report_id}"
        response = self.client.call("DELETE", path, allow_statuses=frozenset({400}))
        if response.status_code != 400:
            return
        existing = self._existing(report_id)
        if existing is None:
            return
        locked = self._locked(existing, report_id, "delete")
        if locked is not None:
            raise locked
        raise PermanentError(
            f"blikk: DELETE {path} → {self.client.describe_error(response)}",
            status=400,
            response_excerpt=excerpt(response.text),
        )

    def find(self, entry: TimeEntry, booking: Booking) -> str | None:
        """The report of this entry on the booking's day (by the ``internalComment`` marker)."""
        day = str(booking.payload.get("date", booking.key))[:10]
        user_id = booking.payload.get("userId")
        if not isinstance(user_id, int):
            raise ConfigurationError(
                f"blikk: booking of entry {entry.id} has no userId; map the user in "
                f"[{SECTION}.users]"
            )
        params = {"filter.userIds": str(user_id), "filter.from": day, "filter.to": day}
        matches = [
            item["id"]
            for item in self.client.paged(REPORTS_PATH, params)
            if mapping.has_marker(item.get("internalComment"), entry.id)
            and isinstance(item.get("id"), int)
        ]
        if len(matches) > 1:
            log.warning("blikk: %d reports carry entry %s on %s", len(matches), entry.id, day)
        return str(min(matches)) if matches else None

    def probe(self) -> str:
        """Fetch a token and read one page of users."""
        response = self.client.call("GET", "/v1/Admin/Users", params={"page": 1, "pageSize": 1})
        body = _json_object(response, "GET /v1/Admin/Users")
        return (
            f"blikk OK at {self.config.base_url}: app {self.config.app_id!r}, "
            f"{body.get('totalItemCount', '?')} users visible"
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
