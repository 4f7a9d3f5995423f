"""Clockify-native operator commands: ``webhooks register | list | rotate | logs``, ``redrive``
and ``backfill`` (README "Clockify-native operations").

Thin: arguments are parsed here; the work is in admin/webhooks.py, admin/redrive.py and
admin/backfill.py. They read Clockify with ``CLOCKIFY_API_KEY`` through the shared rate limiter
(``CLOCKIFY_API_RATE``) and write only to Redis: redrive and backfill enqueue, the workers make
every call to a target. Exit codes: 0 done, 1 a failure (Clockify, Redis, a limit), 2 bad usage
or configuration.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import click
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from clockify_relay.admin import backfill as backfill_module
from clockify_relay.admin import redrive as redrive_module
from clockify_relay.admin import webhooks as hooks
from clockify_relay.admin.cli import OUTPUT, echo_json, make_console
from clockify_relay.admin.service import OpsError, parse_when, shorten
from clockify_relay.cli_context import invocation
from clockify_relay.clockify.client import ClockifyClient
from clockify_relay.clockify.models import ROUTED_EVENTS
from clockify_relay.clockify.token_store import DEFAULT_GRACE_SECONDS, TokenStore
from clockify_relay.errors import ConfigurationError, RelayError
from clockify_relay.pipeline.runtime import Runtime

P = ParamSpec("P")
R = TypeVar("R")

WORKSPACE = click.option(
    "--workspace",
    metavar="ID",
    help="Clockify workspace (default: the one CLOCKIFY_WORKSPACE_IDS names, else the API "
    "key's default workspace)",
)
EVENT_TYPE = click.Choice(sorted(ROUTED_EVENTS))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    return table


def _fails_cleanly(func: Callable[P, R]) -> Callable[P, R]:
    """Redis, Clockify and configuration failures as one line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigurationError as exc:
            click.echo(f"configuration error: {exc}", err=True)
            raise SystemExit(2) from None
        except OpsError as exc:
            raise click.UsageError(str(exc)) from None
        except redis.RedisError as exc:
            # The class name only: a connection error's text can carry the Redis URL.
            click.echo(f"cannot use Redis ({type(exc).__name__}); is REDIS_URL right?", err=True)
            raise SystemExit(1) from None
        except (RelayError, hooks.WebhookLimitError) as exc:
            click.echo(str(exc), err=True)
            raise SystemExit(1) from None

    return wrapper


@dataclass
class Context:
    runtime: Runtime
    ops: hooks.WebhookOps


@contextmanager
def _context(workspace: str | None) -> Iterator[Context]:
    runtime = invocation().runtime
    settings = runtime.settings
    if not settings.clockify_api_key:
        raise ConfigurationError("CLOCKIFY_API_KEY is not set: these commands use Clockify's API")
    client = ClockifyClient(settings, runtime.redis)
    try:
        ws = hooks.resolve_workspace(settings, client, workspace)
        store = TokenStore(runtime.redis, settings.key_prefix)
        yield Context(runtime, hooks.WebhookOps(settings, client, store, ws))
    finally:
        client.close()


def when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(parse_when(value), UTC)


# --- webhooks --------------------------------------------------------------------------------


@click.group("webhooks")
def webhooks() -> None:
    """The relay's Clockify webhooks: register, list, rotate tokens, read delivery logs."""


@webhooks.command("register")
@click.option("--url", required=True, help="the relay's public webhook URL (…/webhooks/clockify)")
@click.option("--dry-run", is_flag=True, help="show what would be created; change nothing")
@WORKSPACE
@OUTPUT
@_fails_cleanly
def register_cmd(url: str, dry_run: bool, workspace: str | None, output: str) -> None:
    """Create the webhooks the enabled targets need (one per event type) and store their
    tokens (hashed) where the receiver reads them. Running it again creates nothing."""
    with _context(workspace) as ctx:
        rows = hooks.register(ctx.ops, ctx.runtime, url, dry_run=dry_run)
        if output == "json":
            echo_json({"workspace": ctx.ops.workspace_id, "webhooks": [r.to_json() for r in rows]})
            return
        if not rows:
            click.echo("no enabled target handles a Clockify event: nothing to register")
            return
        make_console().print(
            _table(
                f"webhooks of workspace {ctx.ops.workspace_id}",
                ["event type", "name", "action", "webhook id", "note"],
                [[r.event_type, r.name, r.action, r.webhook_id, r.note] for r in rows],
            )
        )


@webhooks.command("list")
@click.option("--url", help="where the webhooks should point (default: as registered)")
@WORKSPACE
@OUTPUT
@_fails_cleanly
def list_cmd(url: str | None, workspace: str | None, output: str) -> None:
    """The workspace's webhooks beside what the relay expects: missing, disabled, pointing
    elsewhere, token unknown to the relay. Exit 1 when an expected one is not ok."""
    with _context(workspace) as ctx:
        rows = hooks.list_webhooks(ctx.ops, ctx.runtime, url)
        if output == "json":
            echo_json({"workspace": ctx.ops.workspace_id, "webhooks": [r.to_json() for r in rows]})
        else:
            make_console().print(
                _table(
                    f"webhooks of workspace {ctx.ops.workspace_id}",
                    ["event type", "expected", "status", "webhook id", "name", "url", "enabled"],
                    [
                        [
                            r.event_type,
                            "yes" if r.expected else "no",
                            r.status,
                            r.webhook_id,
                            r.name,
                            r.url,
                            r.enabled,
                        ]
                        for r in rows
                    ],
                )
            )
        if any(r.expected and r.status != "ok" for r in rows):
            raise SystemExit(1)


@webhooks.command("rotate")
@click.argument("event_types", nargs=-1, type=EVENT_TYPE)
@click.option(
    "--grace",
    type=float,
    default=DEFAULT_GRACE_SECONDS,
    show_default=True,
    envvar="RELAY_WEBHOOK_TOKEN_GRACE",
    help="seconds the old token stays accepted",
)
@click.option("--force", is_flag=True, help="rotate even where CLOCKIFY_WEBHOOK_TOKENS binds it")
@WORKSPACE
@OUTPUT
@_fails_cleanly
def rotate_cmd(
    event_types: tuple[str, ...], grace: float, force: bool, workspace: str | None, output: str
) -> None:
    """Generate new tokens in Clockify for the relay's webhooks (all, or those EVENT_TYPEs);
    the receiver accepts each new token at once and the old one for --grace seconds more."""
    with _context(workspace) as ctx:
        rows = hooks.rotate(ctx.ops, list(event_types), grace=grace, force=force)
        if output == "json":
            echo_json({"workspace": ctx.ops.workspace_id, "rotated": [r.to_json() for r in rows]})
            return
        make_console().print(
            _table(
                "token rotation",
                ["event type", "webhook id", "action", "note"],
                [[r.event_type, r.webhook_id, r.action, r.note] for r in rows],
            )
        )


@webhooks.command("logs")
@click.option("--since", default="2h", show_default=True, help="ISO date/datetime or age (2h)")
@click.option("--until", help="ISO date/datetime or age")
@click.option(
    "--status",
    type=click.Choice(["all", "failed", "succeeded"], case_sensitive=False),
    default="all",
    show_default=True,
)
@click.option("--event-type", "event_types", multiple=True, type=EVENT_TYPE)
@WORKSPACE
@OUTPUT
@_fails_cleanly
def logs_cmd(
    since: str,
    until: str | None,
    status: str,
    event_types: tuple[str, ...],
    workspace: str | None,
    output: str,
) -> None:
    """Clockify's delivery log of the relay's webhooks (kept by Clockify for 7 days)."""
    with _context(workspace) as ctx:
        rows = hooks.logs(
            ctx.ops,
            since=when(since, "--since"),
            until=when(until, "--until"),
            status=status.upper(),
            event_types=event_types,
        )
        if output == "json":
            echo_json([r.to_json() for r in rows])
            return
        make_console().print(
            _table(
                f"webhook deliveries of workspace {ctx.ops.workspace_id}",
                ["responded at", "event type", "status", "request body", "response"],
                [
                    [
                        r.responded_at,
                        r.event_type,
                        r.status_code,
                        shorten(r.request_body, 80),
                        shorten(r.response_body, 40),
                    ]
                    for r in rows
                ],
            )
        )


# --- redrive ---------------------------------------------------------------------------------


@click.command("redrive")
@click.option("--since", required=True, help="ISO date/datetime or age (2h, 3d)")
@click.option("--until", help="ISO date/datetime or age")
@click.option("--event-type", "event_types", multiple=True, type=EVENT_TYPE)
@WORKSPACE
@OUTPUT
@_fails_cleanly
def redrive_cmd(
    since: str, until: str | None, event_types: tuple[str, ...], workspace: str | None, output: str
) -> None:
    """Ingest again every webhook delivery Clockify logged as not answered 2xx (a 503 while
    Redis was down, a 401 before a token was stored), with the receiver's own dedup and
    sequencing: a second redrive queues nothing. Only enqueues; the workers deliver."""
    start = when(since, "--since")
    assert start is not None
    if start < datetime.now(UTC) - timedelta(days=redrive_module.LOG_RETENTION_DAYS):
        click.echo(
            f"warning: --since is more than {redrive_module.LOG_RETENTION_DAYS} days ago; "
            "Clockify keeps webhook logs 7 days, older deliveries cannot be redriven "
            "(backfill can restore those entries)",
            err=True,
        )
    with _context(workspace) as ctx:
        rows = redrive_module.redrive(
            ctx.ops, since=start, until=when(until, "--until"), event_types=event_types
        )
    counts = redrive_module.summary(rows)
    if output == "json":
        echo_json({"summary": counts, "deliveries": [r.to_json() for r in rows]})
        return
    if rows:
        make_console().print(
            _table(
                "redriven deliveries",
                ["responded at", "event type", "entry id", "was", "outcome", "reason"],
                [
                    [r.responded_at, r.event_type, r.entry_id, r.status_code, r.outcome, r.reason]
                    for r in rows
                ],
            )
        )
    click.echo(", ".join(f"{k}: {v}" for k, v in counts.items()))


# --- backfill --------------------------------------------------------------------------------


@click.command("backfill")
@click.option("--since", required=True, help="ISO date/datetime or age (3d)")
@click.option("--until", help="ISO date/datetime or age (default: now)")
@click.option("--user", "user_id", metavar="ID", help="only this Clockify user")
@WORKSPACE
@OUTPUT
@_fails_cleanly
def backfill_cmd(
    since: str, until: str | None, user_id: str | None, workspace: str | None, output: str
) -> None:
    """Bring the targets in line with Clockify over a period: entries edited or created while
    webhooks were missed are queued as updates, entries deleted meanwhile as deletes; entries
    in sync are left alone. Only enqueues; safe to re-run or interrupt."""
    start = when(since, "--since")
    end = when(until, "--until") or datetime.now(UTC)
    assert start is not None
    if end <= start:
        raise click.UsageError("--until must be later than --since")
    with _context(workspace) as ctx, _progress(output == "table") as tick:
        report = backfill_module.backfill(
            ctx.ops, ctx.runtime, since=start, until=end, user=user_id, progress=tick
        )
    if output == "json":
        echo_json(report.to_json())
        return
    make_console().print(
        _table(
            f"backfill {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC",
            ["", "entries"],
            [[kind, count] for kind, count in report.counts.items()],
        )
    )
    for item in report.items:
        if item["result"] == "failed":
            click.echo(f"failed: {item['entry_id']} ({item['user_id']}): {item['reason']}")


@contextmanager
def _progress(enabled: bool) -> Iterator[backfill_module.Progress]:
    """A rich progress bar over users, on a terminal only."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda what, total: None
        return
    with Progress(TextColumn("users"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task("users", total=None)

        def tick(what: str, total: int | None) -> None:
            if what == "users":
                bar.update(task, total=total)
            else:
                bar.advance(task)

        yield tick


COMMANDS: tuple[click.Command, ...] = (webhooks, redrive_cmd, backfill_cmd)


def register_commands(group: click.Group) -> None:
    """Add these commands to the ``clockify-relay`` group (cli.py)."""
    for command in COMMANDS:
        group.add_command(command)
