"""Fuzzing the receiver with mutated recorded bodies: never a 5xx, nothing queued for a 4xx, and
every body answered 202 is one the worker can decode, parse, write to Redis and map — a 202 is
a promise (docs/ARCHITECTURE.md §3). Seeded, so a failure replays exactly."""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from clockify_relay.asgi import create_app
from clockify_relay.clockify.models import (
    APPROVAL_EVENTS,
    TIME_ENTRY_EVENTS,
    parse_approval,
    parse_time_entry,
)
from clockify_relay.connectors.base import Connector
from clockify_relay.connectors.registry import connector_class
from clockify_relay.errors import RelayError
from clockify_relay.pipeline.messages import encode
from clockify_relay.sandbox.relay_config import sandbox_targets
from clockify_relay.settings import Secret, Settings, parse_tokens
from tests.fixture_loader import fixture_json

TOKEN = "fuzz-token"
CASES = 1500
BASES = [
    "NEW_TIME_ENTRY",
    "NEW_TIME_ENTRY__legacy",
    "NEW_TIME_ENTRY__midnight_stockholm",
    "TIME_ENTRY_UPDATED",
    "TIME_ENTRY_DELETED__rich",
    "TIMER_STOPPED",
    "NEW_TIMER_STARTED",
    "APPROVAL_REQUEST_STATUS_UPDATED",
]
EVENT_TYPES = sorted(TIME_ENTRY_EVENTS | APPROVAL_EVENTS)


def nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": [value]}
    return value


ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    1e308,
    -0.0,
    "",
    "x" * 5000,
    "\u0000\ud7ff\U0001f600",
    "&lt;b&gt;&amp;amp;",
    "2026-13-45T99:99:99Z",
    "2026-03-10T08:00:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2199-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2026-03-10T08:00:00+14:00",
    "PT0S",
    "PT999999999H",
    "P1D",
    "-PT1H",
    "NaN",
    "Europe/Nowhere",
    "../../etc/passwd",
    [],
    {},
    [None, 1, "a"],
    nested(5),
    nested(20),
    nested(40),
]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``value``."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from paths(child, (*prefix, index))


def mutate(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    mutated = copy.deepcopy(body)
    for _ in range(rng.randint(1, 4)):
        candidates = list(paths(mutated))
        if not candidates:
            break
        path = rng.choice(candidates)
        parent: Any = mutated
        for step in path[:-1]:
            parent = parent[step]
        action = rng.random()
        if action < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.25 and isinstance(parent, dict):
            parent[rng.choice(["extra", "timeZone", "zonedStart", "id"])] = rng.choice(ODD_VALUES)
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    return mutated


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    fuzz_settings = settings.with_changes(webhook_tokens=parse_tokens(TOKEN))
    with TestClient(create_app(fuzz_settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def connectors(settings: Settings, redis_client: redis.Redis) -> list[Connector]:
    """Every target with the sandbox's catch-all mappings (mapping only: no request is sent)."""
    sections = sandbox_targets(
        {name: "http://127.0.0.1:9/unused" for name in ("everit", "blikk", "tracket", "organi")}
    )
    credentials = {
        "everit": {"api_key": Secret("k")},
        "blikk": {"app_id": "a", "app_secret": Secret("s")},
        "tracket": {"token": Secret("t")},
        "organi": {"token": Secret("t")},
    }
    return [
        connector_class(name)(settings, {**section, **credentials[name]}, redis_client)
        for name, section in sections.items()
        if name in credentials  # the booking targets (mail maps nothing)
    ]


def worker_side(message: bytes, connectors: list[Connector]) -> None:
    """What a worker does with a queued message, short of calling a target."""
    envelope = json.loads(json.loads(message)["body"])[0][0]  # kombu decodes with json
    encode(envelope)  # the trace and the dead-letter queue write it back
    if envelope["event_type"] in TIME_ENTRY_EVENTS:
        entry = parse_time_entry(envelope["payload"])
        for connector in connectors:
            # An unmapped entry is a configuration error: dead-lettered, not a crash.
            with contextlib.suppress(RelayError):
                connector.bookings(entry)
    else:
        parse_approval(envelope["payload"])


def test_fuzzed_bodies_get_no_5xx_and_every_202_is_processable(
    client: TestClient,
    redis_client: redis.Redis,
    key_prefix: str,
    connectors: list[Connector],
) -> None:
    rng = random.Random(20261123)
    queue = f"{key_prefix}relay"
    statuses: dict[int, int] = {}
    for case in range(CASES):
        base = rng.choice(BASES)
        body = mutate(fixture_json(base), rng)
        try:
            raw = orjson.dumps(body)
        except TypeError:  # nesting orjson itself will not write: send it by hand
            raw = json.dumps(body).encode()
        event_type = rng.choice(EVENT_TYPES) if rng.random() < 0.2 else base.split("__")[0]
        before = redis_client.llen(queue)
        response = client.post(
            "/webhooks/clockify",
            content=raw,
            headers={"Clockify-Webhook-Event-Type": event_type, "Clockify-Signature": TOKEN},
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (case, response.text)
        queued = redis_client.llen(queue) - before
        if response.status_code == 202:
            assert queued == 1, case
            worker_side(redis_client.lindex(queue, 0), connectors)
        else:
            assert queued == 0, (case, response.status_code)
    # The fuzzer reached both sides: plenty accepted and plenty refused.
    assert statuses.get(202, 0) > CASES // 10, statuses
    assert statuses.get(400, 0) > CASES // 10, statuses
