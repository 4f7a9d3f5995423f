"""Engine fixtures: the sandbox over real HTTP, settings pointing every target at it."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from clockify_relay.pipeline.messages import Envelope
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, Settings
from tests.fixture_loader import fixture_json

_sequence = itertools.count(1)


@pytest.fixture
def clean_sandbox(sandbox: SandboxServer) -> SandboxServer:
    sandbox.reset()
    return sandbox


def everit_section(sandbox: SandboxServer, **extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "base_url": sandbox.base_urls["everit"],
        "api_key": Secret(sandbox.config.everit_api_key),
        "defaults": {"issue_id": 10000},
    }
    section.update(extra)
    return section


@pytest.fixture
def everit_settings(settings: Settings, clean_sandbox: SandboxServer) -> Settings:
    return settings.with_changes(
        targets={"everit": everit_section(clean_sandbox)},
        retry=settings.retry.__class__(
            max_attempts=3, base_delay=0.05, max_delay=1, max_countdown=2
        ),
    )


@pytest.fixture
def rt(everit_settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(everit_settings)
    yield runtime
    runtime.redis.close()


def envelope(event_type: str, payload: dict[str, Any], sequence: int | None = None) -> Envelope:
    """An envelope as ingest makes it (sequence given, or the next of a test counter)."""
    return {
        "event_id": uuid.uuid4().hex,
        "event_type": event_type,
        "workspace_id": payload.get("workspaceId", ""),
        "entity_id": str(payload["id"]),
        "received_at": "2026-11-22T10:00:00+00:00",
        "sequence": sequence if sequence is not None else next(_sequence),
        "payload": payload,
    }


def entry_payload(name: str = "NEW_TIME_ENTRY", **changes: Any) -> dict[str, Any]:
    """A recorded fixture with some top-level fields changed."""
    payload = copy.deepcopy(fixture_json(name))
    payload.update(changes)
    return payload


def worklogs(sandbox: SandboxServer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sandbox.state()["everit"]["worklogs"]
    return result
