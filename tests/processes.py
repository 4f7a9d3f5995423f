"""Real processes for integration tests: Celery workers and the receiver on uvicorn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from clockify_relay.embedded_redis import free_port


def relay_env(redis_url: str, key_prefix: str, **extra: str) -> dict[str, str]:
    """Environment for a relay process bound to the test Redis and prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "CLOCKIFY_"))}
    env.update(
        REDIS_URL=redis_url,
        RELAY_KEY_PREFIX=key_prefix,
        RELAY_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        # A worker stopped while busy waits this long (Celery's soft shutdown sleeps it out),
        # well within RelayProcess.stop's 20 s before it kills.
        RELAY_SOFT_SHUTDOWN_TIMEOUT="5",
    )
    env.update(extra)
    return env


class RelayProcess:
    """A ``clockify-relay`` subcommand run as a child process with its output in a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.args = args
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = Path(tempfile.mkstemp(prefix="relay-proc-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clockify_relay", *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"process exited early:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen in {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker's pool children too)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> RelayProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_worker(env: Mapping[str, str], concurrency: int = 1, *extra: str) -> RelayProcess:
    """A real Celery worker process, returned once it is ready to consume."""
    worker = RelayProcess(["worker", "--concurrency", str(concurrency), *extra], env).start()
    worker.wait_for_log("ready.", timeout=60)
    return worker


def start_receiver(env: Mapping[str, str]) -> tuple[RelayProcess, str]:
    """The receiver on uvicorn on a free port; returns the process and its base URL."""
    port = free_port()
    receiver = RelayProcess(["serve", "--host", "127.0.0.1", "--port", str(port)], env).start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(url + "/healthz"), timeout=30, what="receiver up")
    return receiver, url


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.1,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
