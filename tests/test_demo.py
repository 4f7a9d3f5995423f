"""`clockify-relay demo`: the whole relay in one command, checked end to end."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clockify_relay import demo
from clockify_relay.connectors import registry

TARGETS = list(registry.names())


def _record(target: str, description: str, day: str, **extra: Any) -> dict[str, Any]:
    view = demo.VIEWS[target]
    date_field = {"everit": "workDate", "tracket": "worklogDate", "blikk": "date"}.get(
        target, "startDate"
    )
    return {view.description: description, date_field: f"{day}T09:00:00+01:00", **extra}


def _good_state(script: demo.Script) -> dict[str, Any]:
    """A sandbox state holding exactly what the script should leave on every target."""
    state: dict[str, Any] = {
        "everit": {"worklogs": []},
        "tracket": {"worklogs": []},
        "blikk": {"timereports": []},
        "organi": {"worklogs": [], "statusUpdates": [], "mailings": []},
        "smtp": {"messages": []},
    }
    for entry in script.entries:
        if not entry.live:
            continue
        for target in ("everit", "tracket", "organi"):
            extra = {"currentStatusTypeId": 4} if target == "organi" else {}
            state[target][demo.VIEWS[target].collection].append(
                _record(target, entry.description, entry.days[0], **extra)
            )
        for day in entry.days:
            state["blikk"]["timereports"].append(_record("blikk", entry.description, day))
    expected = demo.expectations(script, TARGETS)
    state["smtp"]["messages"] = [{"to": list(to), "subject": s} for to, s in expected.mails]
    return state


def test_check_passes_a_state_that_holds_what_it_should() -> None:
    script = demo.build_script()
    state = _good_state(script)
    assert demo.check(demo.expectations(script, TARGETS), state, TARGETS) == []


def test_check_reports_a_missing_record_a_double_and_a_wrong_status() -> None:
    script = demo.build_script()
    expected = demo.expectations(script, TARGETS)
    state = _good_state(script)
    broken = copy.deepcopy(state)
    midnight = next(e for e in script.entries if e.name == "midnight")
    # Blikk lost the second day of the midnight entry; Everit holds the deleted entry;
    # one Organi worklog never got the approved status; the mail was sent twice.
    broken["blikk"]["timereports"] = [
        r
        for r in broken["blikk"]["timereports"]
        if (r["comment"], r["date"][:10]) != (midnight.description, midnight.days[1])
    ]
    deleted = next(e for e in script.entries if not e.live)
    broken["everit"]["worklogs"].append(_record("everit", deleted.description, deleted.days[0]))
    broken["organi"]["worklogs"][0]["currentStatusTypeId"] = 1
    broken["smtp"]["messages"] *= 2

    problems = demo.check(expected, broken, TARGETS)

    assert (
        f"blikk: 0 record(s) of {midnight.description!r} on {midnight.days[1]}, expected 1"
        in problems
    )
    assert (
        f"everit: 1 record(s) of {deleted.description!r} on {deleted.days[0]}, expected 0"
        in problems
    )
    assert any(p.startswith("organi: worklog") and "status 1, expected 4" in p for p in problems)
    assert any(p.startswith("mail: 2 mail(s)") for p in problems)
    assert len(problems) == 4, problems


def test_check_names_a_target_it_cannot_read() -> None:
    script = demo.build_script()
    problems = demo.check(
        demo.expectations(script, [*TARGETS, "newtarget"]),
        _good_state(script),
        [*TARGETS, "newtarget"],
    )
    assert problems == [
        "newtarget: the demo does not know how to read this target's records "
        "(add it to clockify_relay.demo.VIEWS)"
    ]


def test_clean_env_drops_redis_relay_clockify_and_every_target_variable() -> None:
    env = {
        "PATH": "/bin",
        "REDIS_URL": "redis://prod:6379/0",
        "RELAY_KEY_PREFIX": "prod:",
        "RELAY_CONFIG": "/etc/relay.toml",
        "CLOCKIFY_WEBHOOK_TOKENS": "real",
        **{var.name: "real" for spec in registry.specs() for var in spec.env},
    }
    assert demo.clean_env(env) == {"PATH": "/bin"}


def test_build_script_uses_fresh_ids() -> None:
    first, second = demo.build_script(), demo.build_script()
    assert not {e.entry_id for e in first.entries} & {e.entry_id for e in second.entries}
    assert first.approval_id != second.approval_id


@pytest.mark.integration
def test_demo_command_runs_everything_and_exits_0(tmp_path: Path) -> None:
    env = dict(os.environ)
    # Deliberately bogus: the demo must never use the caller's Redis or relay settings.
    env["REDIS_URL"] = "redis://192.0.2.1:1/0"
    env["RELAY_KEY_PREFIX"] = "must-not-be-used:"
    env["RELAY_CONFIG"] = str(tmp_path / "no-such.toml")
    env["TMPDIR"] = str(tmp_path)  # the demo's temp dir: must be gone afterwards
    result = subprocess.run(
        [sys.executable, "-m", "clockify_relay", "demo", "--timeout", "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for target in TARGETS:
        assert target in output, f"{target} not named:\n{output}"
    assert "200 duplicate" in output
    assert "replay" in output and "delivered" in output
    assert "192.0.2.1" not in output
    assert [p.name for p in tmp_path.iterdir()] == []
