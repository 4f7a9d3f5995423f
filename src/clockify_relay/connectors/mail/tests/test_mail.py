"""The mail target against the sandbox's real SMTP server and a real Redis: what reaches the
server, at most once per (rule, event), failures, filters, and rules checked at load."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.fixture_loader import fixture_json
from tests.pipeline.conftest import entry_payload, envelope

from clockify_relay.connectors.mail.config import parse_smtp_url
from clockify_relay.errors import ConfigurationError, PermanentError, TransientError
from clockify_relay.pipeline import delivery
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import RetryPolicy, Secret, Settings, SettingsError, load_settings

DECIDED = {
    "name": "approval-decided",
    "events": ["APPROVAL_REQUEST_STATUS_UPDATED"],
    "states": ["APPROVED", "REJECTED"],
    "to": ["{creator_email}", "payroll@nordlys.example"],
    "subject": "Timesheet {period} of {owner}: {state}",
    "body": "{owner}, {period}: {state}.\nNote: {note}\n",
}
PROJECT = "6641f3e8c7e13b5d2a8f0c41"


def mail_section(sandbox: SandboxServer, *rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "smtp_url": Secret(sandbox.smtp_url),
        "from": "Relay <relay@nordlys.example>",
        "timeout": 2,
        "rules": [copy.deepcopy(rule) for rule in rules or (DECIDED,)],
    }


@pytest.fixture
def smtp(sandbox: SandboxServer) -> SandboxServer:
    sandbox.reset()
    return sandbox


def runtime(settings: Settings, section: dict[str, Any]) -> Runtime:
    return Runtime(
        settings.with_changes(
            targets={"mail": section},
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_countdown=1),
        )
    )


@pytest.fixture
def rt(settings: Settings, smtp: SandboxServer) -> Iterator[Runtime]:
    runtime_ = runtime(settings, mail_section(smtp))
    yield runtime_
    runtime_.redis.close()


def messages(sandbox: SandboxServer) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sandbox.state()["smtp"]["messages"]
    return found


def approval(state: str = "APPROVED", **status: Any) -> Any:
    payload = fixture_json("APPROVAL_REQUEST_STATUS_UPDATED")
    payload["status"].update(state=state, **status)
    return envelope("APPROVAL_REQUEST_STATUS_UPDATED", payload)


def test_the_mail_reaches_the_server_with_recipients_subject_and_body(
    rt: Runtime, smtp: SandboxServer
) -> None:
    event = approval()
    assert delivery.fan_out(rt, event, None) == ["mail"]
    outcome = delivery.run_delivery(rt, "mail", event)
    assert outcome.action == "applied"
    [mail] = messages(smtp)
    assert mail["from"] == "relay@nordlys.example"
    assert mail["to"] == ["anna@nordlys.example", "payroll@nordlys.example"]
    assert mail["subject"] == "Timesheet 2026-03-09 to 2026-03-15 of Anna Lindqvist: APPROVED"
    assert mail["body"] == (
        "Anna Lindqvist, 2026-03-09 to 2026-03-15: APPROVED.\nNote: Looks good & approved\n"
    )
    assert mail["message_id"] == outcome.remote_ids["approval-decided"]
    assert mail["message_id"].endswith("@nordlys.example>")


def test_a_rule_fires_once_per_event_however_often_it_is_delivered(
    rt: Runtime, smtp: SandboxServer
) -> None:
    event = approval()
    first = delivery.run_delivery(rt, "mail", event)
    again = delivery.run_delivery(rt, "mail", event)  # a retry or a redelivered task
    assert again.operations == ["approval-decided: sent before"]
    # Clockify sending the same body again: another event id, keys in another order.
    twice = approval()
    twice["payload"] = dict(reversed(list(twice["payload"].items())))
    delivery.run_delivery(rt, "mail", twice)
    assert len(messages(smtp)) == 1
    assert again.remote_ids == first.remote_ids
    # Another state of the same approval is another event.
    delivery.run_delivery(rt, "mail", approval("REJECTED", note="missing Friday"))
    assert [m["subject"][-8:] for m in messages(smtp)] == ["APPROVED", "REJECTED"]


def test_smtp_down_is_retried_then_dead_lettered_and_never_sent_twice(
    rt: Runtime, smtp: SandboxServer
) -> None:
    event = approval()
    smtp.sandbox.smtp.set_mode({"mode": "down"})
    for attempt in (1, 2):
        delivery.deliver_and_commit(rt, f"m{attempt}", "mail", event, attempt, False)
        assert rt.dlq.count() == 0  # retried
    delivery.deliver_and_commit(rt, "m3", "mail", event, 3, False)  # max_attempts = 3
    [letter] = rt.dlq.list()
    assert (letter.target, letter.error_kind) == ("mail", "TransientError")
    assert "unreachable" in letter.error and "127.0.0.1" in letter.error
    smtp.sandbox.smtp.set_mode({"mode": "accept"})
    # Replayed as a worker runs it: the letter leaves the DLQ once delivered.
    delivery.deliver_and_commit(rt, "r1", "mail", letter.envelope, 1, False, letter.id)
    assert rt.dlq.count() == 0
    assert delivery.run_delivery(rt, "mail", event).operations == ["approval-decided: sent before"]
    assert len(messages(smtp)) == 1


def test_refusals_are_transient_or_permanent_by_their_code(
    rt: Runtime, smtp: SandboxServer
) -> None:
    smtp.sandbox.smtp.set_mode({"mode": "refuse", "code": 451})
    with pytest.raises(TransientError, match="answered 451"):
        delivery.run_delivery(rt, "mail", approval())
    smtp.sandbox.smtp.set_mode({"mode": "refuse", "code": 550})
    with pytest.raises(PermanentError, match="answered 550"):
        delivery.run_delivery(rt, "mail", approval())
    assert messages(smtp) == []
    smtp.sandbox.smtp.set_mode({"mode": "accept"})
    delivery.run_delivery(rt, "mail", approval())  # refused is surely not sent: sent now
    assert len(messages(smtp)) == 1


def test_a_lost_answer_is_an_unknown_outcome_never_resent(rt: Runtime, smtp: SandboxServer) -> None:
    event = approval()
    smtp.sandbox.smtp.set_mode({"mode": "lose-reply"})
    with pytest.raises(TransientError) as info:
        delivery.run_delivery(rt, "mail", event)
    assert info.value.outcome_unknown
    smtp.sandbox.smtp.set_mode({"mode": "accept"})
    delivery.deliver_and_commit(rt, "m1", "mail", event, 1, False)
    [letter] = rt.dlq.list()
    assert letter.error_kind == "UnknownOutcomeError"
    assert len(messages(smtp)) == 1  # the server had it
    # The operator's call: replayed with force, as a worker runs it.
    delivery.deliver_and_commit(rt, "r1", "mail", letter.envelope, 1, True, letter.id)
    assert rt.dlq.count() == 0
    assert len(messages(smtp)) == 2


def test_rules_filter_by_state_project_and_user(settings: Settings, smtp: SandboxServer) -> None:
    on_project = {
        "name": "entry-on-project",
        "events": ["NEW_TIME_ENTRY"],
        "projects": [PROJECT],
        "to": ["team@nordlys.example"],
        "subject": "{owner}: {duration} on {project}",
        "body": "{description} ({date} {start} to {end})",
    }
    other_user = {**DECIDED, "name": "someone-else", "users": ["nobody"]}
    rt = runtime(settings, mail_section(smtp, DECIDED, on_project, other_user))
    assert delivery.run_delivery(rt, "mail", approval("PENDING")).action == "skipped"
    assert delivery.run_delivery(rt, "mail", approval("WITHDRAWN_APPROVAL")).action == "skipped"
    other = envelope("NEW_TIME_ENTRY", entry_payload(projectId="elsewhere", project=None))
    assert delivery.run_delivery(rt, "mail", other).action == "skipped"
    updated = envelope("TIME_ENTRY_UPDATED", entry_payload("TIME_ENTRY_UPDATED"))
    assert delivery.run_delivery(rt, "mail", updated).reason == (
        "no mail rule is for TIME_ENTRY_UPDATED"
    )
    assert messages(smtp) == []
    entry = entry_payload()
    assert entry["projectId"] == PROJECT
    delivery.run_delivery(rt, "mail", envelope("NEW_TIME_ENTRY", entry))
    delivery.run_delivery(rt, "mail", approval("REJECTED"))
    subjects = [m["subject"] for m in messages(smtp)]
    assert len(subjects) == 2 and subjects[1].endswith("REJECTED")
    assert subjects[0].startswith("Anna Lindqvist: ")
    rt.redis.close()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return path


RULE = """
[targets.mail]
from = "relay@nordlys.example"
[[targets.mail.rules]]
name = "r"
events = ["APPROVAL_REQUEST_STATUS_UPDATED"]
to = ["{creator_email}"]
subject = "Timesheet {period}"
"""


def test_template_and_rule_errors_are_refused_at_load(tmp_path: Path) -> None:
    env = {"SMTP_URL": "smtp://127.0.0.1:2525?starttls=false"}
    assert load_settings(env, write(tmp_path, RULE + 'body = "{note}"\n')).targets["mail"]
    bad = (
        RULE.replace("{period}", "{perod}").replace("{creator_email}", "{owner}")
        + 'body = "{description} {note!r} {0}"\nstates = ["DONE"]\nprojects = ["p"]\n'
    )
    misspelt = RULE + '[[targets.mail.rules]]\nname = "r"\nsubjekt = "x"\n'
    with pytest.raises(SettingsError) as info:
        load_settings(env, write(tmp_path, misspelt))
    assert info.value.problems == (
        "[[targets.mail.rules]] #2 subjekt: unknown key; did you mean subject?",
    )
    with pytest.raises(SettingsError) as info:
        load_settings(env, write(tmp_path, bad))
    problems = "\n".join(info.value.problems)
    for expected in (
        "#1 (r) body: {note!r} takes no format or conversion",
        "#1 (r) body: {0} is not a field name",
        "#1 (r) subject: unknown field {perod}",
        "#1 (r) body: unknown field {description}",
        "#1 (r) to: {owner} is not an address field",
        "#1 (r) states: unknown state DONE",
        "#1 (r) projects: applies to time-entry events only",
    ):
        assert expected in problems, problems
    with pytest.raises(SettingsError, match="SMTP_URL is not set"):
        load_settings({}, write(tmp_path, RULE + 'body = ""\n'))


def test_smtp_url_forms_and_secrecy() -> None:
    url = parse_smtp_url("smtp://me%40x:p%3Ass@mail.example:587")
    assert (url.host, url.port, url.tls, url.username) == ("mail.example", 587, "starttls", "me@x")
    assert url.password == Secret("p:ss") and "p:ss" not in repr(url)
    assert str(url) == "smtp://mail.example:587"
    assert parse_smtp_url("smtps://u:p@mail.example").port == 465
    assert parse_smtp_url("smtp://relay.local?starttls=false").tls == "none"
    with pytest.raises(ConfigurationError, match="in clear") as info:
        parse_smtp_url("smtp://u:hunter2@relay.local?starttls=false")
    assert "hunter2" not in info.value.message
    with pytest.raises(ConfigurationError, match="smtp:// or smtps://"):
        parse_smtp_url("http://relay.local")


def test_sandbox_state_reset_and_mode_over_http(smtp: SandboxServer) -> None:
    answer = httpx.put(f"{smtp.url}/_sandbox/smtp/mode", json={"mode": "refuse", "code": 451})
    assert answer.status_code == 200 and answer.json()["mode"] == "refuse"
    assert httpx.put(f"{smtp.url}/_sandbox/smtp/mode", json={"mode": "x"}).status_code == 400
    httpx.post(f"{smtp.url}/_sandbox/reset")
    state = httpx.get(f"{smtp.url}/_sandbox/state").json()["smtp"]
    assert (state["messages"], state["mode"]) == ([], "accept")
