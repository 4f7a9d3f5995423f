"""Receiver fixtures: the real app against the test Redis, driven over ASGI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from clockify_relay.asgi import create_app
from clockify_relay.pipeline.messages import QUEUE
from clockify_relay.settings import Settings, parse_tokens

TOKEN = "test-token-for-any-event"
ENTRY_TOKEN = "test-token-bound-to-updates"


@pytest.fixture
def receiver_settings(settings: Settings) -> Settings:
    return settings.with_changes(
        webhook_tokens=parse_tokens(f"{TOKEN},TIME_ENTRY_UPDATED={ENTRY_TOKEN}")
    )


@pytest.fixture
def client(receiver_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(receiver_settings)) as test_client:
        yield test_client


def queued_envelopes(redis_client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    """Decode every Celery message waiting in the queue back to its envelope (oldest first)."""
    envelopes = []
    for raw in reversed(redis_client.lrange(f"{prefix}{QUEUE}", 0, -1)):
        message = orjson.loads(raw)
        args, kwargs, _embed = orjson.loads(message["body"])
        assert message["headers"]["task"] == "clockify_relay.route"
        assert kwargs == {}
        envelopes.append(args[0])
    return envelopes
