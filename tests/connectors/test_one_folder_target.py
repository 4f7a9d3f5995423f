"""A new target costs one folder and one registry line (docs/ARCHITECTURE.md §8): the test-only
target in tests/connectors/toy/ is registered by one line here, and settings, the sandbox, the
engine and ``check`` then handle it like any other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clockify_relay.admin import checks
from clockify_relay.connectors import registry
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox import relay_config
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, SettingsError, load_settings
from tests.fixture_loader import ENTRY_MAIN
from tests.pipeline.conftest import entry_payload, envelope

pytestmark = pytest.mark.integration


@pytest.fixture
def with_toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "PACKAGES", (*registry.PACKAGES, "tests.connectors.toy"))


def records(sandbox: SandboxServer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sandbox.state()["toy"]["records"]
    return result


def test_a_registered_target_is_configured_served_and_delivered_to(
    with_toy: None, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    with SandboxServer() as sandbox:
        assert sandbox.base_urls["toy"] == f"{sandbox.url}/toy/v1"
        config = relay_config.write_toml(
            tmp_path / "relay.toml", relay_config.sandbox_targets(sandbox.base_urls)
        )
        assert "[targets.toy.defaults]" in config.read_text()
        env = {
            **relay_config.sandbox_env(sandbox.config, sandbox.base_urls),
            "REDIS_URL": redis_url,
            "RELAY_KEY_PREFIX": key_prefix,
        }
        settings = load_settings(env, config)
        assert settings.targets["toy"]["token"] == Secret("toy-sandbox-token")
        assert settings.targets["toy"]["base_url"] == sandbox.base_urls["toy"]

        rt = Runtime(settings)
        assert rt.enabled_targets() == ["everit", "tracket", "blikk", "organi", "mail", "toy"]
        engine = rt.engine("toy")
        assert engine.deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1)).action == "applied"
        [record] = records(sandbox)
        assert record["entry"] == ENTRY_MAIN and record["bucket"] == "sandbox-bucket"
        assert engine.deliver(envelope("TIME_ENTRY_DELETED", entry_payload(), 2)).action == (
            "deleted"
        )
        assert records(sandbox) == []

        report = checks.check(rt, probe=True)
        toy = report.targets[-1]
        assert (toy.target, toy.ok, toy.probed) == ("toy", True, True)
        assert toy.message == f"token accepted at {sandbox.base_urls['toy']}"
        rt.connector("toy").close()
        rt.redis.close()


def test_the_receiver_imports_no_connector_no_celery_and_no_admin_code() -> None:
    # The registry names each target's parts; reading settings imports none of them, and the
    # internet-facing receiver app never loads a connector, Celery or the operator package.
    code = (
        "import sys, tempfile, pathlib\n"
        "from clockify_relay.receiver.app import receiver_app\n"
        "from clockify_relay.asgi import receiver_settings\n"
        "from clockify_relay.settings import load_settings\n"
        "path = pathlib.Path(tempfile.mkdtemp()) / 'relay.toml'\n"
        "path.write_text('[targets.everit]\\n[targets.tracket]\\n[targets.blikk]\\n')\n"
        "settings = load_settings({'EVERIT_API_KEY': 'k'}, path)\n"
        "assert sorted(settings.targets) == ['blikk', 'everit', 'tracket']\n"
        "receiver_app(receiver_settings(settings))\n"
        "assert not receiver_settings(settings).targets\n"
        "parts = ('api', 'connector', 'fake', 'mapping')\n"
        "loaded = [m for m in sys.modules if m.startswith('clockify_relay.connectors.')\n"
        "          and m.rpartition('.')[2] in parts]\n"
        "loaded += [m for m in sys.modules if m.partition('.')[0] in ('celery', 'kombu', 'httpx')\n"
        "           or m.startswith(('clockify_relay.admin', 'clockify_relay.pipeline.runtime'))]\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_its_section_is_validated_by_the_keys_its_config_declares(
    with_toy: None, tmp_path: Path
) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('[targets.toy]\nenabled = "no"\n[targets.toy.defaults]\nbuckt = "b"\n')
    with pytest.raises(SettingsError) as info:
        load_settings({"TOY_TOKEN": "t"}, path)
    assert info.value.problems == (
        "[targets.toy.defaults] buckt: unknown key; did you mean bucket?",
        '[targets.toy] enabled: must be true or false, got "no"',
    )


def test_an_unregistered_target_is_an_unknown_table(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text("[targets.toy]\n")
    with pytest.raises(SettingsError, match=r"\[targets.toy\]: unknown target"):
        load_settings({}, path)
