"""`clockify-relay check`: validates config, probes targets, lists Blikk look-ups."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from click.testing import CliRunner

from clockify_relay.admin import checks
from clockify_relay.cli import main
from clockify_relay.embedded_redis import free_port, redis_server_binary
from clockify_relay.sandbox import relay_config
from clockify_relay.sandbox.server import SandboxServer

pytestmark = pytest.mark.integration


def configure(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
    **env: str,
) -> None:
    for name in ("CLOCKIFY_WEBHOOK_TOKENS", "CLOCKIFY_ADDON_KEY", "CLOCKIFY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    path = relay_config.write_toml(
        tmp_path / "relay.toml", relay_config.sandbox_targets(sandbox.base_urls)
    )
    monkeypatch.setenv("RELAY_CONFIG", str(path))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RELAY_KEY_PREFIX", key_prefix)
    for name, value in {
        **relay_config.sandbox_env(sandbox.config, sandbox.base_urls),
        **env,
    }.items():
        monkeypatch.setenv(name, value)


def test_check_probes_every_target_and_lists_blikk_lookups(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    configure(monkeypatch, tmp_path, sandbox, redis_url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="tok")
    result = CliRunner().invoke(main, ["check", "--probe", "--lookups"])
    assert result.exit_code == 0, result.output
    assert "webhooks: 1 token(s)" in result.output
    assert "targets enabled: everit, tracket, blikk" in result.output
    assert "blikk users" in result.output and "blikk activities" in result.output
    assert sandbox.config.blikk_app_secret not in result.output


def test_check_fails_without_webhook_verification_or_with_bad_credentials(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    configure(
        monkeypatch, tmp_path, sandbox, redis_url, key_prefix, EVERIT_API_KEY="wrong-everit-key"
    )
    result = CliRunner().invoke(main, ["check", "--probe"])
    assert result.exit_code == 1
    assert "NOT CONFIGURED" in result.output
    assert "everit: PermanentError" in result.output
    assert "wrong-everit-key" not in result.output


def test_check_reports_bad_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[targets.everit\n")
    monkeypatch.setenv("RELAY_CONFIG", str(bad))
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code != 0
    assert "not valid TOML" in str(result.exception) + result.output


def test_check_reports_an_unreachable_redis_as_an_error_and_claims_no_target_works(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    key_prefix: str,
) -> None:
    down = "redis://:hunter2@127.0.0.1:1/0"
    configure(monkeypatch, tmp_path, sandbox, down, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="tok")
    for args in ([], ["--probe"], ["--probe", "--lookups"]):
        result = CliRunner().invoke(main, ["check", *args])
        assert result.exit_code == 1, (args, result.output)
        assert "redis: UNREACHABLE" in result.output and "127.0.0.1:1" in result.output
        assert "accepted" not in result.output and " OK " not in result.output
        assert "users" not in result.output  # no look-ups without a working relay
        assert "hunter2" not in result.output

    report = orjson.loads(CliRunner().invoke(main, ["check", "--probe", "-o", "json"]).stdout)
    assert report["ok"] is False
    assert report["redis"] == {**report["redis"], "ok": False, "error": "ConnectionError"}
    assert [t["probed"] for t in report["targets"]] == [False] * 5
    assert "hunter2" not in orjson.dumps(report).decode()


def test_check_names_each_target_once_per_line(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    configure(monkeypatch, tmp_path, sandbox, redis_url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="tok")
    result = CliRunner().invoke(main, ["check", "--probe"])
    assert result.exit_code == 0, result.output
    for target in ("everit", "tracket", "blikk", "organi"):
        [line] = [x for x in result.output.splitlines() if x.strip().startswith(f"{target}:")]
        assert target not in line.split(":", 1)[1].split(" at ")[0], line
    assert "redis: ok" in result.output


def test_check_lists_blikk_lookups_as_tables_and_as_json(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    configure(monkeypatch, tmp_path, sandbox, redis_url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="tok")
    monkeypatch.setenv("COLUMNS", "200")
    table = CliRunner().invoke(main, ["check", "--lookups"])
    assert table.exit_code == 0, table.output
    assert "{'id'" not in table.output and "'name'" not in table.output
    users = table.output[table.output.index("users") :]
    assert "Anna Lindqvist" in users and "│" in users  # a rich table, one row per user
    assert "time articles" in table.output or "time_articles" in table.output

    result = CliRunner().invoke(main, ["check", "--probe", "--lookups", "-o", "json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["ok"] is True
    assert report["redis"]["ok"] is True
    assert report["webhooks"] == {**report["webhooks"], "ok": True, "tokens": 1}
    assert [t["target"] for t in report["targets"]] == [
        "everit",
        "tracket",
        "blikk",
        "organi",
        "mail",
    ]
    assert all(t["ok"] and t["probed"] for t in report["targets"])
    everit = report["targets"][0]
    assert everit["message"].startswith("API key accepted at ")
    lookups = report["targets"][2]["lookups"]
    assert {"id": 3, "name": "Anna Lindqvist"} in lookups["users"]
    assert set(lookups) >= {"users", "projects", "activities", "time_codes", "time_articles"}
    assert sandbox.config.blikk_app_secret not in result.output


def test_check_json_reports_failures_with_their_kind(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    configure(
        monkeypatch, tmp_path, sandbox, redis_url, key_prefix, EVERIT_API_KEY="wrong-everit-key"
    )
    result = CliRunner().invoke(main, ["check", "--probe", "-o", "json"])
    assert result.exit_code == 1
    report = orjson.loads(result.stdout)
    assert report["ok"] is False
    assert report["webhooks"]["ok"] is False
    everit = report["targets"][0]
    assert everit == {**everit, "target": "everit", "ok": False, "error_kind": "PermanentError"}
    assert "wrong-everit-key" not in result.output


def test_check_json_reports_a_bad_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[targets.everit\n")
    monkeypatch.setenv("RELAY_CONFIG", str(bad))
    result = CliRunner().invoke(main, ["check", "-o", "json"])
    assert result.exit_code == 2
    report = orjson.loads(result.stdout)
    assert report["ok"] is False and "not valid TOML" in report["error"]


def test_check_notes_target_variables_without_a_table(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    configure(monkeypatch, tmp_path, sandbox, redis_url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="tok")
    path = tmp_path / "relay.toml"
    text = path.read_text()
    path.write_text(text[: text.index("[targets.tracket]")])  # everit only
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert "targets enabled: everit\n" in result.output
    assert "note: TRACKET_TOKEN is set but there is no [targets.tracket] table" in result.output
    report = orjson.loads(CliRunner().invoke(main, ["check", "-o", "json"]).stdout)
    assert [t["target"] for t in report["targets"]] == ["everit"]
    assert any(note.startswith("BLIKK_APP_ID is set") for note in report["notes"])


def test_check_reports_every_configuration_problem_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "relay.toml"
    bad.write_text(
        '[retyr]\nmax_attempts = 3\n\n[targets.tracket]\nenabled = "false"\ntimout = 5\n'
        "\n[targets.blikk.users]\n\n[targets.evrit]\n"
    )
    monkeypatch.setenv("RELAY_CONFIG", str(bad))
    expected = [
        "[retyr]: unknown table; did you mean [retry]?",
        "[targets.tracket] timout: unknown key; did you mean timeout?",
        "[targets.evrit]: unknown target; did you mean [targets.everit]?",
        '[targets.tracket] enabled: must be true or false, got "false" '
        "(a string: write it without quotes)",
    ]
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        "configuration error: 4 problems (nothing else checked):",
        *(f"  {problem}" for problem in expected),
    ]
    result = CliRunner().invoke(main, ["check", "-o", "json"])
    assert result.exit_code == 2
    report = orjson.loads(result.stdout)
    assert report["ok"] is False and report["problems"] == expected


def test_check_reports_a_config_directory_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RELAY_CONFIG", str(tmp_path))
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 2 and result.exception is not None
    assert isinstance(result.exception, SystemExit)
    assert result.output == (
        f"configuration error: config file {tmp_path} is a directory, not a TOML file\n"
    )


def test_check_reports_a_visibility_timeout_a_worker_would_refuse(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    configure(
        monkeypatch,
        tmp_path,
        sandbox,
        redis_url,
        key_prefix,
        CLOCKIFY_WEBHOOK_TOKENS="tok",
        RELAY_VISIBILITY_TIMEOUT="60",
    )
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 1, result.output
    assert "worker: WOULD NOT START" in result.output
    assert "RELAY_VISIBILITY_TIMEOUT=60s is too short" in result.output
    as_json = CliRunner().invoke(main, ["check", "-o", "json"])
    report = orjson.loads(as_json.output)
    assert report["ok"] is False
    assert report["worker"]["ok"] is False
    # The worker itself refuses to start with the same message.
    worker = CliRunner().invoke(main, ["worker"])
    assert worker.exit_code != 0
    assert "is too short" in worker.output


# --- Redis's own settings -------------------------------------------------------------------


class ThrowawayRedis:
    """A redis-server of this test's own, started with the settings under test."""

    def __init__(self, tmp_path: Path, *options: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(tmp_path),
                "--save",
                "",
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert self.process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def throwaway(tmp_path: Path) -> Iterator[Callable[..., ThrowawayRedis]]:
    started: list[ThrowawayRedis] = []

    def start(*options: str) -> ThrowawayRedis:
        server = ThrowawayRedis(tmp_path / f"redis{len(started)}", *options)
        started.append(server)
        return server

    for n in range(4):
        (tmp_path / f"redis{n}").mkdir()
    yield start
    for server in started:
        server.stop()


def check_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["check", *args, "-o", "json"])
    return result.exit_code, orjson.loads(result.stdout)


def test_check_refuses_an_evicting_redis(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    key_prefix: str,
    throwaway: Callable[..., ThrowawayRedis],
) -> None:
    server = throwaway("--maxmemory-policy", "allkeys-lru", "--appendonly", "yes")
    configure(monkeypatch, tmp_path, sandbox, server.url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="t")
    code, report = check_json()
    assert code == 1 and report["ok"] is False
    assert report["redis"]["ok"] is False and report["redis"]["error"] is None
    [problem] = report["redis"]["problems"]
    assert problem.startswith("maxmemory-policy is allkeys-lru")
    assert "set maxmemory-policy noeviction" in problem
    assert report["redis"]["config"]["maxmemory-policy"] == "allkeys-lru"

    text = CliRunner().invoke(main, ["check"])
    assert text.exit_code == 1
    assert f"redis: WRONG (127.0.0.1:{server.port}/0)" in text.output
    assert "  error: maxmemory-policy is allkeys-lru" in text.output


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-random", "volatile-ttl"])
def test_check_refuses_every_eviction_policy(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    key_prefix: str,
    throwaway: Callable[..., ThrowawayRedis],
    policy: str,
) -> None:
    server = throwaway("--maxmemory-policy", policy)
    configure(monkeypatch, tmp_path, sandbox, server.url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="t")
    code, report = check_json()
    assert code == 1 and report["redis"]["problems"][0].startswith(f"maxmemory-policy is {policy}")


def test_check_warns_about_aof_off_and_everysec_and_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    key_prefix: str,
    throwaway: Callable[..., ThrowawayRedis],
) -> None:
    off = throwaway("--appendonly", "no")
    configure(monkeypatch, tmp_path, sandbox, off.url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="t")
    code, report = check_json()
    assert code == 0 and report["ok"] is True, report  # warnings leave it ok
    [warning] = report["warnings"]
    assert warning.startswith("AOF is off (appendonly no)")
    assert "set appendonly yes and appendfsync always" in warning

    everysec = throwaway("--appendonly", "yes", "--appendfsync", "everysec")
    monkeypatch.setenv("REDIS_URL", everysec.url)
    code, report = check_json()
    assert code == 0 and report["ok"] is True
    [warning] = report["warnings"]
    assert warning.startswith("appendfsync is everysec: up to 1 s of accepted webhooks")
    assert "set appendfsync always" in warning
    text = CliRunner().invoke(main, ["check"])
    assert text.exit_code == 0
    assert "warning: appendfsync is everysec" in text.output
    assert "maxmemory-policy noeviction, appendonly yes, appendfsync everysec" in text.output

    good = throwaway("--appendonly", "yes", "--appendfsync", "always")
    monkeypatch.setenv("REDIS_URL", good.url)
    code, report = check_json()
    assert code == 0 and report["warnings"] == [] and report["redis"]["problems"] == []


def test_check_warns_when_redis_refuses_config_get(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    key_prefix: str,
    throwaway: Callable[..., ThrowawayRedis],
) -> None:
    # As managed Redis does: CONFIG renamed away.
    server = throwaway("--rename-command", "CONFIG", "")
    configure(monkeypatch, tmp_path, sandbox, server.url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="t")
    code, report = check_json()
    assert code == 0 and report["ok"] is True, report
    assert report["redis"]["config"] is None
    [warning] = report["warnings"]
    assert warning.startswith("could not read Redis config")
    text = CliRunner().invoke(main, ["check"])
    assert "warning: could not read Redis config" in text.output


def test_check_on_the_test_redis_reports_its_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    configure(monkeypatch, tmp_path, sandbox, redis_url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="t")
    _, report = check_json()
    config = report["redis"]["config"]
    assert set(config) == {"maxmemory-policy", "appendonly", "appendfsync"}
    assert report["redis"]["source"] == "REDIS_URL"
    # Whatever it runs with, eviction is an error and anything short of AOF + always a warning.
    assert (config["maxmemory-policy"] == "noeviction") == (report["redis"]["problems"] == [])
    durable = config["appendonly"] == "yes" and config["appendfsync"] == "always"
    assert durable == (report["warnings"] == [])


def test_check_calls_no_target_enabled_an_error(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    configure(monkeypatch, tmp_path, sandbox, redis_url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS="t")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    monkeypatch.setenv("RELAY_CONFIG", str(empty))
    code, report = check_json()
    assert code == 1 and report["ok"] is False
    assert report["errors"] == [checks.NO_TARGET]
    text = CliRunner().invoke(main, ["check"])
    assert text.exit_code == 1
    assert "targets enabled: NONE" in text.output
    assert "error: no target enabled: every webhook would be accepted (202)" in text.output


def test_unreadable_config_reply_is_a_warning_not_a_crash() -> None:
    class Refusing:
        def config_get(self, name: str) -> dict[str, str]:
            raise redis.ResponseError("NOPERM this user has no permissions to run 'config'")

    class Silent:
        def config_get(self, name: str) -> dict[str, str]:
            return {}

    refused = checks.check_redis_settings(Refusing())  # type: ignore[arg-type]
    assert refused.problems == [] and refused.config is None
    assert refused.warnings[0].startswith("could not read Redis config (CONFIG GET refused: NOPERM")
    silent = checks.check_redis_settings(Silent())  # type: ignore[arg-type]
    assert silent.problems == []
    assert silent.warnings[0].startswith("could not read Redis config (maxmemory-policy, ")


def test_check_counts_tokens_stored_by_webhooks_register_as_configured(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    from clockify_relay.clockify.token_store import TokenStore

    configure(monkeypatch, tmp_path, sandbox, redis_url, key_prefix)
    before = orjson.loads(CliRunner().invoke(main, ["check", "-o", "json"]).stdout)
    assert before["webhooks"]["ok"] is False
    client = redis.Redis.from_url(redis_url)
    TokenStore(client, key_prefix).add("NEW_TIME_ENTRY", "stored-token")
    client.close()
    after = orjson.loads(CliRunner().invoke(main, ["check", "-o", "json"]).stdout)
    assert after["webhooks"] == {**after["webhooks"], "ok": True, "stored_tokens": 1}


def test_check_reports_too_few_replicas_for_the_wait_it_is_configured_with(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: SandboxServer,
    redis_url: str,
    key_prefix: str,
) -> None:
    configure(
        monkeypatch,
        tmp_path,
        sandbox,
        redis_url,
        key_prefix,
        CLOCKIFY_WEBHOOK_TOKENS="tok",
        RELAY_REDIS_MIN_REPLICAS="1",
        RELAY_REDIS_TIMEOUT="2",
    )
    result = CliRunner().invoke(main, ["check", "-o", "json"])
    report = orjson.loads(result.stdout)
    assert result.exit_code == 1
    assert report["replication"]["ok"] is False and report["replication"]["problems"]
    text = CliRunner().invoke(main, ["check"]).output
    assert "replication: WRONG (direct" in text
