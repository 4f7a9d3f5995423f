"""Mail rules with ``channel = "organi"``: Organi's configured mailing list, triggered through the
Organi fake over HTTP with the Organi target's credentials, at most once per (rule, event)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.processes import wait_until

from clockify_relay.connectors.mail.tests.test_mail import approval, mail_section, write
from clockify_relay.errors import TransientError
from clockify_relay.pipeline import delivery
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import RetryPolicy, Secret, Settings, SettingsError, load_settings

pytestmark = pytest.mark.integration

ORGANI_RULE = {
    "name": "approved-organi",
    "channel": "organi",
    "list": "timesheets-approved",
    "events": ["APPROVAL_REQUEST_STATUS_UPDATED"],
    "states": ["APPROVED"],
}


def organi_section(sandbox: SandboxServer) -> dict[str, Any]:
    return {
        "base_url": sandbox.base_urls["organi"],
        "token": Secret(sandbox.config.organi_token),
        "timeout": 1,
    }


@pytest.fixture
def rt(settings: Settings, clean_sandbox: SandboxServer) -> Iterator[Runtime]:
    rt = Runtime(
        settings.with_changes(
            targets={
                "mail": mail_section(clean_sandbox, ORGANI_RULE),
                "organi": organi_section(clean_sandbox),
            },
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_countdown=1),
        )
    )
    yield rt
    rt.redis.close()


def mailings(sandbox: SandboxServer) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sandbox.state()["organi"]["mailings"]
    return found


def test_the_list_is_sent_once_per_event_however_often_it_is_delivered(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    event = approval()
    first = delivery.run_delivery(rt, "mail", event)
    assert first.operations == ["approved-organi: Organi mailing list 'timesheets-approved' sent"]
    again = delivery.run_delivery(rt, "mail", event)  # a retry or a redelivered task
    assert again.operations == ["approved-organi: sent before"]
    assert mailings(clean_sandbox) == [{"list": "timesheets-approved"}]
    assert clean_sandbox.state()["smtp"]["messages"] == []  # not a mail of its own
    assert delivery.run_delivery(rt, "mail", approval("REJECTED")).action == "skipped"
    assert len(mailings(clean_sandbox)) == 1


def test_organi_down_is_retried_then_dead_lettered_and_never_sent_twice(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    event = approval()
    clean_sandbox.inject_fault("organi", status=503, count=3)
    for attempt in (1, 2):
        delivery.deliver_and_commit(rt, f"m{attempt}", "mail", event, attempt, False)
        assert rt.dlq.count() == 0  # retried
    delivery.deliver_and_commit(rt, "m3", "mail", event, 3, False)  # max_attempts = 3
    [letter] = rt.dlq.list()
    assert (letter.target, letter.error_kind) == ("mail", "TransientError")
    assert "503" in letter.error
    assert mailings(clean_sandbox) == []
    # Replayed as a worker runs it: the letter leaves the DLQ once delivered.
    delivery.deliver_and_commit(rt, "r1", "mail", letter.envelope, 1, False, letter.id)
    assert rt.dlq.count() == 0
    assert delivery.run_delivery(rt, "mail", event).operations == ["approved-organi: sent before"]
    assert len(mailings(clean_sandbox)) == 1


def test_a_lost_answer_is_an_unknown_outcome_never_resent(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    event = approval()
    clean_sandbox.inject_fault("organi", latency=2)  # longer than the client's 1 s timeout
    with pytest.raises(TransientError) as info:
        delivery.run_delivery(rt, "mail", event)
    assert info.value.outcome_unknown
    wait_until(lambda: len(mailings(clean_sandbox)) == 1, 10, "the late mailing")
    delivery.deliver_and_commit(rt, "m1", "mail", event, 1, False)
    [letter] = rt.dlq.list()
    assert letter.error_kind == "UnknownOutcomeError"
    assert len(mailings(clean_sandbox)) == 1  # Organi had it: not sent again


RULE = """
[targets.mail]
from = "relay@nordlys.example"
[[targets.mail.rules]]
name = "o"
events = ["APPROVAL_REQUEST_STATUS_UPDATED"]
channel = "organi"
"""
ORGANI = '[targets.organi]\nbase_url = "http://127.0.0.1:1/organi"\n'


def test_organi_rules_are_checked_at_load(tmp_path: Path) -> None:
    env = {"SMTP_URL": "smtp://127.0.0.1:2525?starttls=false", "ORGANI_TOKEN": "t"}
    settings = load_settings(env, write(tmp_path, RULE + 'list = "l"\n' + ORGANI))
    assert settings.targets["mail"]["rules"][0]["list"] == "l"
    with pytest.raises(SettingsError) as info:
        load_settings(env, write(tmp_path, RULE + 'subject = "s"\nto = ["a@b.example"]\n' + ORGANI))
    problems = "\n".join(info.value.problems)
    assert 'list: required for channel "organi"' in problems
    assert 'subject: not for channel "organi"' in problems
    assert 'to: not for channel "organi"' in problems
    with pytest.raises(SettingsError, match="needs the Organi target configured"):
        load_settings(env, write(tmp_path, RULE + 'list = "l"\n'))
    smtp_with_list = RULE.replace('channel = "organi"', 'list = "l"\nsubject = "s"\nbody = ""')
    with pytest.raises(SettingsError, match='list: only for channel "organi"'):
        load_settings(env, write(tmp_path, smtp_with_list + 'to = ["a@b.example"]\n'))
