"""The relay configuration used by ``clockify-relay run --sandbox``: every enabled target points
at the sandbox, and every Clockify user and project maps to sandbox defaults, so any well-formed
entry flows through."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clockify_relay.sandbox.core import SandboxConfig

# Catch-all rows ("*") map every Clockify user and project to records the Blikk fake seeds.
BLIKK_CATCH_ALL = {"users": {"*": 1}, "projects": {"*": {"project_id": 1}}}


def sandbox_targets(base_urls: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``[targets.*]`` sections (without secrets) for the sandbox's fakes."""
    return {
        "everit": {"base_url": base_urls["everit"], "defaults": {"issue_id": 10000}},
        "blikk": {
            "base_url": base_urls["blikk"],
            "defaults": {"activity_id": 1, "time_code_id": 1, "time_article_id": 1},
            **BLIKK_CATCH_ALL,
        },
        "tracket": {
            "base_url": base_urls["tracket"],
            "defaults": {"item_id": "sandbox-item", "user_id": "sandbox-user"},
        },
    }


def sandbox_env(config: SandboxConfig, base_urls: Mapping[str, str]) -> dict[str, str]:
    """Credentials and endpoints of the fakes, as the relay reads them from its environment."""
    return {
        "EVERIT_API_KEY": config.everit_api_key,
        "EVERIT_BASE_URL": base_urls["everit"],
        "BLIKK_APP_ID": config.blikk_app_id,
        "BLIKK_APP_SECRET": config.blikk_app_secret,
        "BLIKK_BASE_URL": base_urls["blikk"],
        "TRACKET_TOKEN": config.tracket_token,
        "TRACKET_BASE_URL": base_urls["tracket"],
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else _toml_value(name)


def _table_lines(path: str, table: Mapping[str, Any]) -> list[str]:
    subtables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    lines = [f"[{path}]"]
    lines += [f"{_key(k)} = {_toml_value(v)}" for k, v in table.items() if k not in subtables]
    for name, sub in subtables.items():
        lines += ["", *_table_lines(f"{path}.{_key(name)}", sub)]
    return lines


def write_toml(path: Path, targets: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a relay config with these ``[targets.*]`` sections."""
    lines = ["# Written by `clockify-relay run --sandbox`: every target points at the sandbox.", ""]
    for name, section in targets.items():
        lines += [*_table_lines(f"targets.{name}", section), ""]
    path.write_text("\n".join(lines))
    return path


def new_webhook_token() -> str:
    """A fresh random webhook token for a sandbox run."""
    return secrets.token_urlsafe(32)
