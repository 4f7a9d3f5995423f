"""A real worker's liveness and shutdown, as Kubernetes and compose drive them: the heartbeat
file its event loop touches, and SIGTERM to its main process in the middle of a delivery."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from clockify_relay.pipeline import heartbeat, trace
from clockify_relay.pipeline.dlq import DeadLetterQueue
from clockify_relay.redis_conn import Keys
from clockify_relay.sandbox.server import SandboxServer
from tests.fixture_loader import fixture_bytes
from tests.pipeline.conftest import worklogs
from tests.processes import RelayProcess, relay_env, start_receiver, start_worker, wait_until

TOKEN = "lifecycle-token"
pytestmark = pytest.mark.integration


def worker_alive(heartbeat_file: Path, max_age: float) -> int:
    """Exit status of the liveness probe command, as the kubelet would run it."""
    env = {**os.environ, "RELAY_HEARTBEAT_FILE": str(heartbeat_file)}
    return subprocess.run(
        [sys.executable, "-m", "clockify_relay", "worker-alive", "--max-age", str(max_age)],
        env=env,
        capture_output=True,
        timeout=60,
    ).returncode


def test_heartbeat_is_fresh_while_the_loop_runs_and_stale_when_it_stops(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    beat = tmp_path / "worker.heartbeat"
    max_age = heartbeat.INTERVAL + 3
    assert worker_alive(beat, max_age) == 1  # no file: not alive
    worker = start_worker(relay_env(redis_url, key_prefix, RELAY_HEARTBEAT_FILE=str(beat)))
    assert worker.process is not None
    try:
        wait_until(beat.exists, what="heartbeat file")
        # Fresh, and kept fresh: several intervals later it is still young.
        time.sleep(heartbeat.INTERVAL * 1.5)
        age = heartbeat.age(beat)
        assert age is not None and age < max_age
        assert worker_alive(beat, max_age) == 0

        # The main process stops (its pool children keep running): the file goes stale.
        os.kill(worker.process.pid, signal.SIGSTOP)
        try:
            wait_until(
                lambda: worker_alive(beat, max_age) == 1,
                timeout=max_age + heartbeat.INTERVAL + 10,
                what="stale heartbeat",
                interval=1,
            )
        finally:
            os.kill(worker.process.pid, signal.SIGCONT)
        # Running again, it beats again.
        wait_until(lambda: worker_alive(beat, max_age) == 0, timeout=30, what="fresh again")
    finally:
        worker.stop()
    assert not beat.exists()  # a stopped worker leaves no heartbeat behind


def test_the_scheduler_beats_too(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    beat = tmp_path / "scheduler.heartbeat"
    env = relay_env(redis_url, key_prefix, RELAY_HEARTBEAT_FILE=str(beat))
    with RelayProcess(["scheduler"], env) as scheduler:
        scheduler.wait_for_log("scheduler running")
        wait_until(beat.exists, what="heartbeat file")
        assert worker_alive(beat, 10) == 0


def everit_config(tmp_path: Path, sandbox: SandboxServer, timeout: float) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(
        f"""
[retry]
max_attempts = 4
base_delay = 0.2
max_delay = 2
max_countdown = 2

[targets.everit]
base_url = "{sandbox.base_urls["everit"]}"
timeout = {timeout}
reconcile_margin = 1

[targets.everit.defaults]
issue_id = 10000
"""
    )
    return path


class Pipeline:
    """Receiver and one worker against the sandbox's Everit."""

    def __init__(self, redis_url: str, key_prefix: str, env: dict[str, str]) -> None:
        self.env = env
        self.redis = redis.Redis.from_url(redis_url)
        self.keys = Keys(key_prefix)
        self.receiver, self.url = start_receiver(env)
        self.worker: RelayProcess = start_worker(env)

    def post_new_entry(self) -> str:
        response = httpx.post(
            self.url + "/webhooks/clockify",
            content=fixture_bytes("NEW_TIME_ENTRY"),
            headers={"Clockify-Webhook-Event-Type": "NEW_TIME_ENTRY", "Clockify-Signature": TOKEN},
        )
        assert response.status_code == 202, response.text
        event_id: str = response.json()["event_id"]
        return event_id

    def outcomes(self, event_id: str) -> list[str]:
        return [
            r.get("outcome", "")
            for r in trace.read(self.redis, self.keys, event_id)[1]
            if r.get("stage") == "deliver"
        ]

    def sigterm_worker(self) -> float:
        """SIGTERM to the worker's main process only (what a container's PID 1 gets); returns
        the seconds it took to exit."""
        assert self.worker.process is not None
        started = time.monotonic()
        self.worker.process.send_signal(signal.SIGTERM)
        self.worker.process.wait(timeout=60)
        return time.monotonic() - started

    def stop(self) -> None:
        self.worker.stop()
        self.receiver.stop()
        self.redis.close()


@pytest.fixture
def pipeline_env(
    redis_url: str, key_prefix: str, sandbox: SandboxServer, tmp_path: Path
) -> dict[str, str]:
    sandbox.reset()
    return relay_env(
        redis_url,
        key_prefix,
        CLOCKIFY_WEBHOOK_TOKENS=TOKEN,
        EVERIT_API_KEY=sandbox.config.everit_api_key,
        RELAY_HEARTBEAT_FILE=str(tmp_path / "worker.heartbeat"),
    )


@contextlib.contextmanager
def pipeline_with(
    pipeline_env: dict[str, str],
    redis_url: str,
    key_prefix: str,
    sandbox: SandboxServer,
    tmp_path: Path,
    *,
    timeout: float,
    visibility: int,
    soft_shutdown: float,
) -> Iterator[Pipeline]:
    """A receiver and a worker whose Everit timeout, visibility timeout and soft shutdown are
    these."""
    env = {
        **pipeline_env,
        "RELAY_CONFIG": str(everit_config(tmp_path, sandbox, timeout=timeout)),
        "RELAY_VISIBILITY_TIMEOUT": str(visibility),
        "RELAY_SOFT_SHUTDOWN_TIMEOUT": str(soft_shutdown),
    }
    running = Pipeline(redis_url, key_prefix, env)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def short_tasks(
    pipeline_env: dict[str, str],
    redis_url: str,
    key_prefix: str,
    sandbox: SandboxServer,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    with pipeline_with(
        pipeline_env,
        redis_url,
        key_prefix,
        sandbox,
        tmp_path,
        timeout=2,
        visibility=16,
        soft_shutdown=5,
    ) as running:
        yield running


def test_sigterm_mid_delivery_lets_it_finish_and_it_is_delivered_once(
    short_tasks: Pipeline, sandbox: SandboxServer
) -> None:
    relay = short_tasks
    # Everit takes 1.5 s to answer (within its 2 s timeout and the 5 s soft shutdown).
    sandbox.inject_fault("everit", latency=1.5, count=1)
    event_id = relay.post_new_entry()
    wait_until(lambda: sandbox.state()["requests"]["everit"] >= 1, what="request sent")
    took = relay.sigterm_worker()
    assert took < 5 + 10, f"worker took {took:.1f} s to stop"

    relay.worker = start_worker(relay.env)
    wait_until(lambda: "applied" in relay.outcomes(event_id), timeout=30, what="delivery applied")
    time.sleep(2)  # anything the new worker would still do to it, it does now
    assert relay.outcomes(event_id).count("applied") == 1
    assert len(worklogs(sandbox)) == 1
    assert sandbox.state()["requests"]["everit"] == 1  # one request, ever
    assert DeadLetterQueue(relay.redis, relay.keys).count() == 0


@pytest.fixture
def long_tasks(
    pipeline_env: dict[str, str],
    redis_url: str,
    key_prefix: str,
    sandbox: SandboxServer,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    with pipeline_with(
        pipeline_env,
        redis_url,
        key_prefix,
        sandbox,
        tmp_path,
        timeout=10,
        visibility=60,
        soft_shutdown=2,
    ) as running:
        yield running


def test_sigterm_returns_a_delivery_outliving_the_soft_shutdown_to_the_queue(
    long_tasks: Pipeline, sandbox: SandboxServer
) -> None:
    relay = long_tasks
    # Everit takes 6 s: longer than the 2 s the stopping worker waits.
    sandbox.inject_fault("everit", latency=6, count=1)
    event_id = relay.post_new_entry()
    wait_until(lambda: sandbox.state()["requests"]["everit"] >= 1, what="request sent")
    took = relay.sigterm_worker()
    assert took < 2 + 10, f"worker took {took:.1f} s to stop"
    # Back in the queue at once, not after the visibility timeout (60 s here).
    assert relay.redis.llen(relay.keys.queue) == 1

    relay.worker = start_worker(relay.env)
    # The create was sent and never answered: Everit cannot be searched, so the delivery is
    # dead-lettered as an unknown outcome once the request cannot still be running; never sent
    # a second time.
    wait_until(
        lambda: "dead-lettered" in relay.outcomes(event_id), timeout=60, what="dead-lettered"
    )
    [letter] = DeadLetterQueue(relay.redis, relay.keys).list()
    assert "unknown outcome" in letter.error
    assert sandbox.state()["requests"]["everit"] == 1
    assert len(worklogs(sandbox)) <= 1
