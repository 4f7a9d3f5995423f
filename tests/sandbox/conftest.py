"""Fixtures for the sandbox tests: one real sandbox server per module, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from clockify_relay.sandbox.server import SandboxServer


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    """A sandbox on uvicorn in a background thread, on a free port."""
    with SandboxServer() as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """The module's sandbox, cleared of records, faults and counters."""
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain HTTP client with a short timeout, so a broken sandbox fails fast."""
    with httpx.Client(timeout=5.0) as client:
        yield client
