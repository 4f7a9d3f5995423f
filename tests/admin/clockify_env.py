"""The environment of the Clockify-native commands' tests: real Redis under the test's prefix,
the sandbox's Clockify fake and Everit fake, the CLI run in-process with CliRunner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from clockify_relay.cli import main
from clockify_relay.clockify.token_store import TokenStore
from clockify_relay.pipeline import runtime as runtime_module
from clockify_relay.sandbox.clockify import ClockifyFake
from clockify_relay.sandbox.server import SandboxServer
from tests.fixture_loader import WORKSPACE_ID

EVERIT_TOML = "[targets.everit]\nenabled = true\n\n[targets.everit.defaults]\nissue_id = 10000\n"


class ClockifyEnv:
    """Runs ``clockify-relay`` commands in-process against the sandbox and the test Redis."""

    def __init__(
        self,
        sandbox: SandboxServer,
        redis_url: str,
        key_prefix: str,
        config: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.sandbox = sandbox
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.config = config
        self.monkeypatch = monkeypatch
        self.runner = CliRunner()
        fake = sandbox.sandbox.fakes["clockify"]
        assert isinstance(fake, ClockifyFake)
        self.fake = fake

    def environ(self) -> dict[str, str]:
        """What a relay process of this test needs (the receiver and worker too)."""
        return {
            "REDIS_URL": self.redis_url,
            "RELAY_KEY_PREFIX": self.key_prefix,
            "RELAY_CONFIG": str(self.config),
            "EVERIT_API_KEY": self.sandbox.config.everit_api_key,
            "EVERIT_BASE_URL": self.sandbox.base_urls["everit"],
            "CLOCKIFY_API_KEY": self.sandbox.config.clockify_api_key,
            "CLOCKIFY_API_URL": self.sandbox.base_urls["clockify"],
            "CLOCKIFY_WORKSPACE_IDS": WORKSPACE_ID,
        }

    def run(self, *args: str) -> Result:
        self._fresh_runtime()
        return self.runner.invoke(main, list(args), catch_exceptions=False)

    def json(self, *args: str, exit_code: int = 0) -> Any:
        result = self.run(*args, "-o", "json")
        assert result.exit_code == exit_code, result.output
        return orjson.loads(result.stdout)

    def store(self) -> TokenStore:
        import redis

        return TokenStore(redis.Redis.from_url(self.redis_url), self.key_prefix)

    def webhooks(self) -> list[dict[str, Any]]:
        hooks: list[dict[str, Any]] = self.sandbox.state()["clockify"]["webhooks"]
        return hooks

    def _fresh_runtime(self) -> None:
        current = runtime_module._runtime
        if current is not None and "redis" in current.__dict__:
            current.redis.close()
        runtime_module._runtime = None


@pytest.fixture
def clockify_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sandbox: SandboxServer,
) -> Iterator[ClockifyEnv]:
    sandbox.reset()
    config = tmp_path / "relay.toml"
    config.write_text(EVERIT_TOML)
    for name in ("CLOCKIFY_WEBHOOK_TOKENS", "CLOCKIFY_ADDON_KEY", "BLIKK_APP_ID", "TRACKET_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(runtime_module, "_runtime", None)  # restored after the test
    env = ClockifyEnv(sandbox, redis_url, key_prefix, config, monkeypatch)
    for name, value in env.environ().items():
        monkeypatch.setenv(name, value)
    env.fake.add_workspace(WORKSPACE_ID)
    yield env
    env._fresh_runtime()
