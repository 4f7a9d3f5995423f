"""The relay configuration used by ``clockify-relay run --sandbox``: every registered target
points at its sandbox fake, with the section and credentials its spec declares for it
(connectors/<target>/__init__.py), so any well-formed entry flows through."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clockify_relay.connectors import registry
from clockify_relay.sandbox.core import SandboxConfig


def sandbox_targets(base_urls: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``[targets.*]`` sections (without secrets) for the sandbox's fakes (a target the
    sandbox serves without an HTTP fake, such as mail, gets no ``base_url``)."""
    return {
        spec.name: {
            **({"base_url": base_urls[spec.name]} if spec.name in base_urls else {}),
            **copy.deepcopy(dict(spec.sandbox_section)),
        }
        for spec in registry.specs()
    }


def sandbox_env(config: SandboxConfig, base_urls: Mapping[str, str]) -> dict[str, str]:
    """Credentials and endpoints of the fakes, as the relay reads them from its environment."""
    env: dict[str, str] = {}
    for spec in registry.specs():
        env.update(spec.sandbox_env(config))
        if spec.base_url_env and spec.name in base_urls:
            env[spec.base_url_env] = base_urls[spec.name]
    return env


def bypass_proxy(env: dict[str, str]) -> None:
    """Every call to the sandbox goes to 127.0.0.1: never through the caller's HTTP proxy
    (httpx honours ``HTTP_PROXY``; ``NO_PROXY`` keeps local addresses direct)."""
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(filter(None, (env.get(name), "127.0.0.1,localhost")))


def _toml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + text + '"'


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else _toml_value(name)


def _table_lines(path: str, table: Mapping[str, Any], array: bool = False) -> list[str]:
    subtables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    arrays = {
        k: v
        for k, v in table.items()
        if isinstance(v, list) and v and all(isinstance(item, Mapping) for item in v)
    }
    lines = [f"[[{path}]]" if array else f"[{path}]"]
    lines += [
        f"{_key(k)} = {_toml_value(v)}"
        for k, v in table.items()
        if k not in subtables and k not in arrays
    ]
    for name, sub in subtables.items():
        lines += ["", *_table_lines(f"{path}.{_key(name)}", sub)]
    for name, items in arrays.items():  # arrays of tables: [[targets.mail.rules]]
        for item in items:
            lines += ["", *_table_lines(f"{path}.{_key(name)}", item, array=True)]
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
