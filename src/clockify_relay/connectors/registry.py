"""The connector registry: one line per target."""

from __future__ import annotations

from importlib import import_module

from clockify_relay.connectors.base import Connector
from clockify_relay.errors import ConfigurationError

CONNECTORS: dict[str, str] = {
    "everit": "clockify_relay.connectors.everit.connector:EveritConnector",
    "tracket": "clockify_relay.connectors.tracket.connector:TracketConnector",
    "blikk": "clockify_relay.connectors.blikk.connector:BlikkConnector",
}


def connector_class(name: str) -> type[Connector]:
    """The connector class registered for a target name."""
    try:
        module_name, _, attr = CONNECTORS[name].partition(":")
    except KeyError:
        raise ConfigurationError(
            f"unknown target {name!r}; known: {', '.join(CONNECTORS)}"
        ) from None
    cls: type[Connector] = getattr(import_module(module_name), attr)
    return cls
