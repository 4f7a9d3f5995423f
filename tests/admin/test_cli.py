"""The operator CLI (``dlq``, ``events``, ``admin-token``) against real Redis and the sandbox.

Dead letters are made for real: an entry the Everit config cannot map goes through the
``deliver`` task in-process and is dead-lettered as ConfigurationError; after the config is
fixed, replay delivers it. Settings come from the environment, as in production.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from click.testing import CliRunner, Result

from clockify_relay.admin import service, tokens
from clockify_relay.admin.cli import admin_token, dlq, events, targets
from clockify_relay.errors import PermanentError
from clockify_relay.pipeline import delivery, tasks, trace
from clockify_relay.pipeline import runtime as runtime_module
from clockify_relay.pipeline.runtime import Runtime, reset_runtime
from clockify_relay.sandbox.server import SandboxServer
from tests.inline_worker import run_queued
from tests.pipeline.conftest import (  # noqa: F401  (fixtures are used by name)
    clean_sandbox,
    entry_payload,
    envelope,
    worklogs,
)

UNMAPPED_TOML = "[targets.everit]\nenabled = true\n"
FIXED_TOML = "[targets.everit]\nenabled = true\n\n[targets.everit.defaults]\nissue_id = 10000\n"


class Env:
    """The CLI's environment for one test: a config file to rewrite and a runner."""

    def __init__(self, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.config = config
        self.monkeypatch = monkeypatch
        self.runner = CliRunner()

    def write_config(self, text: str) -> Runtime:
        """Rewrite the TOML config and rebuild the runtime, as a restarted CLI would."""
        self.config.write_text(text)
        return self.reload()

    def reload(self) -> Runtime:
        old = runtime_module._runtime
        if old is not None and "redis" in old.__dict__:
            old.redis.close()
        return reset_runtime()

    def run(self, group: Any, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(group, list(args), input=input, catch_exceptions=False)

    def json(self, group: Any, *args: str) -> Any:
        result = self.run(group, *args, "-o", "json")
        assert result.exit_code == 0, result.output
        return orjson.loads(result.stdout)


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    clean_sandbox: SandboxServer,  # noqa: F811
) -> Iterator[Env]:
    config = tmp_path / "relay.toml"
    config.write_text(UNMAPPED_TOML)
    for name in ("CLOCKIFY_API_KEY", "RELAY_ADMIN_JWT_SECRET", "BLIKK_APP_ID", "TRACKET_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RELAY_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("EVERIT_API_KEY", clean_sandbox.config.everit_api_key)
    monkeypatch.setenv("EVERIT_BASE_URL", clean_sandbox.base_urls["everit"])
    monkeypatch.setenv("RELAY_CONFIG", str(config))
    monkeypatch.setenv("COLUMNS", "250")  # rich tables wide enough to assert on
    monkeypatch.setattr(runtime_module, "_runtime", None)  # restored after the test
    env = Env(config, monkeypatch)
    env.reload()
    yield env
    current = runtime_module._runtime
    if current is not None and "redis" in current.__dict__:
        current.redis.close()


def dead_letter(event_type: str = "NEW_TIME_ENTRY", **changes: Any) -> tuple[str, dict[str, Any]]:
    """Run one event through route's bookkeeping and the real deliver task; it must fail."""
    rt = runtime_module.runtime()
    event = envelope(event_type, entry_payload(event_type, **changes))
    trace.store_envelope(rt.redis, rt.keys, event, rt.settings.trace_ttl)
    tasks.deliver("everit", event)  # in-process: ConfigurationError → dead letter
    letters = [x for x in rt.dlq.list() if x.event_id == event["event_id"]]
    assert len(letters) == 1, "the unmapped entry was not dead-lettered"
    return letters[0].id, event


def new_entry_id() -> str:
    return uuid.uuid4().hex[:24]


# --- parse_when ------------------------------------------------------------------------------


def test_parse_when_forms() -> None:
    now = 1_800_000_000.0
    assert service.parse_when("2h", now) == now - 7200
    assert service.parse_when("3d", now) == now - 3 * 86400
    assert service.parse_when("90s", now) == now - 90
    assert service.parse_when("1W", now) == now - 7 * 86400
    assert service.parse_when("2026-03-10") == 1773100800.0
    assert service.parse_when("2026-03-10T09:00:00Z") == 1773133200.0
    assert service.parse_when("2026-03-10T09:00") == 1773133200.0  # naive means UTC
    assert service.parse_when("2026-03-10T10:00:00+01:00") == 1773133200.0
    for bad in ("", "yesterday", "2h ago", "-3d", "2026-13-01", "12"):
        with pytest.raises(service.OpsError):
            service.parse_when(bad)


def test_filter_refuses_since_after_until() -> None:
    with pytest.raises(service.OpsError, match="later than"):
        service.LetterFilter.parse(since="2026-03-10", until="2026-03-01")


# --- dlq list / show -----------------------------------------------------------------------


def test_list_table_json_and_filters(cli: Env) -> None:
    first, _ = dead_letter("NEW_TIME_ENTRY", id=new_entry_id())
    second, _ = dead_letter("TIME_ENTRY_UPDATED", id=new_entry_id())

    table = cli.run(dlq, "list")
    assert table.exit_code == 0, table.output
    for expected in (
        first,
        second,
        "ConfigurationError",
        "NEW_TIME_ENTRY",
        "TIME_ENTRY_UPDATED",
        "everit",
    ):
        assert expected in table.output

    rows = cli.json(dlq, "list")
    assert [r["id"] for r in rows] == [first, second]  # oldest last failure first
    assert rows[0]["attempts"] == 1 and rows[0]["error_kind"] == "ConfigurationError"
    assert rows[0]["last_failure"].endswith("Z")

    updated_only = cli.json(dlq, "list", "--event-type", "TIME_ENTRY_UPDATED")
    assert [r["id"] for r in updated_only] == [second]
    assert cli.json(dlq, "list", "--target", "tracket") == []
    assert len(cli.json(dlq, "list", "--target", "everit", "--since", "1h")) == 2
    assert cli.json(dlq, "list", "--until", "2000-01-01") == []
    assert cli.json(dlq, "list", "--since", "2000-01-01T00:00:00Z", "--until", "1s") == []

    bad = cli.run(dlq, "list", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "not a time" in bad.output


def test_list_empty_says_so(cli: Env) -> None:
    result = cli.run(dlq, "list")
    assert result.exit_code == 0
    assert "no dead letters" in result.output


def test_show_whole_record(cli: Env) -> None:
    letter_id, event = dead_letter()
    detail = cli.json(dlq, "show", letter_id)
    assert detail["id"] == letter_id
    assert detail["envelope"] == event
    assert detail["event_id"] == event["event_id"]
    assert len(detail["history"]) == 1
    assert detail["history"][0]["kind"] == "ConfigurationError"
    assert detail["error"]  # the message tells the operator what to add

    table = cli.run(dlq, "show", letter_id)
    assert table.exit_code == 0
    assert event["event_id"] in table.output
    assert "envelope" in table.output
    assert event["payload"]["id"] in table.output


def test_unknown_id_is_exit_1_with_a_message(cli: Env) -> None:
    for args in (("show", "nope"), ("replay", "nope"), ("purge", "nope")):
        result = cli.run(dlq, *args)
        assert result.exit_code == 1, args
        assert "no dead letter with id 'nope'" in result.output


def test_redis_unreachable_is_a_clear_exit_1(cli: Env) -> None:
    cli.monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    cli.reload()
    result = cli.run(dlq, "list")
    assert result.exit_code == 1
    assert "cannot use Redis" in result.output
    assert "hunter2" not in result.output


# --- dlq replay -----------------------------------------------------------------------------


def test_replay_queues_for_the_workers_keeps_history_then_fixed_delivers_once(
    cli: Env,
    clean_sandbox: SandboxServer,  # noqa: F811
) -> None:
    letter_id, event = dead_letter()

    # The CLI only queues: nothing is delivered and the letter stays until a worker ran it.
    queued = cli.json(dlq, "replay", letter_id, "--no-wait")
    assert [(r["id"], r["state"]) for r in queued["results"]] == [(letter_id, "queued")]
    assert queued["queued"] == 1 and cli.json(dlq, "list")[0]["id"] == letter_id
    assert run_queued(runtime_module.runtime()) == 1  # still unmapped: fails again
    [kept] = cli.json(dlq, "list")
    assert kept["id"] == letter_id and kept["attempts"] == 2
    history = cli.json(dlq, "show", letter_id)["history"]
    assert [h["kind"] for h in history] == ["ConfigurationError", "ConfigurationError"]
    assert worklogs(clean_sandbox) == []

    cli.write_config(FIXED_TOML)  # the workers restarted with the fix
    fixed = cli.run(dlq, "replay", letter_id, "--no-wait")
    assert fixed.exit_code == 0, fixed.output
    assert "queued" in fixed.output
    assert run_queued(runtime_module.runtime()) == 1
    assert cli.json(dlq, "list") == []
    assert len(worklogs(clean_sandbox)) == 1

    # The letter is gone: replaying it again is an unknown id, and nothing is booked twice.
    gone = cli.run(dlq, "replay", letter_id)
    assert gone.exit_code == 1
    assert run_queued(runtime_module.runtime()) == 0
    assert len(worklogs(clean_sandbox)) == 1

    # The replay is in the event's trace.
    view = cli.json(events, "show", event["event_id"])
    outcomes = [r["outcome"] for r in view["trace"] if r["stage"] == "deliver"]
    assert outcomes == ["failed", "dead-lettered", "failed", "dead-lettered", "applied"]
    assert view["trace"][-1]["remote_ids"]
    assert view["dead_letters"] == []


def test_replay_that_fails_again_keeps_the_original_error_first_in_its_history(
    cli: Env,
) -> None:
    letter_id, _ = dead_letter()
    rt = runtime_module.runtime()
    original = rt.dlq.get(letter_id)
    assert original is not None
    for _ in range(60):  # more failures than a letter keeps
        rt.dlq.add("everit", original.envelope, PermanentError("400 from the target"), 1)
    history = cli.json(dlq, "show", letter_id)["history"]
    assert history[0]["kind"] == "ConfigurationError"  # the original error is never lost
    assert history[-1]["kind"] == "PermanentError" and len(history) == 50


def test_wait_follows_replays_until_the_workers_settle_them(
    cli: Env,
    clean_sandbox: SandboxServer,  # noqa: F811
) -> None:
    letter_id, _ = dead_letter()
    cli.write_config(FIXED_TOML)
    rt = runtime_module.runtime()
    # A worker that takes the message a moment after the CLI queued it.
    worker = threading.Timer(0.5, run_queued, args=(Runtime(rt.settings),))
    worker.start()
    report = cli.json(dlq, "replay", letter_id, "--wait", "--timeout", "20")
    worker.join()
    [result] = report["results"]
    assert (result["state"], result["ok"]) == ("delivered", True), result
    assert report["delivered"] == 1 and cli.json(dlq, "list") == []


def test_bulk_dry_run_changes_nothing_then_queues_all(
    cli: Env,
    clean_sandbox: SandboxServer,  # noqa: F811
) -> None:
    ids = [dead_letter(id=new_entry_id())[0] for _ in range(3)]
    before = cli.json(dlq, "list")

    dry = cli.run(dlq, "replay", "--all", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would queue" in dry.output
    assert all(i in dry.output for i in ids)
    dry_json = cli.json(dlq, "replay", "--all", "--dry-run")
    assert [r["id"] for r in dry_json["results"]] == ids
    assert all(r["dry_run"] for r in dry_json["results"])
    assert all("delivered to everit by the workers" in r["message"] for r in dry_json["results"])
    assert cli.json(dlq, "list") == before  # attempts and times untouched
    assert run_queued(runtime_module.runtime()) == 0  # nothing was queued
    assert worklogs(clean_sandbox) == []

    cli.write_config(FIXED_TOML)
    done = cli.run(dlq, "replay", "--all", "--no-wait")
    assert done.exit_code == 0, done.output
    assert "replay summary" in done.output and "queued: 3" in done.output
    assert run_queued(runtime_module.runtime()) == 3
    assert cli.json(dlq, "list") == []
    assert len(worklogs(clean_sandbox)) == 3


def test_dry_run_of_a_letter_for_a_paused_target_says_so(cli: Env) -> None:
    letter_id, _ = dead_letter()
    assert cli.run(targets, "pause", "everit", "--reason", "maintenance").exit_code == 0
    [result] = cli.json(dlq, "replay", letter_id, "--dry-run")["results"]
    assert "everit is paused (maintenance" in result["message"]
    assert "held until resumed" in result["message"]
    listed = {t["target"]: t for t in cli.json(targets, "list")["targets"]}
    assert listed["everit"]["state"] == "paused" and listed["everit"]["reason"] == "maintenance"
    assert cli.run(targets, "pause", "nosuch").exit_code == 2


def test_bulk_replay_respects_filters_and_reports_unknown_ids(
    cli: Env,
    clean_sandbox: SandboxServer,  # noqa: F811
) -> None:
    created, _ = dead_letter("NEW_TIME_ENTRY", id=new_entry_id())
    updated, _ = dead_letter("TIME_ENTRY_UPDATED", id=new_entry_id())
    cli.write_config(FIXED_TOML)

    report = cli.json(dlq, "replay", "--all", "--event-type", "TIME_ENTRY_UPDATED", "--no-wait")
    assert [(r["id"], r["ok"]) for r in report["results"]] == [(updated, True)]
    assert run_queued(runtime_module.runtime()) == 1
    assert [r["id"] for r in cli.json(dlq, "list")] == [created]

    mixed = cli.run(dlq, "replay", created, "missing-id", "--no-wait", "-o", "json")
    assert mixed.exit_code == 1  # one id was unknown
    results = {r["id"]: r for r in orjson.loads(mixed.stdout)["results"]}
    assert results[created]["ok"] is True
    assert results["missing-id"] == {**results["missing-id"], "ok": False, "found": False}
    assert run_queued(runtime_module.runtime()) == 1
    assert len(worklogs(clean_sandbox)) == 2


@pytest.mark.parametrize(
    "args",
    [
        (),  # neither ids nor --all
        ("abc", "--all"),  # both
        ("abc", "--target", "everit"),  # filters without --all
        ("--all", "--force"),  # force must name ids
        ("--all", "--since", "soon"),  # bad time
    ],
)
def test_replay_usage_errors(cli: Env, args: tuple[str, ...]) -> None:
    dead_letter()
    before = cli.json(dlq, "list")
    result = cli.run(dlq, "replay", *args)
    assert result.exit_code == 2, result.output
    assert cli.json(dlq, "list") == before


# --- dlq purge ------------------------------------------------------------------------------


def test_purge_by_id_and_all(cli: Env) -> None:
    one, _ = dead_letter(id=new_entry_id())
    two, _ = dead_letter("TIME_ENTRY_UPDATED", id=new_entry_id())
    three, _ = dead_letter(id=new_entry_id())

    result = cli.run(dlq, "purge", one)
    assert result.exit_code == 0 and "purged 1" in result.output
    assert [r["id"] for r in cli.json(dlq, "list")] == [two, three]

    declined = cli.run(dlq, "purge", "--all", input="n\n")
    assert declined.exit_code == 1  # aborted
    assert len(cli.json(dlq, "list")) == 2

    filtered = cli.run(dlq, "purge", "--all", "--event-type", "TIME_ENTRY_UPDATED", input="y\n")
    assert filtered.exit_code == 0, filtered.output
    assert [r["id"] for r in cli.json(dlq, "list")] == [three]

    assert cli.run(dlq, "purge", "--all", "--yes").exit_code == 0
    assert cli.json(dlq, "list") == []
    assert "no dead letters match" in cli.run(dlq, "purge", "--all", "--yes").output
    assert cli.run(dlq, "purge").exit_code == 2


def test_purge_prints_machine_readable_results_with_o_json(cli: Env) -> None:
    one, _ = dead_letter(id=new_entry_id())
    two, _ = dead_letter("TIME_ENTRY_UPDATED", id=new_entry_id())
    three, _ = dead_letter(id=new_entry_id())

    assert cli.json(dlq, "purge", one) == {"removed": 1, "missing": []}

    mixed = cli.run(dlq, "purge", two, "ghost", "-o", "json")
    assert mixed.exit_code == 1  # an unknown id, as in table mode
    assert orjson.loads(mixed.stdout) == {"removed": 1, "missing": ["ghost"]}

    # --all asks first; the question and the preview go to stderr so stdout stays JSON.
    declined = cli.run(dlq, "purge", "--all", "-o", "json", input="n\n")
    assert declined.exit_code == 1 and declined.stdout == ""
    assert [r["id"] for r in cli.json(dlq, "list")] == [three]
    confirmed = cli.run(dlq, "purge", "--all", "-o", "json", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert orjson.loads(confirmed.stdout) == {"removed": 1, "missing": []}
    assert three in confirmed.stderr and "purge 1 dead letter(s)?" in confirmed.stderr

    assert cli.json(dlq, "purge", "--all", "--yes") == {"removed": 0, "missing": []}


# --- events show ----------------------------------------------------------------------------


def test_events_show(cli: Env) -> None:
    letter_id, event = dead_letter()
    view = cli.json(events, "show", event["event_id"])
    assert view["summary"]["event_type"] == "NEW_TIME_ENTRY"
    assert view["summary"]["entry_id"] == event["entity_id"]
    assert view["envelope"] == event
    failed = next(r for r in view["trace"] if r["outcome"] == "failed")
    assert failed["target"] == "everit" and failed["error_kind"] == "ConfigurationError"
    assert [d["id"] for d in view["dead_letters"]] == [letter_id]

    table = cli.run(events, "show", event["event_id"])
    assert table.exit_code == 0
    for expected in ("NEW_TIME_ENTRY", "dead-lettered", "ConfigurationError", letter_id):
        assert expected in table.output

    missing = cli.run(events, "show", "no-such-event")
    assert missing.exit_code == 1
    assert "no event with id 'no-such-event'" in missing.output


# --- admin-token ----------------------------------------------------------------------------


def test_admin_token_needs_the_secret(cli: Env) -> None:
    result = cli.run(admin_token)
    assert result.exit_code == 1
    assert "RELAY_ADMIN_JWT_SECRET" in result.output


def test_admin_token_mints_a_verifiable_hs256_token(cli: Env) -> None:
    secret = "s3cret-" + "x" * 32
    cli.monkeypatch.setenv("RELAY_ADMIN_JWT_SECRET", secret)
    cli.reload()
    result = cli.run(admin_token, "--ttl", "120", "--subject", "alice")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert secret not in result.output
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = tokens.verify_admin_token(secret, token)
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 120
    assert abs(claims["iat"] - time.time()) < 5
    with pytest.raises(tokens.TokenError):
        tokens.verify_admin_token("another-secret-of-enough-length!!", token)
    assert cli.run(admin_token, "--ttl", "0").exit_code == 2


def test_a_letter_whose_replay_is_under_way_is_not_queued_twice(cli: Env) -> None:
    letter_id, _ = dead_letter()
    assert cli.run(targets, "pause", "everit").exit_code == 0
    first = cli.json(dlq, "replay", letter_id, "--no-wait")
    assert first["queued"] == 1
    assert run_queued(runtime_module.runtime()) == 1  # held: everit is paused
    second = cli.json(dlq, "replay", letter_id, "--no-wait")
    [result] = second["results"]
    assert second["queued"] == 0 and result["state"] == "held"
    assert "already under way" in result["message"]
    assert run_queued(runtime_module.runtime()) == 0
    forced = cli.json(dlq, "replay", letter_id, "--no-wait", "--force")
    assert forced["queued"] == 1  # --force queues it all the same


def test_events_list_filters_by_entry_target_and_outcome(cli: Env) -> None:
    rt = runtime_module.runtime()
    first = envelope("NEW_TIME_ENTRY", entry_payload(id=new_entry_id()))
    second = envelope("NEW_TIME_ENTRY", entry_payload(id=new_entry_id()))
    for event in (first, second):
        delivery.fan_out(rt, event, None)
    assert run_queued(rt) == 2  # unmapped: both dead-lettered at everit
    listed = cli.json(events, "list", "--since", "5m")["events"]
    assert [e["event_id"] for e in listed] == [second["event_id"], first["event_id"]]
    assert listed[0]["outcomes"] == {"everit": "dead-lettered"}
    by_entry = cli.json(events, "list", "--entry", first["entity_id"])["events"]
    assert [e["event_id"] for e in by_entry] == [first["event_id"]]
    dead = cli.json(events, "list", "--target", "everit", "--outcome", "dead-lettered")
    assert dead["count"] == 2
    assert cli.json(events, "list", "--outcome", "applied")["count"] == 0
    assert cli.json(events, "list", "--target", "blikk")["count"] == 0
    assert cli.json(events, "list", "--limit", "1")["count"] == 1
    assert cli.run(events, "list", "--since", "soon").exit_code == 2
