"""The target registry: one line per target (docs/ARCHITECTURE.md §8).

Each line names a target's package, which exports its :class:`~.spec.TargetSpec` as ``SPEC``.
The order is the order targets are listed, fanned out to and checked in. Everything that loops
over targets calls :func:`specs` (never a copy taken at import), so a test may register a target
of its own by replacing :data:`PACKAGES`.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

from clockify_relay.connectors.spec import TargetSpec
from clockify_relay.errors import ConfigurationError

if TYPE_CHECKING:
    from clockify_relay.connectors.base import Connector

PACKAGES: tuple[str, ...] = (
    "clockify_relay.connectors.everit",
    "clockify_relay.connectors.tracket",
    "clockify_relay.connectors.blikk",
    "clockify_relay.connectors.organi",
    "clockify_relay.connectors.mail",
)


@cache
def _spec_of(package: str) -> TargetSpec:
    spec = getattr(import_module(package), "SPEC", None)
    if not isinstance(spec, TargetSpec):
        raise TypeError(f"{package} has no SPEC (a connectors.spec.TargetSpec)")
    return spec


def specs() -> tuple[TargetSpec, ...]:
    """Every registered target, in registry order."""
    return tuple(_spec_of(package) for package in PACKAGES)


def names() -> tuple[str, ...]:
    """The registered targets' names, in registry order."""
    return tuple(spec.name for spec in specs())


def spec(name: str) -> TargetSpec:
    """The spec of one target; ConfigurationError naming the known ones if there is none."""
    for candidate in specs():
        if candidate.name == name:
            return candidate
    raise ConfigurationError(f"unknown target {name!r}; known: {', '.join(names())}")


def connector_class(name: str) -> type[Connector]:
    """The connector class registered for a target name."""
    return spec(name).connector_class()
