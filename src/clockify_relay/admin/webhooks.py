"""The relay's Clockify webhooks, managed through Clockify's REST API (``clockify-relay webhooks
register | list | rotate | logs``).

One webhook per event type some enabled target handles, for the whole workspace, named
``clockify-relay <short event name>`` (Clockify allows 2 to 30 characters, too few for
``APPROVAL_REQUEST_STATUS_UPDATED``). A webhook is the relay's when its name, URL and event match;
that is how ``register`` stays idempotent. Each webhook's ``authToken`` is stored as a SHA-256
digest bound to its event type (clockify/token_store.py), where the receiver reads accepted
tokens; ``CLOCKIFY_WEBHOOK_TOKENS`` keeps working and wins for the event types it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clockify_relay.clockify.client import ClockifyClient
from clockify_relay.clockify.models import ROUTED_EVENTS
from clockify_relay.clockify.token_store import TokenStore, token_digest
from clockify_relay.errors import ConfigurationError, PermanentError
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.settings import Settings

NAME_PREFIX = "clockify-relay "
# Short names: Clockify's limit of 30 characters leaves 15 after the prefix.
SHORT_NAMES = {
    "NEW_TIME_ENTRY": "new entry",
    "TIME_ENTRY_UPDATED": "entry updated",
    "TIME_ENTRY_DELETED": "entry deleted",
    "NEW_TIMER_STARTED": "timer started",
    "TIMER_STOPPED": "timer stopped",
    "TIME_ENTRY_RESTORED": "entry restored",
    "TIME_ENTRY_SPLIT": "entry split",
    "NEW_APPROVAL_REQUEST": "new approval",
    "APPROVAL_REQUEST_STATUS_UPDATED": "approval status",
}
assert set(SHORT_NAMES) == ROUTED_EVENTS
EVENT_ORDER = tuple(SHORT_NAMES)
# The documented limits ("Workspace admins can create up to 10 webhooks each, with a total of
# 100 webhooks allowed per workspace").
PER_ADMIN = 10
PER_WORKSPACE = 100


class WebhookLimitError(Exception):
    """Clockify's webhook limits leave no room for what the relay needs."""


def webhook_name(event_type: str) -> str:
    return NAME_PREFIX + SHORT_NAMES[event_type]


def needed_events(runtime: Runtime) -> list[str]:
    """The routed event types some enabled target handles (connectors' spec ``events``)."""
    return [e for e in EVENT_ORDER if runtime.enabled_targets(e)]


def resolve_workspace(settings: Settings, client: ClockifyClient, given: str | None) -> str:
    """``--workspace``, else the one CLOCKIFY_WORKSPACE_IDS names, else the key's default."""
    if given:
        return given
    if len(settings.workspace_ids) == 1:
        return next(iter(settings.workspace_ids))
    if len(settings.workspace_ids) > 1:
        raise ConfigurationError(
            "CLOCKIFY_WORKSPACE_IDS names several workspaces: choose one with --workspace"
        )
    user = client.current_user()
    workspace = user.get("activeWorkspace") or user.get("defaultWorkspace")
    if not isinstance(workspace, str) or not workspace:
        raise ConfigurationError("the API key's user has no workspace: give --workspace")
    return workspace


def is_ours(hook: dict[str, Any], event_type: str, url: str | None = None) -> bool:
    return (
        hook.get("webhookEvent") == event_type
        and hook.get("name") == webhook_name(event_type)
        and (url is None or hook.get("url") == url)
    )


@dataclass
class WebhookOps:
    """What every webhook operation needs: the settings, the Clockify client (paced by the
    shared rate limiter), the token store and the workspace."""

    settings: Settings
    client: ClockifyClient
    store: TokenStore
    workspace_id: str

    def env_digests(self, event_type: str) -> set[str]:
        """Digests of the CLOCKIFY_WEBHOOK_TOKENS tokens valid for ``event_type``."""
        return {
            token_digest(t.token.reveal())
            for t in self.settings.webhook_tokens
            if t.event_type in (None, event_type)
        }

    def env_binds(self, event_type: str) -> bool:
        return any(t.event_type == event_type for t in self.settings.webhook_tokens)

    def accepts(self, event_type: str, token: str) -> bool:
        """Whether the receiver would accept ``token`` for ``event_type`` now."""
        digest = token_digest(token)
        if digest in self.env_digests(event_type):
            return True
        return not self.env_binds(event_type) and self.store.knows(event_type, token)


# --- register --------------------------------------------------------------------------------


@dataclass
class RegisterRow:
    event_type: str
    name: str
    action: str  # created | exists | would create
    webhook_id: str | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "name": self.name,
            "action": self.action,
            "webhook_id": self.webhook_id,
            "note": self.note,
        }


def register(ops: WebhookOps, runtime: Runtime, url: str, *, dry_run: bool) -> list[RegisterRow]:
    """Create the webhooks the enabled targets need that do not exist yet (by name, URL and
    event) and store each new token's digest the moment Clockify returns it.

    Raises :class:`WebhookLimitError` before creating anything when the documented limits leave
    too little room (the admin's 10, the workspace's 100), or when Clockify refuses a create.
    """
    hooks = ops.client.list_webhooks(ops.workspace_id)
    rows: list[RegisterRow] = []
    missing: list[str] = []
    for event_type in needed_events(runtime):
        found = next((h for h in hooks if is_ours(h, event_type, url)), None)
        if found is None:
            missing.append(event_type)
            continue
        note = ""
        token = found.get("authToken")
        if not dry_run:
            ops.store.remember_webhook(event_type, found)
            if isinstance(token, str) and token and not ops.store.knows(event_type, token):
                ops.store.add(event_type, token)
                note = "token stored"
        if found.get("enabled") is False:
            note = (note + "; " if note else "") + "DISABLED in Clockify: enable it there"
        rows.append(RegisterRow(event_type, webhook_name(event_type), "exists", found["id"], note))
    if missing:
        me = ops.client.current_user().get("id")
        mine = sum(1 for h in hooks if h.get("userId") == me)
        room = min(PER_ADMIN - mine, PER_WORKSPACE - len(hooks))
        if len(missing) > room:
            raise WebhookLimitError(
                f"Clockify's webhook limit is in the way: {len(missing)} webhook(s) needed "
                f"({', '.join(missing)}) but room for {max(room, 0)} — an admin may create up "
                f"to {PER_ADMIN} (this key's user has {mine}) and a workspace holds at most "
                f"{PER_WORKSPACE} (it has {len(hooks)}). Delete unused webhooks in Clockify, or "
                "register with another admin's API key; nothing was created"
            )
    for event_type in missing:
        name = webhook_name(event_type)
        if dry_run:
            rows.append(RegisterRow(event_type, name, "would create"))
            continue
        try:
            created = ops.client.create_webhook(ops.workspace_id, name, url, event_type)
        except PermanentError as exc:
            raise WebhookLimitError(
                f"Clockify refused to create the {event_type} webhook ({exc}); created so far: "
                f"{', '.join(r.event_type for r in rows if r.action == 'created') or 'none'}"
            ) from None
        token = created.get("authToken")
        if isinstance(token, str) and token:
            ops.store.add(event_type, token)  # before anything else: Clockify may send now
        ops.store.remember_webhook(event_type, created)
        rows.append(RegisterRow(event_type, name, "created", created.get("id")))
    for row in rows:
        if ops.env_binds(row.event_type):
            row.note = (row.note + "; " if row.note else "") + (
                "CLOCKIFY_WEBHOOK_TOKENS binds this event type and wins: remove it there for "
                "the stored token to count"
            )
    return rows


# --- list ------------------------------------------------------------------------------------


@dataclass
class ListRow:
    event_type: str
    expected: bool
    status: str  # ok | missing | disabled | elsewhere | token unknown | not needed | other
    webhook_id: str | None = None
    name: str | None = None
    url: str | None = None
    enabled: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "expected": self.expected,
            "status": self.status,
            "webhook_id": self.webhook_id,
            "name": self.name,
            "url": self.url,
            "enabled": self.enabled,
        }


def list_webhooks(ops: WebhookOps, runtime: Runtime, url: str | None = None) -> list[ListRow]:
    """Every webhook of the workspace beside what the relay expects. ``url`` is where they
    should point (default: the URL ``register`` last used)."""
    hooks = ops.client.list_webhooks(ops.workspace_id)
    registered = ops.store.webhooks()
    rows: list[ListRow] = []
    seen: set[str] = set()
    for event_type in needed_events(runtime):
        mine = registered.get(event_type, {})
        want_url = url or mine.get("url")
        candidates = [h for h in hooks if h.get("id") == mine.get("id")] or [
            h for h in hooks if is_ours(h, event_type)
        ]
        hook = next((h for h in candidates if want_url is None or h.get("url") == want_url), None)
        hook = hook or (candidates[0] if candidates else None)
        if hook is None:
            rows.append(ListRow(event_type, True, "missing", url=want_url))
            continue
        seen.add(str(hook.get("id")))
        token = hook.get("authToken")
        if hook.get("enabled") is False:
            status = "disabled"
        elif want_url is not None and hook.get("url") != want_url:
            status = f"elsewhere (relay expects {want_url})"
        elif not isinstance(token, str) or not ops.accepts(event_type, token):
            status = "token unknown to the relay"
        else:
            status = "ok"
        rows.append(_row(hook, event_type, True, status))
    for hook in hooks:
        if str(hook.get("id")) in seen:
            continue
        event_type = str(hook.get("webhookEvent"))
        ours = event_type in SHORT_NAMES and is_ours(hook, event_type)
        rows.append(_row(hook, event_type, False, "not needed" if ours else "other"))
    return rows


def _row(hook: dict[str, Any], event_type: str, expected: bool, status: str) -> ListRow:
    return ListRow(
        event_type,
        expected,
        status,
        webhook_id=hook.get("id"),
        name=hook.get("name"),
        url=hook.get("url"),
        enabled=hook.get("enabled"),
    )


# --- rotate ----------------------------------------------------------------------------------


@dataclass
class RotateRow:
    event_type: str
    webhook_id: str | None
    action: str  # rotated | skipped
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "webhook_id": self.webhook_id,
            "action": self.action,
            "note": self.note,
        }


def rotate(
    ops: WebhookOps, event_types: Sequence[str], *, grace: float, force: bool = False
) -> list[RotateRow]:
    """ "Generate new token" for the relay's webhook of each event type (all registered when
    none is given); each new token's digest is stored the moment Clockify returns it, and the
    type's previous tokens stay accepted ``grace`` seconds more (Clockify has invalidated them
    at once, but a delivery signed with one may still be on its way)."""
    registered = ops.store.webhooks()
    rows: list[RotateRow] = []
    for event_type in event_types or [e for e in EVENT_ORDER if e in registered]:
        hook = registered.get(event_type)
        if hook is None or not hook.get("id"):
            rows.append(RotateRow(event_type, None, "skipped", "not registered by the relay"))
            continue
        if ops.env_binds(event_type) and not force:
            rows.append(
                RotateRow(
                    event_type,
                    hook["id"],
                    "skipped",
                    "CLOCKIFY_WEBHOOK_TOKENS binds this event type and wins over the store: a "
                    "new token would be refused (remove it there, or --force)",
                )
            )
            continue
        answer = ops.client.generate_webhook_token(ops.workspace_id, hook["id"])
        token = answer.get("authToken")
        if not isinstance(token, str) or not token:
            rows.append(RotateRow(event_type, hook["id"], "skipped", "Clockify sent no token"))
            continue
        ops.store.rotate(event_type, token, grace)
        rows.append(
            RotateRow(event_type, hook["id"], "rotated", f"old token accepted {grace:g}s more")
        )
    return rows


# --- logs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRow:
    event_type: str
    webhook_id: str
    log_id: str
    status_code: int
    responded_at: str
    request_body: str
    response_body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def when(self) -> datetime:
        try:
            return datetime.fromisoformat(self.responded_at.replace("Z", "+00:00"))
        except ValueError:
            return datetime.min.replace(tzinfo=UTC)

    def to_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "webhook_id": self.webhook_id,
            "log_id": self.log_id,
            "status_code": self.status_code,
            "responded_at": self.responded_at,
            "request_body": self.request_body,
            "response_body": self.response_body,
        }


def relay_webhooks(ops: WebhookOps) -> list[tuple[str, str]]:
    """``(event type, webhook id)`` of the relay's webhooks: those ``register`` stored, else
    the workspace's webhooks named as the relay names them."""
    registered = ops.store.webhooks()
    pairs = [(e, str(h["id"])) for e, h in registered.items() if h.get("id")]
    if pairs:
        return sorted(pairs, key=lambda p: EVENT_ORDER.index(p[0]) if p[0] in EVENT_ORDER else 99)
    return [
        (str(h["webhookEvent"]), str(h["id"]))
        for h in ops.client.list_webhooks(ops.workspace_id)
        if h.get("webhookEvent") in SHORT_NAMES and is_ours(h, str(h["webhookEvent"]))
    ]


def logs(
    ops: WebhookOps,
    *,
    since: datetime | None,
    until: datetime | None = None,
    status: str = "ALL",
    event_types: Iterable[str] = (),
) -> list[LogRow]:
    """Clockify's delivery log of the relay's webhooks, oldest first."""
    wanted = set(event_types)
    rows: list[LogRow] = []
    for event_type, webhook_id in relay_webhooks(ops):
        if wanted and event_type not in wanted:
            continue
        for entry in ops.client.webhook_logs(
            ops.workspace_id, webhook_id, since=since, until=until, status=status
        ):
            rows.append(
                LogRow(
                    event_type,
                    webhook_id,
                    str(entry.get("id")),
                    int(entry.get("statusCode") or 0),
                    str(entry.get("respondedAt") or ""),
                    str(entry.get("requestBody") or ""),
                    str(entry.get("responseBody") or ""),
                )
            )
    rows.sort(key=lambda r: r.when)
    return rows
