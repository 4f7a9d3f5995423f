"""Smoke tests of the benchmarks: each runs for a couple of seconds with tiny numbers and its
report has every field. Speed is never asserted here (docs/BENCHMARKS.md has the figures)."""

from __future__ import annotations

import pytest

from clockify_relay.bench.ingest import IngestOptions, format_report, run_ingest
from clockify_relay.bench.loadgen import SAMPLE_BODY, BodyFactory
from clockify_relay.bench.ratelimit import RatelimitOptions, run_ratelimit
from clockify_relay.bench.ratelimit import format_report as format_ratelimit

pytestmark = pytest.mark.integration


def test_bodies_have_fresh_entry_ids() -> None:
    bodies = BodyFactory("abc")
    first, second = bodies.body(), bodies.body()
    assert first != second
    assert len(first) == len(second) == len(SAMPLE_BODY)


def test_bench_ingest_reports_every_field(redis_url: str) -> None:
    options = IngestOptions(
        duration=1.0, warmup=0.2, connections=2, rate=20.0, rate_seconds=1.0, redis_url=redis_url
    )
    report = run_ingest(options)

    for server in ("receiver", "baseline"):
        phase = report[server]["max"]
        assert {"requests_per_second", "latency_ms", "statuses", "errors"} <= phase.keys()
        assert {"p50", "p99"} <= phase["latency_ms"].keys()
        assert report[server]["peak_rss_mb"] > 0
    fixed = report["receiver"]["fixed_rate"]
    assert {"p50", "p99"} <= fixed["latency_ms"].keys()
    assert fixed["target_rate"] == 20.0
    assert report["ratio"] is not None
    assert {"version", "appendonly", "appendfsync"} <= report["redis"].keys()
    assert report["queue_check"]["ok"], report["queue_check"]
    assert report["cleanup"]["keys_left"] == 0
    assert set(report["targets"]) == {
        "throughput_ratio",
        "p99_ms_at_fixed_rate",
        "receiver_peak_rss_mb",
        "every_202_queued",
    }
    assert "receiver / bare throughput" in format_report(report)
    # The disk's own fsync latency, beside the ack p99 (ARCHITECTURE §3, durability decision).
    disk = report["disk_fsync_ms"]
    assert 0 < disk["p50"] <= disk["p99"] <= disk["max"] and "Redis is elsewhere" in disk["where"]
    assert "disk fsync" in format_report(report)


@pytest.mark.parametrize("mode", ["processes", "celery"])
def test_bench_ratelimit_reports_every_field(redis_url: str, mode: str) -> None:
    report = run_ratelimit(
        RatelimitOptions(workers=2, duration=2.0, warmup=0.5, mode=mode, redis_url=redis_url)
    )

    assert {"requests_per_second", "requests", "rejected_429"} <= report["measured"].keys()
    assert {"rejected_429", "max_requests_in_any_second", "api_requests"} <= (
        report["whole_run"].keys()
    )
    assert report["whole_run"]["api_requests"] > 0
    assert set(report["targets"]) == {"requests_per_second", "no_429"}
    if mode == "processes":
        assert len(report["workers"]) == 2
    assert "requests/s at the fake" in format_ratelimit(report)
