"""settings.load_settings: the environment and the TOML file, per-target sections and their
validation (README "Configuration")."""

from __future__ import annotations

from pathlib import Path

from clockify_relay.settings import Secret, ignored_target_env, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return path


def test_a_target_is_enabled_only_by_its_table(tmp_path: Path) -> None:
    env = {"TRACKET_TOKEN": "t", "EVERIT_API_KEY": "k"}
    settings = load_settings(env, write(tmp_path, "[targets.everit]\n"))
    assert list(settings.targets) == ["everit"]
    assert settings.targets["everit"]["api_key"] == Secret("k")
    assert ignored_target_env(env, settings) == [
        "TRACKET_TOKEN is set but there is no [targets.tracket] table: tracket is off"
    ]
    assert list(load_settings(env).targets) == []
