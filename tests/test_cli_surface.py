"""The command line's surface: -h and --version, -o json on every command that prints data,
``dlq list`` within 100 columns, and how commands find the embedded Redis of a local ``run``."""

from __future__ import annotations

import importlib.metadata
import re
import time
from collections.abc import Iterator
from pathlib import Path

import click
import orjson
import pytest
import redis
from click.testing import CliRunner

from clockify_relay.admin import tokens
from clockify_relay.admin.cli import _age
from clockify_relay.cli import main
from clockify_relay.embedded_redis import (
    URL_FILE,
    AlreadyRunning,
    LocalRedis,
    discover_url,
    free_port,
    local_dir,
)
from clockify_relay.errors import ConfigurationError
from clockify_relay.pipeline import runtime as runtime_module
from clockify_relay.pipeline.runtime import Runtime, reset_runtime
from clockify_relay.settings import Settings

# Commands that run something rather than print data (the liveness probe answers by its exit
# status): no -o.
SERVERS = {"run", "serve", "worker", "scheduler", "sandbox", "worker-alive"}


def commands(
    group: click.Group = main, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and group under ``group``, with the words that invoke it."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


ALL = list(commands())


def test_the_walk_finds_the_commands() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {"check", "dlq list", "dlq show", "dlq purge", "events show", "admin-token"} <= names


@pytest.mark.parametrize("path", [(), *(p for p, _ in ALL)], ids=lambda p: " ".join(p) or "main")
def test_h_is_help_everywhere(path: tuple[str, ...]) -> None:
    runner = CliRunner()
    short = runner.invoke(main, [*path, "-h"])
    assert short.exit_code == 0, short.output
    assert short.output.startswith("Usage: ")
    assert short.output == runner.invoke(main, [*path, "--help"]).output
    assert "-h, --help" in short.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    version = importlib.metadata.version("clockify-relay")
    assert result.output == f"clockify-relay, version {version}\n"


@pytest.mark.parametrize(
    "path",
    [p for p, c in ALL if not isinstance(c, click.Group) and p[0] not in SERVERS],
    ids=" ".join,
)
def test_every_data_command_prints_json(path: tuple[str, ...]) -> None:
    command = main
    for word in path:
        assert isinstance(command, click.Group)
        command = command.commands[word]  # type: ignore[assignment]
    [output] = [p for p in command.params if p.name == "output"]
    assert "-o" in output.opts
    assert isinstance(output.type, click.Choice) and "json" in output.type.choices


def test_admin_token_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_ADMIN_JWT_SECRET", "s" * 32)
    result = CliRunner().invoke(main, ["admin-token", "--subject", "ops", "-o", "json"])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["subject"] == "ops" and data["expires_in"] == 3600
    assert tokens.verify_admin_token("s" * 32, data["token"])["sub"] == "ops"
    plain = CliRunner().invoke(main, ["admin-token"])
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+\n", plain.output)


# --- dlq list in 100 columns ----------------------------------------------------------------


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str) -> Iterator[Runtime]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RELAY_KEY_PREFIX", key_prefix)
    monkeypatch.delenv("RELAY_CONFIG", raising=False)
    monkeypatch.setattr(runtime_module, "_runtime", None)  # restored after the test
    runtime = reset_runtime(Settings(redis_url=redis_url, key_prefix=key_prefix))
    yield runtime
    runtime.redis.close()


def test_dlq_list_fits_100_columns_with_ids_whole(
    monkeypatch: pytest.MonkeyPatch, rt: Runtime
) -> None:
    long_error = (
        "no mapping for Clockify user 5f1c2a3b4c5d6e7f8a9b0c1d; add [targets.everit.users."
        '"5f1c2a3b4c5d6e7f8a9b0c1d"] account_id = "…" to the config, or a catch-all row, '
        "and replay this letter afterwards"
    )
    letters = []
    for n, event_type in enumerate(
        ("APPROVAL_REQUEST_STATUS_UPDATED", "TIME_ENTRY_UPDATED", "NEW_TIME_ENTRY")
    ):
        envelope = {
            "event_id": f"{n}" * 32,
            "event_type": event_type,
            "entity_id": f"64b7f0c9e1d2a3b4c5d6e7f{n}",
            "workspace_id": "ws",
            "payload": {},
        }
        letter = rt.dlq.add("organi", envelope, ConfigurationError(long_error), attempts=12)
        letters.append(letter)
    monkeypatch.setenv("COLUMNS", "100")
    result = CliRunner().invoke(main, ["dlq", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 100, result.output
    for letter in letters:
        [at] = [n for n, line in enumerate(lines) if letter.id in line]  # the id whole
        row, error = lines[at], lines[at + 1]
        assert row.split() == [
            letter.id,
            "organi",
            letter.event_type,
            letter.entity_id,
            "12",
            *row.split()[-2:],
        ]
        assert re.fullmatch(r"\d+s ago", " ".join(row.split()[-2:]))
        # The error below it, its kind first, shortened to the width (and nothing else is).
        assert error.startswith("  ConfigurationError: no mapping for Clockify user")
        assert error.endswith("…") and len(error) == 100
    # [brackets] in errors are text, not rich markup.
    assert "add [targets.everit.us" in result.output

    wide = CliRunner().invoke(main, ["dlq", "list"], env={"COLUMNS": "250"})
    assert max(len(line) for line in wide.output.splitlines()) <= 250
    assert "and replay this letter afterwards" in wide.output  # room enough: whole
    # JSON is never shortened.
    listed = orjson.loads(CliRunner().invoke(main, ["dlq", "list", "-o", "json"]).stdout)
    assert {row["error"] for row in listed} == {long_error}


# --- finding the embedded Redis -------------------------------------------------------------


def test_commands_find_the_embedded_redis_of_a_run_in_this_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("RELAY_CONFIG", raising=False)
    assert discover_url() is None  # no file
    local_dir().mkdir()
    (local_dir() / URL_FILE).write_text(f"{redis_url}\n")
    assert discover_url() == redis_url
    report = orjson.loads(CliRunner().invoke(main, ["check", "-o", "json"]).stdout)
    assert report["redis"]["ok"] is True
    assert report["redis"]["source"] == str(tmp_path / ".clockify-relay" / "redis.url")

    # REDIS_URL wins over the file.
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    report = orjson.loads(CliRunner().invoke(main, ["check", "-o", "json"]).stdout)
    assert report["redis"]["source"] == "REDIS_URL" and report["redis"]["at"] == "127.0.0.1:1/0"

    # A file left by a run that is gone (nothing answers there): the default, no error.
    monkeypatch.delenv("REDIS_URL")
    (local_dir() / URL_FILE).write_text(f"redis://127.0.0.1:{free_port()}/0\n")
    assert discover_url() is None
    report = orjson.loads(CliRunner().invoke(main, ["check", "-o", "json"]).stdout)
    assert report["redis"]["source"] == "default"
    assert report["redis"]["at"] == "127.0.0.1:6379/0"
    (local_dir() / URL_FILE).write_text("not a url\n")
    assert discover_url() is None


def test_one_local_redis_per_data_dir_on_a_stable_port(tmp_path: Path) -> None:
    data = tmp_path / ".clockify-relay"
    first = LocalRedis(data).start()
    try:
        url = first.url
        assert (data / URL_FILE).read_text() == f"{url}\n"
        with pytest.raises(AlreadyRunning, match="another clockify-relay run is using") as exc:
            LocalRedis(data).start()
        assert exc.value.url == url
        assert (data / URL_FILE).read_text() == f"{url}\n"  # the refused one changed nothing
    finally:
        first.stop()
    assert not (data / URL_FILE).exists()
    # A stale file (a run killed before its clean-up): the next one takes the same port.
    (data / URL_FILE).write_text(f"{url}\n")
    second = LocalRedis(data).start()
    try:
        assert second.url == url
    finally:
        second.stop()


def test_a_redis_orphaned_by_a_killed_run_is_shut_down_by_the_next(tmp_path: Path) -> None:
    data = tmp_path / ".clockify-relay"
    first = LocalRedis(data).start()
    url = first.url
    client = redis.Redis.from_url(url)
    client.set("kept", "1")
    # As if `run` had died without its clean-up: the lock is released, the server lives on.
    assert first._lock_fd is not None
    import os

    os.close(first._lock_fd)
    first._lock_fd = None
    second = LocalRedis(data).start()
    try:
        assert first.server is not None and first.server.process is not None
        first.server.process.wait(timeout=10)  # the orphan was shut down (AOF kept)
        deadline = time.monotonic() + 5
        while True:
            try:
                assert redis.Redis.from_url(second.url).get("kept") == b"1"
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        second.stop()
        client.close()


def test_ages_are_short_and_in_the_units_since_takes() -> None:
    assert [_age(s) for s in (0, 59, 60, 3599, 7200, 99 * 86400, 100 * 86400, 700 * 86400)] == [
        "0s ago",
        "59s ago",
        "1m ago",
        "59m ago",
        "2h ago",
        "99d ago",
        "14w ago",
        "100w ago",
    ]
