"""Shared fixtures: a real Redis (REDIS_URL, else 127.0.0.1:6379, else an embedded server) and a
unique key prefix per test so runs never clash with other users of that Redis."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from clockify_relay.embedded_redis import EmbeddedRedis
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
# A test that uses any of these needs a real Redis, the sandbox or worker processes.
INTEGRATION_FIXTURES = frozenset({"redis_url", "sandbox"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs Redis or the sandbox (directly or through another fixture)
    as ``integration``, so ``pytest -m "not integration"`` is the fast loop."""
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        client.ping()
        client.close()
        return True
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server for this test session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    default = "redis://127.0.0.1:6379/0"
    if _reachable(default):
        yield default
        return
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="relay-test-redis-"))).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed afterwards."""
    prefix = f"relaytest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> Settings:
    """Settings pointing at the test Redis under this test's prefix."""
    return Settings(redis_url=redis_url, key_prefix=key_prefix)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    """The sandbox fakes over real HTTP, shared by the session (tests reset it as they need)."""
    with SandboxServer() as server:
        yield server
