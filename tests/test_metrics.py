"""metrics.py: multiprocess aggregation across real forked processes, the Redis gauges, and the
label rules. Multiprocess mode changes process-wide state, so it runs in a child interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from clockify_relay import metrics

# Imports metrics (and so prometheus_client) *before* multiprocess mode is switched on, as the
# CLI does; then two forked processes count deliveries and the parent scrapes once.
CHILD = """
import multiprocessing, os, sys
from clockify_relay import metrics

metrics.use_multiprocess_dir(sys.argv[1])

def work(n):
    for _ in range(n):
        metrics.observe_step("deliver", "applied", "everit", {"seconds": 0.01})

ctx = multiprocessing.get_context("fork")
children = [ctx.Process(target=work, args=(n,)) for n in (3, 4)]
for child in children:
    child.start()
for child in children:
    child.join()
    metrics.mark_process_dead(child.pid)
snapshot = metrics.RedisSnapshot(5, 1, 2, {"everit": True})
print(metrics.exposition(metrics.RedisGauges(lambda: snapshot)).decode())
"""


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_two_forked_processes_add_up_in_one_scrape(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    [directory] = list(tmp_path.iterdir())  # a fresh directory made under the given one
    assert len(list(directory.glob("counter_*.db"))) == 2  # one file per process
    found = parse(result.stdout)
    everit = frozenset({("target", "everit"), ("outcome", "applied")})
    assert found[("clockify_relay_deliveries_total", everit)] == 7
    assert found[("clockify_relay_delivery_seconds_count", frozenset({("target", "everit")}))] == 7
    assert found[("clockify_relay_redis_up", frozenset())] == 1
    assert found[("clockify_relay_queue_depth", frozenset())] == 5
    assert found[("clockify_relay_dead_letters", frozenset())] == 1
    assert found[("clockify_relay_parked", frozenset())] == 2
    breaker = frozenset({("target", "everit"), ("reason", "breaker")})
    assert found[("clockify_relay_target_paused", breaker)] == 1


def test_redis_down_is_redis_up_0_without_sizes() -> None:
    found = parse(metrics.exposition(metrics.RedisGauges(lambda: None)).decode())
    assert found[("clockify_relay_redis_up", frozenset())] == 0
    assert ("clockify_relay_queue_depth", frozenset()) not in found


def test_paused_targets_are_read_from_the_paused_hash() -> None:
    raw = {b"everit": b'{"breaker": false}', b"blikk": b'{"breaker": true}', b"odd": b"[1]"}
    assert metrics.read_paused(raw) == {"everit": False, "blikk": True, "odd": False}
    snapshot = metrics.RedisSnapshot(0, 0, 0, metrics.read_paused(raw))
    found = parse(metrics.exposition(metrics.RedisGauges(lambda: snapshot)).decode())
    name = "clockify_relay_target_paused"
    assert found[(name, frozenset({("target", "everit"), ("reason", "operator")}))] == 1
    assert found[(name, frozenset({("target", "blikk"), ("reason", "breaker")}))] == 1


def test_webhook_event_type_label_is_bounded() -> None:
    assert metrics.webhook_event_type("NEW_TIME_ENTRY") == "NEW_TIME_ENTRY"
    assert metrics.webhook_event_type("x" * 500) == "other"
    assert metrics.webhook_event_type("") == "none"
