"""Fake of the Everit API (placeholder: routes follow)."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from clockify_relay.sandbox.core import FakeTarget


class EveritFake(FakeTarget):
    """Fake Everit API."""

    name = "everit"

    def routes(self) -> list[BaseRoute]:
        """Routes of the fake."""
        return []

    def state(self) -> dict[str, Any]:
        """State of the fake."""
        return {}

    def reset(self) -> None:
        """Forget everything."""
