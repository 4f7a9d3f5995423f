"""Every Prometheus metric of the relay, through ``prometheus_client`` (docs/ARCHITECTURE.md).

Importable by the receiver: it needs neither Celery, nor the admin code, nor a connector.

Processes that fork (Celery's prefork pool, ``serve --workers N``) use prometheus_client's
multiprocess mode: each process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and
one scrape adds them up (:func:`registry`). The CLI points that variable at a fresh directory
(:func:`use_multiprocess_dir`) before a worker or a multi-process receiver starts; every metric
here has labels, so none holds a value before then, whatever was imported first.

The sizes read from Redis (queue depth, dead letters, parked) are read at scrape time by
:class:`RedisGauges`; when Redis does not answer, ``clockify_relay_redis_up`` is 0 and the
scrape still succeeds.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import prometheus_client
import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from clockify_relay.clockify.models import ROUTED_EVENTS
from clockify_relay.redis_conn import Keys

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# -- receiver ------------------------------------------------------------------------------------

WEBHOOKS = Counter(
    "clockify_relay_webhooks",
    "Webhook answers by event type (other: a type the relay does not know) and HTTP status.",
    ["event_type", "status"],
)
ACK_SECONDS = Histogram(
    "clockify_relay_webhook_ack_seconds",
    "Seconds from a webhook's arrival to its answer, by HTTP status.",
    ["status"],
    buckets=LATENCY_BUCKETS,
)

# -- workers -------------------------------------------------------------------------------------

ROUTED = Counter(
    "clockify_relay_events_routed", "Events fanned out to their targets, by type.", ["event_type"]
)
DELIVERIES = Counter(
    "clockify_relay_deliveries",
    "Delivery attempts by target and outcome (applied, deleted, skipped, failed).",
    ["target", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "clockify_relay_delivery_seconds",
    "Seconds one delivery attempt took (target calls, lock and state), by target.",
    ["target"],
    buckets=LATENCY_BUCKETS,
)
RETRIES = Counter(
    "clockify_relay_delivery_retries", "Deliveries retried after a countdown.", ["target"]
)
PARKED = Counter(
    "clockify_relay_delivery_parks", "Deliveries parked in Redis for a long wait.", ["target"]
)
DEAD_LETTERED = Counter(
    "clockify_relay_dead_lettered", "Deliveries put in the dead-letter queue.", ["target"]
)
RATE_LIMIT_WAIT = Histogram(
    "clockify_relay_rate_limit_wait_seconds",
    "Seconds a call waited for its slot in a shared rate limit, by target.",
    ["target"],
    buckets=(0, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERY_OUTCOMES = frozenset({"applied", "deleted", "skipped", "failed"})


def webhook_event_type(header: str) -> str:
    """The ``event_type`` label of a webhook: the header when the relay routes that type,
    else ``other`` (``none`` when missing), so a sender cannot grow the label set."""
    if not header:
        return "none"
    return header if header in ROUTED_EVENTS else "other"


def observe_webhook(event_type: str, status: int, seconds: float) -> None:
    WEBHOOKS.labels(webhook_event_type(event_type), str(status)).inc()
    ACK_SECONDS.labels(str(status)).observe(seconds)


def observe_step(stage: str, outcome: str, target: str | None, fields: Mapping[str, Any]) -> None:
    """Count one traced step of an event (pipeline/trace.py ``record``; ``fields``: the trace
    record)."""
    if stage == "route":
        ROUTED.labels(str(fields.get("event_type") or "unknown")).inc()
        return
    if stage != "deliver" or target is None:
        return
    if outcome in DELIVERY_OUTCOMES:
        DELIVERIES.labels(target, outcome).inc()
        seconds = fields.get("seconds")
        if isinstance(seconds, int | float):
            DELIVERY_SECONDS.labels(target).observe(seconds)
    elif outcome == "retry":
        RETRIES.labels(target).inc()
    elif outcome == "parked":
        PARKED.labels(target).inc()
    elif outcome == "dead-lettered":
        DEAD_LETTERED.labels(target).inc()


def observe_rate_wait(target: str, seconds: float) -> None:
    RATE_LIMIT_WAIT.labels(target).observe(seconds)


# -- multiprocess mode and scraping ---------------------------------------------------------------


def use_multiprocess_dir(directory: str | Path | None = None) -> Path:
    """Put this process (and the children it starts) in multiprocess mode.

    An operator's ``PROMETHEUS_MULTIPROC_DIR`` is kept as it is; otherwise a fresh, empty
    directory is made (under ``directory``, else the system's temporary directory) and the
    variable set to it. Returns the directory."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
    else:
        parent = Path(directory) if directory else Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"relay-metrics-{os.getpid()}-", dir=parent))
        os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client picks its value class once, when first imported: pick again now that
    # the variable is set (no metric here holds a value yet: they all have labels).
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


def multiprocess_for_children() -> Path:
    """:func:`use_multiprocess_dir` for a process about to fork or spawn its workers; a
    directory made here is removed when this process exits (not when a child does)."""
    made_here = not os.environ.get(MULTIPROC_ENV)
    directory = use_multiprocess_dir()
    if made_here:
        pid = os.getpid()

        def wipe() -> None:
            if os.getpid() == pid:
                shutil.rmtree(directory, ignore_errors=True)

        atexit.register(wipe)
    return directory


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def mark_process_dead(pid: int) -> None:
    """A forked process is gone: drop its live gauges (its counters still count)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class _Collectors:
    """Several collectors as one (a registry of the process's metrics plus Redis gauges)."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[prometheus_client.Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def registry(*extra: Collector) -> CollectorRegistry:
    """What one scrape shows: every process's metrics (multiprocess mode: read from the
    directory) or this process's (the default registry), plus ``extra`` collectors."""
    source: Collector
    if multiprocess_enabled():
        source = CollectorRegistry()
        multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
    else:
        source = prometheus_client.REGISTRY
    result = CollectorRegistry(auto_describe=False)
    result.register(_Collectors(source, *extra))
    return result


def exposition(*extra: Collector) -> bytes:
    """The Prometheus text of :func:`registry`."""
    return prometheus_client.generate_latest(registry(*extra))


CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class RedisSnapshot:
    """What the gauges read from Redis at scrape time: queue, dead-letter and parked sizes, and
    the paused targets (target → True when its circuit breaker paused it, False for an
    operator's pause; pipeline/control.py)."""

    queued: int
    dead: int
    parked: int
    paused: Mapping[str, bool] = field(default_factory=dict)


def read_paused(raw: Mapping[bytes, bytes]) -> dict[str, bool]:
    """The ``paused`` hash as target → paused by the breaker (a record that does not parse
    counts as an operator's pause)."""
    paused = {}
    for target, value in raw.items():
        try:
            breaker = bool(orjson.loads(value).get("breaker"))
        except (orjson.JSONDecodeError, AttributeError):
            breaker = False
        paused[target.decode()] = breaker
    return paused


class RedisGauges:
    """Queue depth, dead letters, parked deliveries and paused targets, read when scraped.

    ``read`` returns a :class:`RedisSnapshot`, or None when Redis did not answer (then only
    ``clockify_relay_redis_up 0``). Read from Redis, so a pause set by the CLI or by another
    process's breaker shows in every scrape."""

    def __init__(self, read: Callable[[], RedisSnapshot | None]) -> None:
        self.read = read

    def collect(self) -> Iterable[prometheus_client.Metric]:
        snapshot = self.read()
        up = GaugeMetricFamily("clockify_relay_redis_up", "1 when Redis answered this scrape.")
        up.add_metric([], 0 if snapshot is None else 1)
        yield up
        if snapshot is None:
            return
        sizes = (snapshot.queued, snapshot.dead, snapshot.parked)
        for (name, text), value in zip(REDIS_GAUGES, sizes, strict=True):
            family = GaugeMetricFamily(name, text)
            family.add_metric([], value)
            yield family
        paused = GaugeMetricFamily(
            "clockify_relay_target_paused",
            "1 while a target's deliveries are held, by reason (operator: paused by an "
            "operator; breaker: its circuit breaker is open); absent while it runs.",
            labels=["target", "reason"],
        )
        for target, breaker in sorted(snapshot.paused.items()):
            paused.add_metric([target, "breaker" if breaker else "operator"], 1)
        yield paused


REDIS_GAUGES = (
    ("clockify_relay_queue_depth", "Messages waiting in the Celery queue."),
    ("clockify_relay_dead_letters", "Deliveries in the dead-letter queue."),
    ("clockify_relay_parked", "Deliveries parked for a long wait."),
)


def start_worker_exporter(port: int, read: Callable[[], RedisSnapshot | None]) -> None:
    """Serve every worker process's metrics (and the Redis gauges) on ``port`` from a thread
    of the worker's main process."""
    prometheus_client.start_http_server(port, registry=registry(RedisGauges(read)))


def redis_sizes(client: redis.Redis, keys: Keys) -> Callable[[], RedisSnapshot | None]:
    """A reader of the Redis snapshot over a blocking client (the worker's exporter)."""

    def read() -> RedisSnapshot | None:
        try:
            pipe = client.pipeline(transaction=False)
            pipe.llen(keys.queue)
            pipe.hlen(keys.dlq)
            pipe.zcard(keys.parked)
            pipe.hgetall(keys.paused)
            queued, dead, parked, paused = pipe.execute()
        except (redis.RedisError, OSError):
            return None
        return RedisSnapshot(int(queued), int(dead), int(parked), read_paused(paused))

    return read
