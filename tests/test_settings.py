"""settings.load_settings: the environment and the TOML file, per-target sections and their
validation (README "Configuration")."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from clockify_relay.clockify.models import parse_time_entry
from clockify_relay.connectors import registry
from clockify_relay.errors import ConfigurationError
from clockify_relay.pipeline.engine import out_of_scope
from clockify_relay.settings import (
    Secret,
    SettingsError,
    TargetSection,
    ignored_target_env,
    known_document,
    load_settings,
    target_section,
    unknown_keys,
)
from tests.fixture_loader import PROJECT_INTERNAL, PROJECT_WEBSITE, fixture_json

README = Path(__file__).parents[1] / "README.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(env or {}, write(tmp_path, text))
    return list(info.value.problems)


def test_a_target_is_enabled_only_by_its_table(tmp_path: Path) -> None:
    env = {"TRACKET_TOKEN": "t", "EVERIT_API_KEY": "k"}
    settings = load_settings(env, write(tmp_path, "[targets.everit]\n"))
    assert list(settings.targets) == ["everit"]
    assert settings.targets["everit"]["api_key"] == Secret("k")
    assert ignored_target_env(env, settings) == [
        "TRACKET_TOKEN is set but there is no [targets.tracket] table: tracket is off"
    ]
    assert list(load_settings(env).targets) == []


def test_enabled_as_a_string_is_an_error_not_enabled(tmp_path: Path) -> None:
    assert problems(tmp_path, '[targets.tracket]\nenabled = "false"\n') == [
        '[targets.tracket] enabled: must be true or false, got "false" '
        "(a string: write it without quotes)"
    ]


def test_generic_target_keys_are_typed(tmp_path: Path) -> None:
    text = (
        "[targets.everit]\nenabled = false\nreread = false\nbook_breaks = true\n"
        f'only_projects = ["{PROJECT_WEBSITE}"]\nskip_projects = ["p2"]\n'
    )
    settings = load_settings({}, write(tmp_path, text))
    assert target_section("everit", settings.targets["everit"]) == TargetSection(
        enabled=False,
        reread=False,
        book_breaks=True,
        only_projects=frozenset({PROJECT_WEBSITE}),
        skip_projects=frozenset({"p2"}),
    )
    assert target_section("everit", {}) == TargetSection()
    assert problems(tmp_path, f'[targets.everit]\nonly_projects = "{PROJECT_WEBSITE}"\n') == [
        "[targets.everit] only_projects: must be a list of Clockify project ids "
        f'(["<id>", …]), got "{PROJECT_WEBSITE}"'
    ]
    with pytest.raises(ConfigurationError, match=r"\[targets.blikk\] book_breaks"):
        target_section("blikk", {"book_breaks": 1})


def test_out_of_scope_reads_the_typed_section() -> None:
    entry = parse_time_entry(fixture_json("NEW_TIME_ENTRY"))
    brk = parse_time_entry(fixture_json("TIME_ENTRY_UPDATED__break"))
    assert entry.project_id == PROJECT_WEBSITE
    assert out_of_scope(entry, TargetSection()) is None
    assert (
        out_of_scope(brk, TargetSection()) == "BREAK entries are not booked (book_breaks = false)"
    )
    assert out_of_scope(brk, TargetSection(book_breaks=True)) is None
    only = TargetSection(only_projects=frozenset({PROJECT_INTERNAL}))
    assert out_of_scope(entry, only) == f"project {PROJECT_WEBSITE} is not in only_projects"
    skip = TargetSection(skip_projects=frozenset({PROJECT_WEBSITE}))
    assert out_of_scope(entry, skip) == f"project {PROJECT_WEBSITE} is in skip_projects"


def test_an_unknown_table_names_the_nearest_valid_one(tmp_path: Path) -> None:
    assert problems(tmp_path, "[retyr]\nmax_attempts = 3\n") == [
        "[retyr]: unknown table; did you mean [retry]?"
    ]


def test_unknown_keys_are_refused_at_every_depth_with_their_path(tmp_path: Path) -> None:
    text = """
        timezone = "Europe/Stockholm"
        [relay]
        dedup_windw = 60
        [users."u-1"]
        timezon = "UTC"
        [targets.everit]
        timout = 5
        [targets.everit.default]
        issue_id = 1
        [targets.everit.users."u-1"]
        acount_id = "557058:x"
        [targets.blikk.projects."p-1"]
        projct_id = 1
        [targets.tracket.defaults]
        itemid = "i"
        [targets.evrit]
        [targets.tempo]
    """
    assert problems(tmp_path, text) == [
        "timezone: unknown key at the top of the file; known here: [defaults], [relay], "
        "[retry], [targets], [users]",
        "[relay] dedup_windw: unknown key; did you mean dedup_window?",
        '[users."u-1"] timezon: unknown key; did you mean timezone?',
        "[targets.everit] timout: unknown key; did you mean timeout?",
        "[targets.everit.default]: unknown table; did you mean [targets.everit.defaults]?",
        '[targets.everit.users."u-1"] acount_id: unknown key; did you mean account_id?',
        '[targets.blikk.projects."p-1"] projct_id: unknown key; did you mean project_id?',
        "[targets.tracket.defaults] itemid: unknown key; did you mean item_id?",
        "[targets.evrit]: unknown target; did you mean [targets.everit]?",
        "[targets.tempo]: unknown target; known here: [targets.blikk], [targets.everit], "
        "[targets.mail], [targets.organi], [targets.tracket]",
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = '[retyr]\n[relay]\ntrace_ttl = "long"\n[targets.blikk]\nenabled = "yes"\n'
    with pytest.raises(SettingsError) as info:
        load_settings({"RELAY_MAX_RESENDS": "five"}, write(tmp_path, text))
    assert info.value.problems == (
        "[retyr]: unknown table; did you mean [retry]?",
        '[targets.blikk] enabled: must be true or false, got "yes"',
        '[relay] trace_ttl: must be a whole number, got "long"',
        "RELAY_MAX_RESENDS must be a whole number, got 'five'",
    )
    assert str(info.value).startswith("4 problems:\n  [retyr]: unknown table")


def test_a_known_table_given_as_a_value_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, "retry = 3\n") == ["[retry]: must be a table, got 3"]


def test_a_config_path_that_cannot_be_read_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def message(path: Path) -> str:
        with pytest.raises(ConfigurationError) as info:
            load_settings({}, path)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert message(tmp_path) == f"config file {tmp_path} is a directory, not a TOML file"
    file = write(tmp_path, "")
    assert message(file / "relay.toml") == (
        f"config file {file / 'relay.toml'} cannot be read: Not a directory"
    )
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[defaults]\ntimezone = "\xe5"\n')
    assert message(latin) == f"config file {latin} is not valid TOML: not UTF-8 text"

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    assert message(file) == f"config file {file} cannot be read: permission denied"


def _toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)


def test_the_documented_examples_use_only_known_keys() -> None:
    # README's Configuration example and each connector's config.py example.
    examples = _toml_blocks(README.read_text())
    assert examples
    for spec in registry.specs():
        doc = spec.load("config:__doc__")
        example = doc.split("Example::", 1)[1].split("\n\n", 1)[1]
        blocks, block = [], []
        for line in example.splitlines():
            if line and not line.startswith("    "):
                break
            block.append(line[4:])
        blocks.append("\n".join(block))
        examples += blocks
    for example in examples:
        assert unknown_keys(tomllib.loads(example), known_document()) == [], example


def test_processes_that_never_deliver_need_no_target_credentials(tmp_path: Path) -> None:
    # The receiver and the operator commands run without SMTP_URL and the like; the worker
    # (delivering) still refuses to start without it.
    path = tmp_path / "relay.toml"
    path.write_text('[targets.mail]\nfrom = "relay@example.com"\n')
    with pytest.raises(SettingsError, match="SMTP_URL is not set"):
        load_settings({}, path)
    settings = load_settings({}, path, delivering=False)
    assert "mail" in settings.targets
    path.write_text('[targets.mail]\nfrom = "relay@example.com"\nsmtp_ulr = "x"\n')
    with pytest.raises(SettingsError, match="smtp_ulr"):
        load_settings({}, path, delivering=False)  # unknown keys are refused all the same


def test_operator_commands_and_the_receiver_load_settings_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from clockify_relay.asgi import create_app
    from clockify_relay.cli import main

    path = tmp_path / "relay.toml"
    path.write_text('[targets.mail]\nfrom = "relay@example.com"\n')
    monkeypatch.delenv("SMTP_URL", raising=False)
    monkeypatch.setenv("RELAY_CONFIG", str(path))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # unreachable: exit 1, not 2
    assert CliRunner().invoke(main, ["targets", "list"]).exit_code == 1
    assert CliRunner().invoke(main, ["check"]).exit_code != 0
    create_app()  # the receiver starts
