"""What a target declares about itself (docs/ARCHITECTURE.md §8): a :class:`TargetSpec`.

Each target's package (``connectors/<name>/__init__.py``) exports ``SPEC``, and
connectors/registry.py lists the packages, one line each. Everything that loops over targets
reads the specs: settings.py (environment variables, known TOML keys), the engine's runtime (the
connector class), the sandbox (the fake and the relay configuration pointing at it) and
``clockify-relay check`` (look-ups).

Two kinds of target (docs/ARCHITECTURE.md §8): a *booking* target names a time-entry
``Connector``, which pipeline/engine.py's DeliveryEngine drives under the ordering rules; an
*event* target names a ``handler`` instead (pipeline/engine.py ``EventHandler``: ``deliver`` and
``lock_seconds``), which handles whole events of the types in ``events`` (approvals included)
by itself, e.g. the mail target. A booking target may name a ``handler`` too: it takes the
event types in ``events`` that are not time-entry events (Organi's approvals), while the
DeliveryEngine keeps the time entries. ``fan_out`` routes an event to every enabled target whose
``events`` hold its type.

A spec names its classes by module and attribute, relative to its package, and imports them only
when asked: the registry itself stays light, so the receiver, which reads settings but never
calls a target, imports no connector, HTTP client or fake.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

from clockify_relay.clockify.models import TIME_ENTRY_EVENTS

if TYPE_CHECKING:
    from clockify_relay.connectors.base import Connector
    from clockify_relay.pipeline.engine import EventHandler
    from clockify_relay.pipeline.runtime import Runtime
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


@dataclass(frozen=True, kw_only=True)
class TargetSpec:
    """One target: its name, where its parts live, and what it reads from the environment."""

    # ``[targets.<name>]`` in the TOML file, ``/<name>`` in the sandbox, the name in traces.
    name: str
    # The target's package (its ``__name__``); the references below are relative to it.
    package: str
    # "module:attribute" references, imported on first use.
    config_keys: str  # the settings.KnownKeys its config.py reads (besides the generic ones)
    # A booking target: the Connector subclass (connectors/base.py) the DeliveryEngine drives.
    connector: str | None = None
    # An event target instead: its handler class, built as ``cls(runtime, section)``
    # (pipeline/engine.py EventHandler). Beside a connector: the handler of the target's
    # non-time-entry events.
    handler: str | None = None
    # The event types fan_out routes to the target.
    events: frozenset[str] = TIME_ENTRY_EVENTS
    # f(section) -> [problem, …]: values of its section checked when the settings are loaded
    # (the section with its environment variables merged in), beyond KNOWN_KEYS.
    validate: str | None = None
    fake: str | None = None  # its sandbox fake (sandbox.core.FakeTarget), mounted at /<name>
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

    def __post_init__(self) -> None:
        if self.connector is None and self.handler is None:
            raise TypeError(f"target {self.name}: name a connector, a handler or both")
        if self.connector is None and not self.events:
            raise TypeError(f"target {self.name}: an event target needs events")

    def handles(self, event_type: str) -> bool:
        """Whether the handler (not the DeliveryEngine) takes this event type."""
        if self.handler is None:
            return False
        return self.connector is None or event_type not in TIME_ENTRY_EVENTS

    def connector_class(self) -> type[Connector]:
        """The target's Connector subclass."""
        if self.connector is None:
            raise TypeError(f"target {self.name} is an event target: it has no connector")
        cls: type[Connector] = self.load(self.connector)
        return cls

    def handler_class(self) -> Callable[[Runtime, Mapping[str, Any]], EventHandler] | None:
        """The target's event handler class, or None for a booking target without one."""
        if self.handler is None:
            return None
        cls: Callable[[Runtime, Mapping[str, Any]], EventHandler] = self.load(self.handler)
        return cls

    def section_problems(
        self, section: Mapping[str, Any], targets: Mapping[str, Mapping[str, Any]] | None = None
    ) -> list[str]:
        """What is wrong with the values of its section (its ``validate``), or nothing. A
        ``validate`` with a ``targets`` parameter also gets every target's section (for a value
        that needs another target, as a mail rule sent through Organi)."""
        if self.validate is None:
            return []
        validate = self.load(self.validate)
        if targets is not None and "targets" in inspect.signature(validate).parameters:
            problems: list[str] = validate(section, targets=targets)
        else:
            problems = validate(section)
        return problems

    def known_keys(self) -> KnownKeys:
        """The keys of ``[targets.<name>]`` the target's config.py reads."""
        keys: KnownKeys = self.load(self.config_keys)
        return keys

    def fake_class(self) -> type[FakeTarget] | None:
        """The target's sandbox fake, or None when the sandbox serves it otherwise (mail)."""
        if self.fake is None:
            return None
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
