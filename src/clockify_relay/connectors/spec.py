"""What a target declares about itself (docs/ARCHITECTURE.md §8): a :class:`TargetSpec`.

Each target's package (``connectors/<name>/__init__.py``) exports ``SPEC``, and
connectors/registry.py lists the packages, one line each. Everything that loops over targets
reads the specs: settings.py (environment variables, known TOML keys), the engine's runtime (the
connector class), the sandbox (the fake and the relay configuration pointing at it) and
``clockify-relay check`` (look-ups).

A spec names its classes by module and attribute, relative to its package, and imports them only
when asked: the registry itself stays light, so the receiver, which reads settings but never
calls a target, imports no connector, HTTP client or fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clockify_relay.connectors.base import Connector
    from clockify_relay.sandbox.core import FakeTarget, SandboxConfig
    from clockify_relay.settings import KnownKeys


@dataclass(frozen=True)
class EnvVar:
    """An environment variable the relay merges into the target's ``[targets.<name>]`` table
    (only when that table exists: the table alone enables a target)."""

    name: str  # e.g. "EVERIT_API_KEY"
    key: str  # the section key it sets, e.g. "api_key"
    secret: bool = False  # the value is wrapped in settings.Secret (never logged or shown)


def _no_env(config: SandboxConfig) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class TargetSpec:
    """One target: its name, where its parts live, and what it reads from the environment."""

    # ``[targets.<name>]`` in the TOML file, ``/<name>`` in the sandbox, the name in traces.
    name: str
    # The target's package (its ``__name__``); the references below are relative to it.
    package: str
    # "module:attribute" references, imported on first use.
    connector: str  # the Connector subclass (connectors/base.py)
    config_keys: str  # the settings.KnownKeys its config.py reads (besides the generic ones)
    fake: str  # its sandbox fake, a sandbox.core.FakeTarget subclass
    lookups: str | None = None  # f(connector) -> {name: rows}, for ``check --lookups``
    # Environment variables merged into the section.
    env: tuple[EnvVar, ...] = ()
    # The section ``run --sandbox`` writes for the fake (``base_url`` is added), without secrets.
    sandbox_section: Mapping[str, Any] = field(default_factory=dict)
    # The environment that gives the relay the fake's credentials (base URLs are added).
    sandbox_env: Callable[[SandboxConfig], Mapping[str, str]] = _no_env

    def load(self, reference: str) -> Any:
        """The object a ``"module:attribute"`` reference names, imported now."""
        module, _, attribute = reference.partition(":")
        return getattr(import_module(f"{self.package}.{module}"), attribute)

    def connector_class(self) -> type[Connector]:
        """The target's Connector subclass."""
        cls: type[Connector] = self.load(self.connector)
        return cls

    def known_keys(self) -> KnownKeys:
        """The keys of ``[targets.<name>]`` the target's config.py reads."""
        keys: KnownKeys = self.load(self.config_keys)
        return keys

    def fake_class(self) -> type[FakeTarget]:
        """The target's sandbox fake."""
        cls: type[FakeTarget] = self.load(self.fake)
        return cls

    @property
    def secret_keys(self) -> frozenset[str]:
        """Section keys that hold secrets (from the environment or the TOML file)."""
        return frozenset(var.key for var in self.env if var.secret)

    @property
    def base_url_env(self) -> str | None:
        """The environment variable that sets ``base_url``, if the target has one."""
        return next((var.name for var in self.env if var.key == "base_url"), None)
