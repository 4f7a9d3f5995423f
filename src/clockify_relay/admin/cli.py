"""Operator commands: ``check`` (configuration, Redis, targets), ``dlq`` (dead letters),
``events`` (traces) and ``admin-token``.

Thin on purpose: arguments are parsed here, the work is done in :mod:`.service` (the
admin HTTP API calls the same functions). Human output uses rich; ``-o json`` prints plain JSON
on stdout. Exit codes: 0 done, 1 unknown id / failed replay / Redis unreachable, 2 bad usage.
"""

from __future__ import annotations

import functools
import getpass
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import click
import orjson
import redis
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from clockify_relay.admin import checks, service, tokens
from clockify_relay.cli_context import invocation
from clockify_relay.errors import ConfigurationError
from clockify_relay.pipeline.dlq import DeadLetter
from clockify_relay.pipeline.runtime import Runtime

P = ParamSpec("P")
R = TypeVar("R")

OUTPUT = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts",
)


def _filter_options(func: Callable[P, R]) -> Callable[P, R]:
    """--target/--event-type/--since/--until, shared by list, replay --all and purge --all."""
    for option in reversed(
        [
            click.option("--target", help="only this target (a target name, or route)"),
            click.option("--event-type", help="only this Clockify event type"),
            click.option(
                "--since",
                metavar="WHEN",
                help="last failure at or after WHEN: ISO date/datetime or age (2h, 3d)",
            ),
            click.option(
                "--until",
                metavar="WHEN",
                help="last failure at or before WHEN: ISO date/datetime or age (2h, 3d)",
            ),
        ]
    ):
        func = option(func)
    return func


def make_console(stderr: bool = False) -> Console:
    """A console for human output (stderr: progress bars, so stdout stays clean for -o json)."""
    # Built per call so it writes to the stream click has in place (CliRunner swaps them).
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def echo_json(data: Any) -> None:
    """``-o json`` output: indented JSON on stdout."""
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _fail(message: str) -> None:
    """Print ``message`` on stderr and exit with status 1."""
    click.echo(message, err=True)
    raise SystemExit(1)


def _handles_redis(func: Callable[P, R]) -> Callable[P, R]:
    """Turn an unreachable Redis into one clear line and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except redis.RedisError as exc:
            # The class name only: a connection error's text can carry the Redis URL (password).
            _fail(f"cannot use Redis ({type(exc).__name__}); is REDIS_URL right and Redis up?")
            raise AssertionError("unreachable") from None

    return wrapper


def _letter_filter(
    target: str | None, event_type: str | None, since: str | None, until: str | None
) -> service.LetterFilter:
    try:
        return service.LetterFilter.parse(target, event_type, since, until)
    except service.OpsError as exc:
        raise click.UsageError(str(exc)) from None


def _has_filters(*values: str | None) -> bool:
    return any(v is not None for v in values)


def _letters_table(
    letters: Sequence[DeadLetter], title: str | None = None, width: int | None = None
) -> RenderableType:
    """Dead letters, two lines each: the facts in aligned columns, then the error (its kind
    first) indented below, shortened to the width left. Ids are never wrapped or cut: the
    columns need 100 characters at most (the longest event type, ``14d ago``), so a
    100-column terminal shows every id whole; only the error line is shortened."""
    width = width or make_console().width
    now = time.time()
    headers = ["id", "target", "event type", "entry id", "tries", "failed"]
    rows: list[tuple[list[str], str]] = []
    for letter in letters:
        summary = service.letter_summary(letter)
        cells = [
            str(summary["id"]),
            str(summary["target"]),
            str(summary["event_type"]),
            str(summary["entry_id"]),
            str(summary["attempts"]),
            _age(now - letter.last_failure),
        ]
        rows.append((cells, f"{summary['error_kind']}: {summary['error'] or ''}"))
    widths = [max([len(h)] + [len(cells[i]) for cells, _ in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(w) if header == "tries" else cell.ljust(w)
            for header, cell, w in zip(headers, cells, widths, strict=True)
        ]
        return "  ".join(padded).rstrip()

    head = line(headers)
    parts: list[RenderableType] = []
    if title:
        parts.append(Text(title, style="bold"))
    parts += [Text(head, style="bold"), Text("─" * min(len(head), width))]
    for cells, error in rows:
        # Text(), not str: error messages may contain [brackets] that rich would read as markup.
        parts.append(Text(line(cells)))
        parts.append(Text("  " + service.shorten(error, max(20, width - 2)), style="dim"))
    return Group(*parts)


def _age(seconds: float) -> str:
    """How long ago, in the units ``--since`` takes (``45s ago``, ``3h ago``, ``12d ago``,
    ``15w ago`` from 100 days on), at most 7 characters for 99 weeks."""
    seconds = max(0, int(seconds))
    if seconds >= 100 * 86400:
        return f"{seconds // (7 * 86400)}w ago"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


# --- check ----------------------------------------------------------------------------------


@click.command()
@click.option("--probe", is_flag=True, help="also call each enabled target with its credentials")
@click.option(
    "--lookups", is_flag=True, help="list Blikk users, projects, activities, … for mapping"
)
@OUTPUT
def check(probe: bool, lookups: bool, output: str) -> None:
    """Validate the configuration and Redis (and optionally probe every enabled target).

    Exit status 1 when anything is wrong, 2 when the configuration cannot be read or has
    problems (every one is listed).
    """
    try:
        rt = invocation().runtime
    except ConfigurationError as exc:
        # Every problem load_settings found (SettingsError), or the one that stopped it.
        problems = list(getattr(exc, "problems", ())) or [exc.message]
        if output == "json":
            echo_json({"ok": False, "error": f"configuration error: {exc}", "problems": problems})
        elif len(problems) == 1:
            click.echo(f"configuration error: {problems[0]}")
        else:
            click.echo(f"configuration error: {len(problems)} problems (nothing else checked):")
            for problem in problems:
                click.echo(f"  {problem}")
        raise SystemExit(2) from None
    report = checks.check(rt, probe=probe, lookups=lookups, redis_source=invocation().redis_source)
    if output == "json":
        echo_json(report.to_json())
    else:
        _print_check(report)
    if not report.ok:
        raise SystemExit(1)


def _print_check(report: checks.CheckReport) -> None:
    # Plain lines (click.echo: rich would wrap long URLs); rich only for the look-up tables.
    source = {
        "REDIS_URL": "",
        "default": ", the default: REDIS_URL is not set",
    }.get(report.redis_source, f", found in {report.redis_source}")
    if report.redis_error is None:
        click.echo(
            f"redis: {'ok' if not report.redis_problems else 'WRONG'} ({report.redis_at}{source})"
        )
        if report.redis_config:
            click.echo(
                "  " + ", ".join(f"{name} {value}" for name, value in report.redis_config.items())
            )
        for problem in report.redis_problems:
            click.echo(f"  error: {problem}")
    else:
        click.echo(
            f"redis: UNREACHABLE at {report.redis_at} ({report.redis_error}): nothing can be "
            "queued or delivered"
        )
    replication = report.replication
    if replication is not None:
        click.echo(
            f"replication: {'ok' if replication.get('ok') else 'WRONG'} ({replication['mode']}, "
            f"master {replication.get('master') or '?'})"
        )
        for problem in replication.get("problems", []):
            click.echo(f"  error: {problem}")
    if not report.webhooks_configured:
        click.echo(
            "webhooks: NOT CONFIGURED - set CLOCKIFY_WEBHOOK_TOKENS and/or CLOCKIFY_ADDON_KEY, "
            "or run `clockify-relay webhooks register`"
        )
    else:
        click.echo(
            f"webhooks: {report.webhook_tokens} token(s)"
            + (f", {report.stored_tokens} stored by `webhooks`" if report.stored_tokens else "")
            + (", add-on JWT verification on" if report.addon_jwt else "")
        )
    click.echo(f"targets enabled: {', '.join(t.target for t in report.targets) or 'NONE'}")
    for result in report.targets:
        if result.ok:
            click.echo(f"  {result.target}: {result.message}")
        else:
            click.echo(f"  {result.target}: {result.error_kind}: {result.message}")
    if report.worker_error is not None:
        click.echo(f"worker: WOULD NOT START - {report.worker_error}")
    for error in report.errors:
        click.echo(f"error: {error}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}")
    for note in report.notes:
        click.echo(f"note: {note}")
    for result in report.targets:
        for kind, rows in (result.lookups or {}).items():
            make_console().print(_lookup_table(f"{result.target} {kind.replace('_', ' ')}", rows))


def _lookup_table(title: str, rows: Sequence[dict[str, Any]]) -> Table:
    """One registry as a table: the id to put in the config beside the name people know."""
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["id", "name"]
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column == "id" else "left", overflow="fold")
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, bool):
                value = "yes" if value else "no"
            # Text(), not str: a name may contain [brackets] that rich would read as markup.
            cells.append(Text("" if value is None else str(value)))
        table.add_row(*cells)
    return table


# --- dlq ------------------------------------------------------------------------------------


@click.group()
def dlq() -> None:
    """Dead letters: deliveries that failed for good (list, show, replay, purge)."""


@dlq.command("list")
@_filter_options
@OUTPUT
@_handles_redis
def dlq_list(
    target: str | None, event_type: str | None, since: str | None, until: str | None, output: str
) -> None:
    """List dead letters, oldest last failure first."""
    flt = _letter_filter(target, event_type, since, until)
    letters = service.list_letters(invocation().runtime, flt)
    if output == "json":
        echo_json([service.letter_summary(letter) for letter in letters])
        return
    console = make_console()
    if not letters:
        console.print("no dead letters match")
        return
    console.print(_letters_table(letters, f"{len(letters)} dead letter(s)"))


@dlq.command("show")
@click.argument("letter_id", metavar="ID")
@OUTPUT
@_handles_redis
def dlq_show(letter_id: str, output: str) -> None:
    """Show one dead letter whole: error, history of failures and the event envelope."""
    try:
        letter = service.get_letter(invocation().runtime, letter_id)
    except service.NotFound as exc:
        _fail(str(exc))
        return
    detail = service.letter_detail(letter)
    if output == "json":
        echo_json(detail)
        return
    console = make_console()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    for label, value in (
        ("id", letter.id),
        ("target", letter.target),
        ("event id", letter.event_id),
        ("event type", letter.event_type),
        ("entry id", letter.entity_id),
        ("error kind", letter.error_kind),
        ("error", letter.error),
        ("status", letter.status if letter.status is not None else "-"),
        ("attempts", letter.attempts),
        ("first failure", detail["first_failure_at"]),
        ("last failure", detail["last_failure_at"]),
    ):
        facts.add_row(label, Text(str(value)))
    console.print(facts)
    history = Table(title="failures (most recent last)")
    for column in ("at", "kind", "status", "error"):
        history.add_column(column, overflow="fold")
    for item in detail["history"]:
        history.add_row(
            *(
                Text(str(v))
                for v in (
                    item.get("at_iso"),
                    item.get("kind"),
                    item.get("status") if item.get("status") is not None else "-",
                    item.get("error"),
                )
            )
        )
    console.print(history)
    if letter.error_kind == "UnknownOutcomeError":
        console.print(
            Text(
                "unknown outcome: check the target for this entry, then replay with --force "
                "if it is not there",
                style="yellow",
            )
        )
    console.print(Text("envelope:", style="bold"))
    console.print_json(data=letter.envelope)


_STATE_STYLE = {
    "delivered": "green",
    "queued": "cyan",
    "retrying": "yellow",
    "held": "yellow",
    "failed": "red",
}


def _summary_table(results: Sequence[service.ReplayResult], dry_run: bool) -> Table:
    table = Table(title="dry run: nothing queued" if dry_run else "replay summary")
    table.add_column("id", no_wrap=True)
    table.add_column("target", no_wrap=True)
    table.add_column("event type", overflow="ellipsis", max_width=22)
    table.add_column("state", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for result in results:
        if not result.found:
            state = Text("not found", style="red")
        elif dry_run:
            state = Text("would queue", style="cyan")
        else:
            label = result.state or "done"
            state = Text(label, style=_STATE_STYLE.get(label, ""))
        table.add_row(
            Text(result.id),
            Text(result.target or "-"),
            Text(result.event_type or "-"),
            state,
            Text(result.message),
        )
    return table


@dlq.command("replay")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="every dead letter matching the filters")
@_filter_options
@click.option("--dry-run", is_flag=True, help="show what would happen; change nothing")
@click.option(
    "--force",
    is_flag=True,
    help="for 'unknown outcome' letters, after you checked the target: create again",
)
@click.option(
    "--wait/--no-wait",
    default=None,
    help="follow the replays until each is delivered, failed again or held "
    "[default: on a terminal]",
)
@click.option(
    "--timeout", default=300.0, show_default=True, help="seconds --wait follows the replays"
)
@OUTPUT
@_handles_redis
def dlq_replay(
    ids: tuple[str, ...],
    all_: bool,
    target: str | None,
    event_type: str | None,
    since: str | None,
    until: str | None,
    dry_run: bool,
    force: bool,
    wait: bool | None,
    timeout: float,
    output: str,
) -> None:
    """Queue dead letters for the workers to deliver again.

    Needs only Redis: the workers, which hold the targets' credentials, make the calls. A
    letter leaves the dead-letter queue when a worker has delivered it; one that fails again
    stays, with the new failure added to its history. Exit status 1 when an id is unknown or,
    with --wait, a replay failed again or did not finish in time.
    """
    if bool(ids) == all_:
        raise click.UsageError("give dead letter ids, or --all (with optional filters)")
    if ids and _has_filters(target, event_type, since, until):
        raise click.UsageError("--target/--event-type/--since/--until go with --all")
    flt = _letter_filter(target, event_type, since, until) if all_ else None
    rt = invocation().runtime
    try:
        letters, missing = service.select_letters(rt, list(ids), flt, force=force)
    except service.OpsError as exc:
        raise click.UsageError(str(exc)) from None
    if len(ids) == 1 and missing and not dry_run:
        _fail(f"no dead letter with id {ids[0]!r}")
    results = service.replay_many(rt, letters, force=force, dry_run=dry_run, by=_operator())
    follow = sys.stdout.isatty() if wait is None else wait
    if follow and not dry_run and any(r.state for r in results):
        results = _follow(rt, results, timeout, quiet=output == "json")
    results += service.missing_results(missing)
    unsettled = follow and any(r.state in ("queued", "retrying") for r in results)
    failed = [r for r in results if not r.ok]
    if output == "json":
        echo_json(
            {
                "dry_run": dry_run,
                "results": [r.to_json() for r in results],
                "queued": sum(r.message_id is not None for r in results),
                "delivered": sum(r.state == "delivered" for r in results),
                "failed": len(failed),
            }
        )
    elif not results:
        make_console().print("no dead letters match")
    else:
        console = make_console()
        console.print(_summary_table(results, dry_run))
        if not dry_run:
            counts = Counter(r.state or "-" for r in results if r.found)
            console.print(", ".join(f"{state}: {n}" for state, n in sorted(counts.items())))
        if unsettled:
            console.print(
                "some replays were not finished when --timeout ran out; they go on in the "
                "workers: `clockify-relay dlq list` shows what is left"
            )
    if failed or unsettled:
        raise SystemExit(1)


def _operator() -> str:
    """Who runs the CLI, for the audit trail of replays and pauses."""
    return f"cli:{getpass.getuser()}"


def _follow(
    rt: Runtime, results: list[service.ReplayResult], timeout: float, quiet: bool
) -> list[service.ReplayResult]:
    """Follow replays with a progress bar on stderr (stdout stays clean for -o json)."""
    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[states]}"),
        console=make_console(stderr=True),
        disable=quiet,
    )
    followed = [r for r in results if r.state]
    with progress:
        task = progress.add_task("replay", total=len(followed), states="")

        def update(current: list[service.ReplayResult]) -> None:
            states = Counter(r.state for r in current if r.state)
            settled = sum(n for state, n in states.items() if state in service.SETTLED)
            text = " ".join(f"{state} {n}" for state, n in sorted(states.items()))
            progress.update(task, completed=settled, states=text)

        return service.wait_for_replays(rt, results, timeout, update)


@dlq.command("purge")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="every dead letter matching the filters")
@_filter_options
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@OUTPUT
@_handles_redis
def dlq_purge(
    ids: tuple[str, ...],
    all_: bool,
    target: str | None,
    event_type: str | None,
    since: str | None,
    until: str | None,
    yes: bool,
    output: str,
) -> None:
    """Delete dead letters for good (the deliveries are not made). --all asks first.

    With -o json, stdout gets {"removed": N, "missing": [ids]} (the admin API's answer) and
    the question of --all goes to stderr. Exit status 1 when an id is unknown.
    """
    if bool(ids) == all_:
        raise click.UsageError("give dead letter ids, or --all (with optional filters)")
    if ids and _has_filters(target, event_type, since, until):
        raise click.UsageError("--target/--event-type/--since/--until go with --all")
    flt = _letter_filter(target, event_type, since, until) if all_ else None
    as_json = output == "json"
    rt = invocation().runtime
    letters, missing = service.select_letters(rt, list(ids), flt)
    if all_ and not letters:
        if as_json:
            echo_json({"removed": 0, "missing": []})
        else:
            click.echo("no dead letters match")
        return
    if all_ and not yes:
        make_console(stderr=as_json).print(_letters_table(letters, "to purge"))
        click.confirm(
            f"purge {len(letters)} dead letter(s)? They will not be delivered",
            abort=True,
            err=as_json,
        )
    removed = service.purge(rt, [letter.id for letter in letters])
    if as_json:
        echo_json({"removed": removed, "missing": missing})
    else:
        click.echo(f"purged {removed} dead letter(s)")
    if missing:
        _fail("no dead letter with id " + ", ".join(repr(m) for m in missing))


# --- events ---------------------------------------------------------------------------------


@click.group()
def events() -> None:
    """Events the relay received: what happened to each, per target and attempt."""


@events.command("list")
@click.option("--since", default="1h", show_default=True, help="an age (30m, 2h) or ISO time")
@click.option("--until", default=None, help="an age or ISO time")
@click.option("--entry", default=None, help="only events of this Clockify time entry id")
@click.option("--target", default=None, help="only events delivered (or not) to this target")
@click.option(
    "--outcome",
    default=None,
    help="only events whose latest outcome (at --target, else at any target) is this: "
    "applied, skipped, retry, parked, held, failed, dead-lettered…",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@OUTPUT
@_handles_redis
def events_list(
    since: str,
    until: str | None,
    entry: str | None,
    target: str | None,
    outcome: str | None,
    limit: int,
    output: str,
) -> None:
    """Recent events, newest first, with where each went."""
    try:
        start = service.parse_when(since)
        end = service.parse_when(until) if until else None
    except service.OpsError as exc:
        raise click.UsageError(str(exc)) from None
    rows = service.list_events(
        invocation().runtime,
        since=start,
        until=end,
        entry=entry,
        target=target,
        outcome=outcome,
        limit=limit,
    )
    if output == "json":
        echo_json({"count": len(rows), "events": rows})
        return
    if not rows:
        make_console().print("no events match")
        return
    table = Table(title=f"events since {service.iso(start)}")
    table.add_column("event id", no_wrap=True)
    table.add_column("routed", no_wrap=True)
    table.add_column("type", overflow="ellipsis", max_width=20)
    table.add_column("entry", no_wrap=True)
    table.add_column("outcomes", overflow="fold", min_width=16)
    for row in rows:
        outcomes = " ".join(f"{t}:{o}" for t, o in row["outcomes"].items()) or "-"
        table.add_row(
            row["event_id"],
            str(row["routed_at"] or "-")[11:19],
            str(row["event_type"]),
            str(row["entry_id"]),
            outcomes,
        )
    make_console().print(table)


@events.command("show")
@click.argument("event_id")
@OUTPUT
@_handles_redis
def events_show(event_id: str, output: str) -> None:
    """Show an event's envelope summary and its trace (kept for RELAY_TRACE_TTL)."""
    try:
        view = service.event_view(invocation().runtime, event_id)
    except service.NotFound:
        _fail(f"no event with id {event_id!r} (never received, or its trace expired)")
        return
    data = view.to_json()
    if output == "json":
        echo_json(data)
        return
    console = make_console()
    summary = data["summary"] or {"event_id": event_id}
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    for key, value in summary.items():
        if value is not None:
            facts.add_row(key.replace("_", " "), Text(str(value)))
    console.print(facts)
    if view.envelope is None:
        console.print("envelope expired; the trace is all that is left")
    table = Table(title=f"trace ({len(view.records)} record(s))")
    for column in (
        "time",
        "stage",
        "target",
        "attempt",
        "outcome",
        "status",
        "reason / error",
        "response",
        "remote ids",
    ):
        table.add_column(column, overflow="fold")
    for record in data["trace"]:
        table.add_row(*(Text(v) for v in _trace_cells(record)))
    console.print(table)
    if view.dead_letters:
        console.print(_letters_table(view.dead_letters, "open dead letters"))


def _trace_cells(record: dict[str, Any]) -> list[str]:
    reason = record.get("reason") or ""
    if record.get("error"):
        reason = f"{record.get('error_kind', 'error')}: {record['error']}"
    if record.get("delay") is not None:
        reason = (reason + f" (in {record['delay']}s)").strip()
    remote = record.get("remote_ids") or {}
    targets = record.get("targets")
    target = record.get("target") or (", ".join(targets) if isinstance(targets, list) else "")
    return [
        str(record.get("at_iso") or ""),
        str(record.get("stage", "")),
        target,
        str(record.get("attempt", "")),
        str(record.get("outcome", "")),
        str(record.get("status", "")),
        reason,
        service.shorten(record.get("response"), 60),
        ", ".join(f"{k or 'record'}={v}" for k, v in remote.items()),
    ]


# --- admin-token ----------------------------------------------------------------------------


@click.command("admin-token")
@click.option(
    "--ttl",
    default=3600,
    show_default=True,
    type=click.IntRange(1, tokens.MAX_TOKEN_TTL),
    help="seconds until the token expires",
)
@click.option(
    "--subject",
    default=lambda: os.environ.get("USER") or "operator",
    show_default="$USER",
    help="who the token is for (the JWT sub claim)",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help='text: the token alone (for $(...)); json: {"token", "subject", "expires_in"}',
)
def admin_token(ttl: int, subject: str, output: str) -> None:
    """Print an admin API token (HS256 JWT signed with RELAY_ADMIN_JWT_SECRET)."""
    secret = invocation().settings.admin_jwt_secret
    if not secret:
        _fail("RELAY_ADMIN_JWT_SECRET is not set: the admin API is disabled")
        return
    token = tokens.mint_admin_token(secret.reveal(), subject, ttl)
    if output == "json":
        echo_json({"token": token, "subject": subject, "expires_in": ttl})
    else:
        click.echo(token)


@click.group()
def targets() -> None:
    """See, pause and resume targets (a paused target's deliveries wait in Redis)."""


@targets.command("list")
@OUTPUT
@_handles_redis
def targets_list(output: str) -> None:
    """Every target: enabled, running / paused / breaker open, held deliveries."""
    rows = service.targets_overview(invocation().runtime)
    if output == "json":
        echo_json({"targets": rows})
        return
    table = Table(title="targets")
    for column in ("target", "enabled", "state", "held", "since", "reason"):
        table.add_column(column, overflow="fold" if column == "reason" else "ellipsis")
    for row in rows:
        style = {"running": "green", "paused": "yellow"}.get(row["state"], "red")
        table.add_row(
            row["target"],
            "yes" if row["enabled"] else "no",
            Text(row["state"], style=style),
            str(row["held"]),
            row["since"] or "-",
            " ".join(x for x in (row["reason"], f"({row['paused_by']})") if row["paused_by"])
            or "-",
        )
    make_console().print(table)


@targets.command("pause")
@click.argument("name")
@click.option("--reason", default="", help="why (shown by `targets list` and in the log)")
@OUTPUT
@_handles_redis
def targets_pause(name: str, reason: str, output: str) -> None:
    """Pause a target: its deliveries are held in Redis, in order, until resumed."""
    try:
        result = service.pause_target(invocation().runtime, name, _operator(), reason)
    except service.OpsError as exc:
        raise click.UsageError(str(exc)) from None
    if output == "json":
        echo_json(result)
    else:
        make_console().print(
            f"{name} paused: its deliveries are held until `targets resume {name}`"
        )


@targets.command("resume")
@click.argument("name")
@OUTPUT
@_handles_redis
def targets_resume(name: str, output: str) -> None:
    """Resume a target: its held deliveries are queued again in the order they were held."""
    try:
        result = service.resume_target(invocation().runtime, name, _operator())
    except service.OpsError as exc:
        raise click.UsageError(str(exc)) from None
    if output == "json":
        echo_json(result)
    elif not result["was_paused"]:
        make_console().print(f"{name} was not paused; {result['released']} held deliveries queued")
    else:
        make_console().print(
            f"{name} resumed: {result['released']} held deliveries queued in order"
        )
