"""``clockify-relay demo``: the whole relay on this machine, a scripted series of Clockify
webhooks through it, and a check that every target holds exactly what it should.

Nothing is needed but the installed package: an embedded Redis (its own temp dir, port and key
prefix), the sandbox fakes in this process, the receiver (``serve``) and a worker with the
scheduler (``worker --beat``) as child processes, with a webhook token made for this run. The
environment's ``REDIS_URL``, ``RELAY_*``, ``CLOCKIFY_*`` and every target's variables are
dropped, so the demo never touches a real Redis or a real target.

The webhook bodies are built here, shaped like the recorded fixtures (tests/fixtures/clockify,
which is not installed), with fresh ids on every run and one fixed workspace, user and project
that the sandbox configuration maps through its catch-all rows.
"""

from __future__ import annotations

import contextlib
import html
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx
import orjson
from rich.console import Console
from rich.table import Table

from clockify_relay.clockify.models import APPROVAL_EVENTS
from clockify_relay.connectors import registry

if TYPE_CHECKING:
    from clockify_relay.embedded_redis import EmbeddedRedis
    from clockify_relay.pipeline.runtime import Runtime
    from clockify_relay.sandbox.server import SandboxServer

WORKSPACE_ID = "6641f2a9c7e13b5d2a8f0c11"
USER_ID = "6641f2b4c7e13b5d2a8f0c21"
USER_NAME = "Anna Lindqvist"
USER_EMAIL = "anna@nordlys.example"
APPROVER_ID = "6641f2b4c7e13b5d2a8f0c22"
APPROVER_NAME = "Marko Petrović"
PROJECT_ID = "6641f3e8c7e13b5d2a8f0c41"
TASK_ID = "6641f40ac7e13b5d2a8f0c51"
TIME_ZONE = "Europe/Stockholm"

# Outcomes after which a delivery is not touched again unless an operator acts (engine.py
# Outcome.action, delivery.py "dead-lettered"); failed, retry, parked and held are on the way.
FINAL_OUTCOMES = frozenset({"applied", "deleted", "skipped", "dead-lettered"})
# Variables of the relay itself that must not leak in from the caller's shell.
RELAY_PREFIXES = ("REDIS_", "RELAY_", "CLOCKIFY_")


# --- the webhook bodies ----------------------------------------------------------------------


def new_id() -> str:
    """A fresh Clockify-style id (24 hex digits, time first like a MongoDB ObjectId)."""
    return f"{int(time.time()):08x}{secrets.token_hex(8)}"


def _zoned(utc: str) -> tuple[str, int]:
    """The Stockholm wall-clock time of a UTC timestamp and its offset in seconds."""
    from zoneinfo import ZoneInfo

    moment = datetime.fromisoformat(utc.replace("Z", "+00:00")).astimezone(ZoneInfo(TIME_ZONE))
    offset = moment.utcoffset()
    assert offset is not None
    return moment.strftime("%Y-%m-%dT%H:%M:%S"), int(offset.total_seconds())


def _duration(start: str, end: str) -> str:
    seconds = int(
        (
            datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))
        ).total_seconds()
    )
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return text + (f"{secs}S" if secs or text == "PT" else "")


def time_entry(entry_id: str, description: str, start: str, end: str | None) -> dict[str, Any]:
    """A time-entry webhook body as Clockify sends it (tests/fixtures/clockify/NEW_TIME_ENTRY
    .json): ``description`` as typed (it is sent HTML-escaped), ``end`` None for a running
    timer."""
    zoned_start, offset_start = _zoned(start)
    zoned_end, offset_end = _zoned(end) if end else (None, None)
    return {
        "id": entry_id,
        "description": html.escape(description, quote=False),
        "userId": USER_ID,
        "billable": True,
        "projectId": PROJECT_ID,
        "timeInterval": {
            "start": start,
            "end": end,
            "duration": _duration(start, end) if end else None,
            "timeZone": TIME_ZONE,
            "offsetStart": offset_start,
            "offsetEnd": offset_end,
            "zonedStart": zoned_start,
            "zonedEnd": zoned_end,
        },
        "workspaceId": WORKSPACE_ID,
        "isLocked": False,
        "hourlyRate": None,
        "costRate": None,
        "customFieldValues": [],
        "type": "REGULAR",
        "kioskId": None,
        "approvalStatus": None,
        "detailedApprovalStatus": None,
        "projectCurrency": None,
        "currentlyRunning": end is None,
        "project": {
            "name": "Website relaunch",
            "clientId": "6641f3d0c7e13b5d2a8f0c31",
            "workspaceId": WORKSPACE_ID,
            "billable": True,
            "color": "#8D6E63",
            "archived": False,
            "clientName": "Nordlys AB",
            "duration": "PT0S",
            "note": "",
            "id": PROJECT_ID,
            "public": False,
            "template": False,
        },
        "task": {
            "name": "Design",
            "projectId": PROJECT_ID,
            "status": "ACTIVE",
            "workspaceId": WORKSPACE_ID,
            "billable": True,
            "id": TASK_ID,
            "duration": "PT0S",
        },
        "user": {"id": USER_ID, "name": USER_NAME, "status": "ACTIVE"},
        "tags": [],
    }


def approval(request_id: str, state: str, updated_at: str, note: str) -> dict[str, Any]:
    """An approval webhook body (tests/fixtures/clockify/APPROVAL_REQUEST_STATUS_UPDATED.json)
    for the demo user's week of 2026-03-09."""
    by_owner = state == "PENDING"
    return {
        "id": request_id,
        "workspaceId": WORKSPACE_ID,
        "dateRange": {"start": "2026-03-09T00:00:00Z", "end": "2026-03-15T23:59:59Z"},
        "owner": {
            "userId": USER_ID,
            "userName": USER_NAME,
            "timeZone": TIME_ZONE,
            "startOfWeek": "MONDAY",
        },
        "status": {
            "state": state,
            "note": html.escape(note, quote=False),
            "updatedAt": updated_at,
            "updatedBy": USER_ID if by_owner else APPROVER_ID,
            "updatedByUserName": USER_NAME if by_owner else APPROVER_NAME,
        },
        "creator": {"userEmail": USER_EMAIL, "userId": USER_ID, "userName": USER_NAME},
    }


# --- the script -------------------------------------------------------------------------------


@dataclass
class Entry:
    """A time entry of the script and what the targets should end up holding for it."""

    name: str
    entry_id: str
    description: str  # the final description, as typed
    days: tuple[str, ...]  # local days it covers (Blikk books one report per day)
    live: bool = True  # False: deleted, no target may hold it


@dataclass
class Step:
    """One webhook the demo sends."""

    label: str
    event_type: str
    body: bytes
    phase: int
    expect: str = "queued"  # the receiver's answer "status"
    # Filled in when sent:
    status_code: int | None = None
    answer: dict[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str | None:
        value = self.answer.get("event_id")
        return value if isinstance(value, str) else None


# Phases: 1 entries, 2 approvals, 3 the delivery that fails and is replayed, 4 the duplicate.
FAULT_PHASE, DUPLICATE_PHASE = 3, 4


@dataclass
class Script:
    entries: list[Entry]
    steps: list[Step]
    approval_id: str
    fault_target: str
    fault_entry: Entry


def build_script(fault_target: str = "tracket") -> Script:
    """The scripted webhooks, with fresh ids."""
    kickoff, scratch, timer, night, flaky = (new_id() for _ in range(5))
    approval_id = new_id()
    entries = [
        Entry("edited", kickoff, "Kickoff & design review <v2>, notes sent", ("2026-03-10",)),
        Entry("deleted", scratch, "Scratch entry, deleted again", ("2026-03-10",), live=False),
        Entry("timer", timer, "Sprint planning (timer)", ("2026-03-11",)),
        Entry("midnight", night, "Hotfix deploy & smoke test", ("2026-03-10", "2026-03-11")),
        Entry("replayed", flaky, "Customer call (delivered by a replay)", ("2026-03-12",)),
    ]

    def body(payload: Mapping[str, Any]) -> bytes:
        return orjson.dumps(payload)

    edited = body(
        time_entry(kickoff, entries[0].description, "2026-03-10T08:00:00Z", "2026-03-10T10:00:00Z")
    )
    scratch_body = body(
        time_entry(scratch, entries[1].description, "2026-03-10T12:00:00Z", "2026-03-10T12:30:00Z")
    )
    steps = [
        Step(
            "entry created",
            "NEW_TIME_ENTRY",
            body(
                time_entry(
                    kickoff,
                    "Kickoff & design review <v2>",
                    "2026-03-10T08:00:00Z",
                    "2026-03-10T09:30:00Z",
                )
            ),
            1,
        ),
        Step("same entry edited", "TIME_ENTRY_UPDATED", edited, 1),
        Step("second entry created", "NEW_TIME_ENTRY", scratch_body, 1),
        Step("second entry deleted", "TIME_ENTRY_DELETED", scratch_body, 1),
        Step(
            "timer started",
            "NEW_TIMER_STARTED",
            body(time_entry(timer, entries[2].description, "2026-03-11T07:58:12Z", None)),
            1,
        ),
        Step(
            "timer stopped",
            "TIMER_STOPPED",
            body(
                time_entry(
                    timer, entries[2].description, "2026-03-11T07:58:12Z", "2026-03-11T09:12:42Z"
                )
            ),
            1,
        ),
        Step(
            "entry across local midnight",
            "NEW_TIME_ENTRY",
            body(
                time_entry(
                    night, entries[3].description, "2026-03-10T22:15:00Z", "2026-03-10T23:45:00Z"
                )
            ),
            1,
        ),
        Step(
            "approval requested",
            "NEW_APPROVAL_REQUEST",
            body(approval(approval_id, "PENDING", "2026-03-16T07:45:00Z", "")),
            2,
        ),
        Step(
            "approval approved",
            "APPROVAL_REQUEST_STATUS_UPDATED",
            body(
                approval(approval_id, "APPROVED", "2026-03-16T10:02:11Z", "Looks good & approved")
            ),
            2,
        ),
        Step(
            f"entry created; {fault_target} refuses it once",
            "NEW_TIME_ENTRY",
            body(
                time_entry(
                    flaky, entries[4].description, "2026-03-12T13:00:00Z", "2026-03-12T13:45:00Z"
                )
            ),
            FAULT_PHASE,
        ),
        Step(
            "the edit sent again",
            "TIME_ENTRY_UPDATED",
            edited,
            DUPLICATE_PHASE,
            expect="duplicate",
        ),
    ]
    return Script(entries, steps, approval_id, fault_target, entries[4])


# --- what each target holds -------------------------------------------------------------------


@dataclass(frozen=True)
class RecordView:
    """How to read one booking target's records in the sandbox state."""

    collection: str
    description: str
    date: Callable[[Mapping[str, Any]], str]
    detail: Callable[[Mapping[str, Any]], str]
    per_day: bool = False  # one record per local day (Blikk)


def _text(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    return "" if value is None else str(value)


VIEWS: dict[str, RecordView] = {
    "everit": RecordView(
        "worklogs",
        "description",
        lambda r: _text(r, "workDate")[:10],
        lambda r: f"{_text(r, 'workStartTime')} {int(r.get('durationInSeconds') or 0)} s",
    ),
    "tracket": RecordView(
        "worklogs",
        "description",
        lambda r: _text(r, "worklogDate")[:10],
        lambda r: f"{_text(r, 'worklogDate')[11:16]} {r.get('worklogMinutes')} min",
    ),
    "blikk": RecordView(
        "timereports",
        "comment",
        lambda r: _text(r, "date")[:10],
        lambda r: (
            f"{_text(r, 'clockStart')}-{_text(r, 'clockEnd')} {r.get('hours')} h "
            f"{_text(r, 'internalComment')}"
        ),
        per_day=True,
    ),
    "organi": RecordView(
        "worklogs",
        "description",
        lambda r: _text(r, "startDate")[:10],
        lambda r: (
            f"{_text(r, 'startDate')[11:16]}-{_text(r, 'endDate')[11:16]} "
            f"status {r.get('currentStatusTypeId')}"
        ),
    ),
}
# Event targets: what they hold is read another way (mail: the sandbox's SMTP server).
EVENT_TARGETS = frozenset({"mail"})


def records(state: Mapping[str, Any], target: str) -> list[Mapping[str, Any]]:
    """The records a booking target holds."""
    view = VIEWS[target]
    held = state.get(target, {}).get(view.collection, [])
    return list(held.values()) if isinstance(held, Mapping) else list(held)


@dataclass
class Expectations:
    """What the targets must hold at the end."""

    # target → (description, local date) → how many records
    bookings: dict[str, Counter[tuple[str, str]]]
    organi_status: int | None  # every Organi worklog's current status
    mails: list[tuple[tuple[str, ...], str]]  # (to, subject) of each mail, in any order


def expectations(script: Script, targets: Sequence[str]) -> Expectations:
    bookings: dict[str, Counter[tuple[str, str]]] = {}
    for target in targets:
        view = VIEWS.get(target)
        if view is None:
            continue
        expected: Counter[tuple[str, str]] = Counter()
        for entry in script.entries:
            if entry.live:
                for day in entry.days if view.per_day else entry.days[:1]:
                    expected[(entry.description, day)] += 1
        bookings[target] = expected
    return Expectations(
        bookings,
        organi_status=4,  # [targets.organi.statuses] approved (default 4)
        mails=[
            ((USER_EMAIL,), f"Timesheet 2026-03-09 to 2026-03-15 of {USER_NAME}: APPROVED"),
        ],
    )


def check(expected: Expectations, state: Mapping[str, Any], targets: Sequence[str]) -> list[str]:
    """Every difference between what the targets hold (``state``: the sandbox's
    ``GET /_sandbox/state``) and what they should; empty when all is as it should be."""
    problems: list[str] = []
    for target in targets:
        if target in EVENT_TARGETS:
            continue
        if target not in VIEWS:
            problems.append(
                f"{target}: the demo does not know how to read this target's records "
                "(add it to clockify_relay.demo.VIEWS)"
            )
            continue
        view = VIEWS[target]
        held = Counter((_text(r, view.description), view.date(r)) for r in records(state, target))
        want = expected.bookings.get(target, Counter())
        for key in sorted(set(want) | set(held)):
            if held[key] != want[key]:
                description, day = key
                problems.append(
                    f"{target}: {held[key]} record(s) of {description!r} on {day}, "
                    f"expected {want[key]}"
                )
    if "organi" in targets and expected.organi_status is not None:
        for record in records(state, "organi"):
            if record.get("currentStatusTypeId") != expected.organi_status:
                problems.append(
                    f"organi: worklog {record.get('worklogId', '?')} "
                    f"({_text(record, 'description')!r}) has status "
                    f"{record.get('currentStatusTypeId')}, expected {expected.organi_status}"
                )
    if "mail" in targets:
        sent = Counter(
            (tuple(m.get("to") or ()), str(m.get("subject")))
            for m in state.get("smtp", {}).get("messages", [])
        )
        want_mail = Counter(expected.mails)
        for mail in sorted(set(sent) | set(want_mail)):
            if sent[mail] != want_mail[mail]:
                to, subject = mail
                problems.append(
                    f"mail: {sent[mail]} mail(s) to {', '.join(to)} {subject!r}, "
                    f"expected {want_mail[mail]}"
                )
    return problems


def holdings(state: Mapping[str, Any]) -> dict[str, Any]:
    """The records part of a state (no counters), to tell whether anything changed."""
    kept = {
        target: [dict(r) for r in records(state, target)] for target in VIEWS if target in state
    }
    kept["organi.statusUpdates"] = state.get("organi", {}).get("statusUpdates", [])
    kept["organi.mailings"] = state.get("organi", {}).get("mailings", [])
    kept["smtp"] = state.get("smtp", {}).get("messages", [])
    return kept


# --- the event traces ---------------------------------------------------------------------------


@dataclass
class Trace:
    """Where one event went: the targets it was routed to and each one's latest outcome."""

    routed: list[str] | None = None  # None: not routed (yet)
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: dict[str, list[str]] = field(default_factory=dict)  # every outcome, in order

    def settled(self) -> bool:
        if self.routed is None:
            return False
        return all(
            str(self.outcomes.get(t, {}).get("outcome")) in FINAL_OUTCOMES for t in self.routed
        )


def read_trace(rt: Runtime, event_id: str) -> Trace:
    from clockify_relay.pipeline import trace

    _, recs = trace.read(rt.redis, rt.keys, event_id)
    found = Trace()
    for rec in recs:
        if rec.get("stage") == "route":
            found.routed = list(rec.get("targets") or [])
        elif rec.get("stage") == "deliver" and rec.get("target"):
            found.outcomes[str(rec["target"])] = rec
            found.history.setdefault(str(rec["target"]), []).append(str(rec.get("outcome")))
    return found


def wait_settled(
    rt: Runtime, steps: Sequence[Step], deadline: float, alive: Callable[[], None]
) -> dict[str, Trace]:
    """Follow the events of ``steps`` until each is settled or the deadline passed."""
    ids = [s.event_id for s in steps if s.event_id and s.answer.get("status") == "queued"]
    while True:
        traces = {event_id: read_trace(rt, event_id) for event_id in ids}
        if all(t.settled() for t in traces.values()) or time.monotonic() > deadline:
            return traces
        alive()
        time.sleep(0.2)


# --- the processes ------------------------------------------------------------------------------


def clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without anything that could point the relay elsewhere: Redis,
    the relay's own settings, Clockify and every registered target's variables."""
    names = {var.name for spec in registry.specs() for var in spec.env}
    return {k: v for k, v in environ.items() if not k.startswith(RELAY_PREFIXES) and k not in names}


class Child:
    """A ``clockify-relay`` subcommand in a session of its own, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "clockify_relay", *args],
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops it in order
            )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = "\n".join(self.log().splitlines()[-30:])
            raise DemoError(f"{self.name} exited ({self.process.returncode}):\n{tail}")

    def stop(self) -> None:
        """SIGTERM to its process group (a worker's pool too), SIGKILL after 20 s."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class DemoError(Exception):
    """The demo could not run (a process died, something did not start)."""


class Stack:
    """Embedded Redis, the sandbox, the receiver and a worker with the scheduler, in a temp
    dir; :meth:`close` stops and removes all of it (safe to call twice)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tmp = Path(tempfile.mkdtemp(prefix="clockify-relay-demo-"))
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self.sandbox: SandboxServer | None = None
        self.runtime: Runtime | None = None
        self.env: dict[str, str] = {}
        self.url = ""
        self.token = ""

    def start(self, timeout: float) -> Stack:
        from clockify_relay.embedded_redis import EmbeddedRedis, free_port
        from clockify_relay.pipeline.runtime import Runtime
        from clockify_relay.sandbox import relay_config
        from clockify_relay.sandbox.server import SandboxServer
        from clockify_relay.settings import load_settings

        deadline = time.monotonic() + timeout
        self.redis = redis_server = EmbeddedRedis(self.tmp / "redis").start()
        self.sandbox = sandbox = SandboxServer().start()
        config = relay_config.write_toml(
            self.tmp / "relay.toml", relay_config.sandbox_targets(sandbox.base_urls)
        )
        self.token = relay_config.new_webhook_token()
        env = clean_env(os.environ)
        env.update(relay_config.sandbox_env(sandbox.config, sandbox.base_urls))
        env.update(
            REDIS_URL=redis_server.url,
            RELAY_KEY_PREFIX=f"demo:{secrets.token_hex(4)}:",
            RELAY_CONFIG=str(config),
            CLOCKIFY_WEBHOOK_TOKENS=self.token,
            RELAY_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        relay_config.bypass_proxy(env)
        self.env = env
        self.runtime = Runtime(load_settings(env))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        logs = self.tmp / "logs"
        logs.mkdir()
        worker = Child("worker", ["worker", "--concurrency", "2", "--beat"], env, logs)
        self.children.append(worker)
        receiver = Child(
            "receiver", ["serve", "--host", "127.0.0.1", "--port", str(port)], env, logs
        )
        self.children.append(receiver)
        self.console.print(
            f"embedded Redis {redis_server.url} (prefix {env['RELAY_KEY_PREFIX']}), "
            f"sandbox {sandbox.url}, receiver {self.url}, worker with scheduler"
        )
        while not self._ready(self.url + "/readyz") or "ready." not in worker.log():
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError("the receiver or the worker did not start in time")
            time.sleep(0.2)
        return self

    @staticmethod
    def _ready(url: str) -> bool:
        try:
            # Never through a proxy of the caller's environment: everything is on 127.0.0.1.
            return httpx.get(url, timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def check_alive(self) -> None:
        for child in self.children:
            child.check_alive()

    def close(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                child.stop()
        self.children.clear()
        if self.runtime is not None:
            with contextlib.suppress(Exception):
                self.runtime.redis.close()
            self.runtime = None
        if self.sandbox is not None:
            with contextlib.suppress(Exception):
                self.sandbox.stop()
            self.sandbox = None
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
            self.redis = None
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- the run ------------------------------------------------------------------------------------


def send(http: httpx.Client, stack: Stack, step: Step) -> None:
    response = http.post(
        stack.url + "/webhooks/clockify",
        content=step.body,
        headers={
            "Clockify-Webhook-Event-Type": step.event_type,
            "Clockify-Signature": stack.token,
            "Content-Type": "application/json",
        },
    )
    step.status_code = response.status_code
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text[:200]}
    step.answer = answer if isinstance(answer, dict) else {"answer": answer}


def run_demo(console: Console, timeout: float, report: dict[str, Any] | None = None) -> int:
    """Run the whole demo; returns the exit status (0: everything arrived as it should).
    ``report`` (given) receives the verdict: ok, seconds, targets, differences."""
    started = time.monotonic()
    targets = list(registry.names())
    # A documented 4xx is permanent on every booking target; Tracket's is the plainest.
    bookers = [t for t in targets if t in VIEWS]
    script = build_script("tracket" if "tracket" in bookers else bookers[0])
    stack = Stack(console)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    interrupted: list[int] = []

    def terminate(signum: int, frame: types.FrameType | None) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    # SIGTERM is taken like Ctrl-C: everything started is stopped and removed.
    for sig in previous:
        signal.signal(sig, terminate)
    try:
        stack.start(timeout=60)
        problems = _play(console, stack, script, targets, started + timeout)
    except DemoError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        if report is not None:
            report.update(ok=False, targets=targets, differences=[str(exc)])
        return 1
    except Exception:
        # Ctrl-C in a terminal also stops the embedded Redis (it shares the terminal's process
        # group), so the demo may see Redis go away before its own KeyboardInterrupt.
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        # A second Ctrl-C must not leave processes or the temp dir behind.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        stack.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    took = time.monotonic() - started
    if report is not None:
        report.update(
            ok=not problems, seconds=round(took, 1), targets=targets, differences=problems
        )
    if problems:
        console.print(f"\n[red]FAILED[/red] ({took:.0f} s): what differs:")
        for problem in problems:
            console.print(f"  - {problem}")
        return 1
    console.print(
        f"\n[green]OK[/green] ({took:.0f} s): every target ({', '.join(targets)}) holds exactly "
        "what it should."
    )
    return 0


def _play(
    console: Console, stack: Stack, script: Script, targets: list[str], deadline: float
) -> list[str]:
    from clockify_relay.admin import service
    from clockify_relay.pipeline.dlq import dlq_id

    rt, sandbox = stack.runtime, stack.sandbox
    assert rt is not None and sandbox is not None  # started
    problems: list[str] = []
    traces: dict[str, Trace] = {}
    notes: dict[str, str] = {}
    step = script.steps[0]
    with httpx.Client(timeout=10, trust_env=False) as http:
        for phase in (1, 2, FAULT_PHASE, DUPLICATE_PHASE):
            steps = [s for s in script.steps if s.phase == phase]
            if phase == FAULT_PHASE:
                # Documented: a 4xx from the target is permanent, so the delivery is
                # dead-lettered at once (no retries), then replayed through the workers.
                sandbox.inject_fault(script.fault_target, status=400, count=1, method="POST")
                console.print(f"fault injected: {script.fault_target} answers its next POST 400")
            before = holdings(sandbox.state()) if phase == DUPLICATE_PHASE else None
            events_before = rt.redis.zcard(rt.keys.events)
            for step in steps:
                send(http, stack, step)
                console.print(
                    f"sent {step.event_type:<32} {step.label:<42} → {step.status_code} "
                    f"{step.answer.get('status') or step.answer.get('error')}"
                )
                if step.answer.get("status") != step.expect:
                    problems.append(
                        f"{step.label} ({step.event_type}): answered {step.status_code} "
                        f"{step.answer}, expected {step.expect}"
                    )
                # One at a time, as a person works: each event settles before the next is
                # sent (the relay orders them anyway; this keeps the table easy to read).
                traces.update(wait_settled(rt, [step], deadline, stack.check_alive))
                if not all(t.settled() for t in traces.values()):
                    break
            if not all(t.settled() for t in traces.values()):
                problems.append(
                    f"stopped: {step.label!r} did not settle within the timeout; "
                    "the events after it were not sent"
                )
                break
            if phase == FAULT_PHASE:
                step = steps[0]
                letter = rt.dlq.get(dlq_id(script.fault_target, step.event_id or ""))
                if letter is None:
                    problems.append(
                        f"{script.fault_target}: the refused delivery of {step.label!r} was "
                        "not dead-lettered"
                    )
                    continue
                console.print(
                    f"dead-lettered on {script.fault_target}: {letter.error}; replaying {letter.id}"
                )
                results = service.replay_many(rt, [letter], by="demo")
                results = service.wait_for_replays(
                    rt, results, timeout=max(1.0, deadline - time.monotonic())
                )
                for result in results:
                    console.print(f"replay {result.id}: {result.state} — {result.message}")
                    notes[step.event_id or ""] = f"replayed: {result.state}"
                    if result.state != "delivered":
                        problems.append(f"replay of {result.id}: {result.state} {result.message}")
                traces.update(wait_settled(rt, steps, deadline, stack.check_alive))
            if before is not None:
                time.sleep(1.0)  # anything the duplicate could have set off has had its time
                if holdings(sandbox.state()) != before:
                    problems.append("the duplicate changed what the targets hold")
                if rt.redis.zcard(rt.keys.events) != events_before:
                    problems.append("the duplicate was routed as a new event")
        state = sandbox.state()
    show_events(console, script, traces, targets, notes)
    show_state(console, state, targets, script, traces)
    for step in script.steps:
        trace = traces.get(step.event_id or "")
        if trace is None:
            continue
        if trace.routed is None:
            problems.append(f"{step.label}: not routed by a worker in time")
        elif not trace.settled():
            waiting = {
                t: trace.outcomes.get(t, {}).get("outcome", "not delivered")
                for t in trace.routed or []
            }
            problems.append(f"{step.label}: not settled in time: {waiting}")
        for target, rec in trace.outcomes.items():
            if rec.get("outcome") == "dead-lettered":
                problems.append(f"{step.label}: dead-lettered on {target}: {rec.get('reason')}")
    if rt.dlq.list():
        problems.append(f"{len(rt.dlq.list())} dead letter(s) left")
    problems += check(expectations(script, targets), state, targets)
    return problems


# --- output -------------------------------------------------------------------------------------


def _cell(step: Step, trace: Trace | None, target: str) -> tuple[str, bool]:
    """What the events table says for one event and target, and whether the target has
    something to show for it (False: not its event type, skipped, or not queued)."""
    spec = registry.spec(target)
    if step.status_code is None:
        return "— (not sent)", False
    if step.answer.get("status") == "duplicate":
        return "— (duplicate: not queued)", False
    if step.event_type not in spec.events:
        kind = "approvals" if step.event_type in APPROVAL_EVENTS else "time entries"
        return f"— (takes no {kind})", False
    if trace is None or trace.routed is None:
        return "not routed", False
    if target not in trace.routed:
        return "— (not enabled)", False
    rec = trace.outcomes.get(target)
    if rec is None:
        return "pending", False
    outcome = str(rec.get("outcome"))
    history = trace.history.get(target, [])
    before = "dead-lettered, replayed → " if "dead-lettered" in history[:-1] else ""
    operations = rec.get("operations")
    if outcome == "applied" and operations:
        return f"{before}applied: {', '.join(str(o) for o in operations)}", True
    reason = str(rec.get("reason") or "")
    text = f"{outcome}: {reason[:60]}" if reason else outcome
    return before + text, outcome in ("applied", "deleted")


def show_events(
    console: Console,
    script: Script,
    traces: Mapping[str, Trace],
    targets: Sequence[str],
    notes: Mapping[str, str],
) -> None:
    table = Table(title="Where each event went (outcome per target)", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("event")
    table.add_column("answer")
    for target in targets:
        table.add_column(target)
    for number, step in enumerate(script.steps, 1):
        trace = traces.get(step.event_id or "")
        label = f"{step.label}\n{step.event_type}"
        note = notes.get(step.event_id or "")
        answer = "not sent" if step.status_code is None else f"{step.status_code} "
        answer += str(step.answer.get("status", "")) + (f"\n{note}" if note else "")
        table.add_row(str(number), label, answer, *(_cell(step, trace, t)[0] for t in targets))
    console.print(table)


def nothing_to_show(script: Script, traces: Mapping[str, Trace], target: str) -> str | None:
    """Which events left nothing on ``target`` (so the demo says so rather than skip them)."""
    numbers = [
        str(number)
        for number, step in enumerate(script.steps, 1)
        if not _cell(step, traces.get(step.event_id or ""), target)[1]
    ]
    if not numbers:
        return None
    return (
        f"  {target}: nothing to show for events {', '.join(numbers)} (not its event type, "
        "skipped or not queued: see the events table for why)"
    )


def show_state(
    console: Console,
    state: Mapping[str, Any],
    targets: Sequence[str],
    script: Script,
    traces: Mapping[str, Trace],
) -> None:
    """Per target, a table of what it holds now, and which events left nothing on it."""
    for target in targets:
        view = VIEWS.get(target)
        if target == "mail":
            table = Table(title="mail: what the sandbox's SMTP server accepted")
            table.add_column("to")
            table.add_column("subject")
            for message in state.get("smtp", {}).get("messages", []):
                table.add_row(", ".join(message.get("to") or ()), str(message.get("subject")))
            console.print(table)
        elif view is None:
            console.print(f"{target}: the demo cannot read this target's records")
        else:
            table = Table(title=f"{target}: {view.collection}")
            for column in ("description", "date", "detail"):
                table.add_column(column)
            held = sorted(records(state, target), key=lambda r: (view.date(r), view.detail(r)))
            for record in held:
                table.add_row(
                    _text(record, view.description), view.date(record), view.detail(record)
                )
            console.print(table)
        if target == "organi":
            organi = state.get("organi", {})
            for update in organi.get("statusUpdates", []):
                console.print(
                    f"  organi status update: {update.get('operation')} "
                    f"statusId {update.get('statusId')} on worklogs {update.get('worklogIds')} "
                    f"({update.get('comment') or 'no comment'})"
                )
            if not organi.get("mailings"):
                console.print(
                    '  organi mailings: none (the sandbox config has no channel = "organi" '
                    "mail rule)"
                )
        note = nothing_to_show(script, traces, target)
        if note:
            console.print(note)


@click.command()
@click.option(
    "--timeout",
    default=180.0,
    show_default=True,
    type=float,
    help="seconds to wait for every event to settle",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people; json: the verdict on stdout (the tables go to stderr)",
)
def demo(timeout: float, output: str) -> None:
    """See it work in one command: embedded Redis, the sandbox, receiver and worker; scripted
    Clockify webhooks; a table of what each target holds; exit 0 only if all is as it should."""
    as_json = output == "json"
    console = Console(
        width=None if sys.stdout.isatty() else 180, file=sys.stderr if as_json else None
    )
    report: dict[str, Any] = {}
    try:
        status = run_demo(console, timeout, report)
    except KeyboardInterrupt:
        console.print("interrupted: everything started was stopped and removed")
        status = 130
    if as_json:
        click.echo(orjson.dumps(report or {"ok": False, "differences": ["interrupted"]}))
    sys.exit(status)
