"""`clockify-relay check`: validates config, probes targets, lists Blikk look-ups."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from clockify_relay.cli import main
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
    assert "users:" in result.output and "activities:" in result.output
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
