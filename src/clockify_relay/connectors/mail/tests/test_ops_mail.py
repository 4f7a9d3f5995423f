"""The operations mail against the sandbox's real SMTP server and a real Redis: one mail per
batch of new dead letters, at most one per interval, listing each with its replay command."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.pipeline.conftest import entry_payload, envelope
from tests.processes import wait_until

from clockify_relay.connectors.mail import ops as ops_module
from clockify_relay.connectors.mail.ops import OpsMailer, ops_mailer
from clockify_relay.connectors.mail.tests.test_mail import mail_section, messages, write
from clockify_relay.errors import PermanentError, TransientError
from clockify_relay.pipeline import scheduler
from clockify_relay.pipeline.dlq import DeadLetter
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Settings, SettingsError, load_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def rt(settings: Settings, sandbox: SandboxServer) -> Iterator[Runtime]:
    sandbox.reset()
    section: dict[str, Any] = {
        **mail_section(sandbox),
        "ops": {"to": ["ops@nordlys.example", "oncall@nordlys.example"], "interval": 60},
    }
    runtime = Runtime(settings.with_changes(targets={"mail": section}))
    yield runtime
    runtime.redis.close()


def mailer(rt: Runtime) -> OpsMailer:
    found = ops_mailer(rt.settings.targets, rt.redis, rt.keys)
    assert found is not None
    return found


def dead_letter(rt: Runtime, target: str, entity: str, error: Exception) -> DeadLetter:
    assert isinstance(error, TransientError | PermanentError)
    return rt.dlq.add(target, envelope("NEW_TIME_ENTRY", entry_payload(id=entity)), error, 3)


def settled(*letters: DeadLetter) -> float:
    """A time when the letters are older than the settle time."""
    return max(letter.last_failure for letter in letters) + ops_module.SETTLE + 0.01


def interval_passes(rt: Runtime) -> None:
    rt.redis.delete(rt.keys.ops_mail_check)  # what the key's TTL (the interval) does


def test_one_mail_per_batch_listing_every_new_dead_letter(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    ops = mailer(rt)
    first = [
        dead_letter(rt, "everit", "entry-1", TransientError("everit: POST /worklogs → 503")),
        dead_letter(rt, "organi", "entry-2", PermanentError("organi answered 400: bad type")),
        dead_letter(rt, "mail", "entry-3", TransientError("SMTP server unreachable")),
    ]
    assert ops.check(settled(*first)) is not None
    [mail] = messages(sandbox)
    assert mail["to"] == ["ops@nordlys.example", "oncall@nordlys.example"]
    assert mail["subject"] == "clockify-relay: 3 new dead letter(s)"
    for letter, (target, error) in zip(
        first,
        [
            ("everit", "TransientError: everit: POST /worklogs → 503"),
            ("organi", "PermanentError: organi answered 400: bad type"),
            ("mail", "TransientError: SMTP server unreachable"),
        ],
        strict=True,
    ):
        assert f"* {target}: NEW_TIME_ENTRY {letter.entity_id} (failed " in mail["body"]
        assert error in mail["body"]
        assert f"clockify-relay dlq replay {letter.id}\n" in mail["body"]
    # The event's body is not in it (only the relay's own error messages are).
    assert str(entry_payload()["description"]) not in mail["body"]
    assert str(entry_payload()["workspaceId"]) not in mail["body"]

    # Within the interval: no check, whatever is new.
    newer = dead_letter(rt, "blikk", "entry-4", TransientError("blikk: 502"))
    assert ops.check(settled(newer)) is None
    # The interval passed but nothing is new: no mail.
    interval_passes(rt)
    assert ops.check(settled(*first)) is None
    assert len(messages(sandbox)) == 1
    # A second batch after the interval: a second mail with only the new one.
    interval_passes(rt)
    assert [letter.id for letter in ops.check(settled(newer)) or []] == [newer.id]
    second = messages(sandbox)[1]
    assert second["subject"] == "clockify-relay: 1 new dead letter(s)"
    assert f"dlq replay {newer.id}" in second["body"]
    assert all(f"dlq replay {letter.id}" not in second["body"] for letter in first)


def test_the_mark_is_written_before_sending_so_a_failed_send_is_not_repeated(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    ops = mailer(rt)
    letter = dead_letter(rt, "everit", "entry-1", TransientError("everit: 503"))
    sandbox.sandbox.smtp.set_mode({"mode": "lose-reply"})  # the server keeps it, answers nothing
    assert ops.check(settled(letter)) is None
    sandbox.sandbox.smtp.set_mode({"mode": "accept"})
    interval_passes(rt)
    assert ops.check(settled(letter)) is None  # that batch is done: never mailed twice
    assert len(messages(sandbox)) == 1


def test_young_dead_letters_wait_for_the_next_check(rt: Runtime, sandbox: SandboxServer) -> None:
    ops = mailer(rt)
    letter = dead_letter(rt, "everit", "entry-1", TransientError("everit: 503"))
    assert ops.check(letter.last_failure + 1) is None  # may still be joined by older-stamped ones
    interval_passes(rt)
    assert ops.check(settled(letter)) is not None
    assert len(messages(sandbox)) == 1


def test_the_scheduler_loop_sends_it(
    rt: Runtime, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops_module, "SETTLE", 0.0)
    letter = dead_letter(rt, "tracket", "entry-9", TransientError("tracket: 503"))
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(rt, stop), daemon=True)
    thread.start()
    try:
        wait_until(lambda: messages(sandbox), 10, "the ops mail")
    finally:
        stop.set()
        thread.join(5)
    [mail] = messages(sandbox)
    assert f"clockify-relay dlq replay {letter.id}" in mail["body"]


def test_no_ops_table_no_mailer_and_the_table_is_checked_at_load(
    rt: Runtime, tmp_path: Path
) -> None:
    section = dict(rt.settings.targets["mail"])
    del section["ops"]
    assert ops_mailer({"mail": section}, rt.redis, rt.keys) is None
    env = {"SMTP_URL": "smtp://127.0.0.1:2525?starttls=false"}
    base = '[targets.mail]\nfrom = "relay@nordlys.example"\n[targets.mail.ops]\n'
    loaded = load_settings(env, write(tmp_path, base + 'to = ["ops@nordlys.example"]\n'))
    assert loaded.targets["mail"]["ops"]["to"] == ["ops@nordlys.example"]
    with pytest.raises(SettingsError) as info:
        load_settings(env, write(tmp_path, base + 'to = ["not an address"]\ninterval = 5\n'))
    problems = "\n".join(info.value.problems)
    assert "[targets.mail.ops] to: 'not an address' is not an e-mail address" in problems
    assert "[targets.mail.ops] interval: must be a number of seconds, at least 60" in problems
    with pytest.raises(SettingsError, match="to: required"):
        load_settings(env, write(tmp_path, base + "interval = 900\n"))
    with pytest.raises(SettingsError, match="unknown key"):
        load_settings(env, write(tmp_path, base + 'to = ["ops@nordlys.example"]\nintervall = 9\n'))
