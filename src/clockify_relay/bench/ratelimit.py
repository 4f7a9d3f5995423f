"""``clockify-relay bench ratelimit``: N worker processes against the Blikk fake's real limit.

The Blikk fake (sandbox) refuses the fifth request within any one second per access token with a
429, and measures every arrival. N processes push time-report creates at it as fast as the
shared Redis :class:`~clockify_relay.ratelimit.RateLimiter` lets them, for ``duration`` seconds
after a warm-up. Two ways to run the processes:

* ``processes`` (default): N plain processes (``python -m clockify_relay.bench.ratelimit``),
  each calling :meth:`BlikkConnector.create` in a loop. Only the limiter is shared.
* ``celery``: N real ``clockify-relay worker --concurrency 1`` processes, fed with a backlog of
  ``NEW_TIME_ENTRY`` events (each a new entry) queued by the receiver's own ingest script, with
  only the Blikk target enabled; the whole delivery path runs.

The figures come from the fake's own state (``GET /_sandbox/state``) read over HTTP at the start
and the end of the measured window: requests/s on the access token, 429s, and the most
requests it saw within any one second.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from clockify_relay.bench import delete_prefix, machine_info, redis_persistence, safe_redis_url
from clockify_relay.bench.loadgen import SAMPLE_EVENT_TYPE, SAMPLE_NEW_TIME_ENTRY, BodyFactory
from clockify_relay.embedded_redis import EmbeddedRedis
from clockify_relay.sandbox.core import SandboxConfig
from clockify_relay.sandbox.server import SandboxServer

TARGET_RATE = 3.8
START_DELAY = 4.0  # seconds for the processes to import and connect before the common start
Progress = Callable[[str], None]


@dataclass(frozen=True)
class RatelimitOptions:
    """What ``bench ratelimit`` runs."""

    workers: int = 4
    duration: float = 30.0  # measured seconds
    warmup: float = 2.0  # unmeasured seconds first (token fetch, first slots)
    mode: str = "processes"  # or "celery"
    redis_url: str | None = None  # None: an embedded Redis


def blikk_section(base_url: str, config: SandboxConfig) -> dict[str, Any]:
    """``[targets.blikk]`` (without the secret) mapping the sample entry to seeded records."""
    return {
        "base_url": base_url,
        "app_id": config.blikk_app_id,
        "timeout": 10,
        "defaults": {"activity_id": 1, "time_code_id": 1, "time_article_id": 1},
        "users": {str(SAMPLE_NEW_TIME_ENTRY["userId"]): 3},
        "projects": {str(SAMPLE_NEW_TIME_ENTRY["projectId"]): {"project_id": 1}},
    }


def _toml(section: Mapping[str, Any], path: str = "targets.blikk") -> list[str]:
    """A tiny TOML writer for :func:`blikk_section` (strings, numbers, nested tables)."""
    lines = [f"[{path}]"]
    tables = {k: v for k, v in section.items() if isinstance(v, Mapping)}
    for key, value in section.items():
        if key not in tables:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in tables.items():
        lines += ["", *_toml(value, f'{path}."{key}"')]
    return lines


# -- the plain worker process (``processes`` mode) ------------------------------------------------


def child_main(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One plain worker: ``create`` in a loop from ``start_at`` to ``stop_at`` (epoch seconds)."""
    from clockify_relay.clockify.models import parse_time_entry
    from clockify_relay.connectors.blikk.connector import BlikkConnector
    from clockify_relay.errors import RelayError
    from clockify_relay.settings import Secret, Settings

    client = redis.Redis.from_url(str(spec["redis_url"]))
    settings = Settings(redis_url=str(spec["redis_url"]), key_prefix=str(spec["key_prefix"]))
    section = {**spec["section"], "app_secret": Secret(str(spec["app_secret"]))}
    connector = BlikkConnector(settings, section, client)
    entry = parse_time_entry(SAMPLE_NEW_TIME_ENTRY)
    booking = connector.bookings(entry)[0]
    created = 0
    errors: Counter[str] = Counter()
    late = time.time() - float(spec["start_at"])
    if late < 0:
        time.sleep(-late)
    while time.time() < float(spec["stop_at"]):
        try:
            connector.create(entry, booking)
            created += 1
        except RelayError as exc:
            errors[f"{type(exc).__name__}: {exc.status or ''}"] += 1
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:
                time.sleep(min(float(retry_after), 5.0))
    connector.close()
    client.close()
    return {
        "pid": os.getpid(),
        "created": created,
        "errors": dict(errors),
        "late_start_seconds": round(max(late, 0.0), 3),
    }


def _start_children(
    options: RatelimitOptions, spec: Mapping[str, Any], workdir: Path
) -> list[subprocess.Popen[str]]:
    children = []
    for index in range(options.workers):
        child = subprocess.Popen(
            [sys.executable, "-m", "clockify_relay.bench.ratelimit"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(workdir / f"child-{index}.log").open("w"),
            text=True,
        )
        assert child.stdin is not None
        child.stdin.write(json.dumps({**spec, "index": index}))
        child.stdin.close()
        children.append(child)
    return children


# -- real Celery workers (``celery`` mode) -------------------------------------------------------


async def _queue_events(redis_url: str, key_prefix: str, count: int) -> None:
    """Queue ``count`` NEW_TIME_ENTRY events (new entry ids) with the receiver's ingest."""
    import redis.asyncio as aioredis

    from clockify_relay.receiver.ingest import Ingestor
    from clockify_relay.settings import Settings

    settings = Settings(redis_url=redis_url, key_prefix=key_prefix)
    client = aioredis.Redis.from_url(redis_url)
    ingestor = Ingestor(settings, client)
    bodies = BodyFactory(uuid.uuid4().hex[:6] + "d0")
    workspace = str(SAMPLE_NEW_TIME_ENTRY["workspaceId"])
    try:
        for _ in range(count):
            entry_id = bodies.next_id()
            body = entry_id.encode().join(bodies.parts)
            await ingestor.ingest(SAMPLE_EVENT_TYPE, workspace, entry_id, body)
    finally:
        await client.aclose()


def _start_celery_workers(
    options: RatelimitOptions, env: Mapping[str, str], workdir: Path
) -> list[subprocess.Popen[str]]:
    workers = []
    for index in range(options.workers):
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "clockify_relay", "worker", "--concurrency", "1"],
                env={**env, "RELAY_BEAT_SCHEDULE_FILE": str(workdir / f"beat-{index}")},
                stdout=(workdir / f"worker-{index}.log").open("w"),
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        )
    return workers


def _stop_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM the worker's process group (Celery's pool child too); SIGKILL after 20 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


# -- the run -------------------------------------------------------------------------------------


def fake_state(url: str) -> dict[str, Any]:
    """The Blikk part of ``GET /_sandbox/state``."""
    response = httpx.get(f"{url}/_sandbox/state", timeout=10)
    response.raise_for_status()
    blikk: dict[str, Any] = response.json()["blikk"]
    return blikk


def _split_requests(state: Mapping[str, Any]) -> tuple[int, int]:
    """(requests made with access tokens, token requests) in a state snapshot."""
    per_key: Mapping[str, int] = state["requests_per_token"]
    api = sum(v for k, v in per_key.items() if k.startswith("token:"))
    auth = sum(v for k, v in per_key.items() if k.startswith("app:"))
    return api, auth


def _sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def run_ratelimit(options: RatelimitOptions, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Run the benchmark and return the report (a JSON-able dict)."""
    if options.mode not in ("processes", "celery"):
        raise ValueError(f"unknown mode {options.mode!r}")
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-ratelimit-"))
    key_prefix = f"{os.environ.get('RELAY_KEY_PREFIX') or 'relay:'}bench-{uuid.uuid4().hex[:8]}:"
    sandbox_config = SandboxConfig()
    embedded: EmbeddedRedis | None = None
    client: redis.Redis | None = None
    sandbox: SandboxServer | None = None
    processes: list[subprocess.Popen[str]] = []
    report: dict[str, Any] = {
        "bench": "ratelimit",
        "machine": machine_info(),
        "options": asdict(options),
        "blikk_limit_per_second": sandbox_config.blikk_rate_per_second,
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    try:
        if options.redis_url:
            url = options.redis_url
        else:
            progress("starting an embedded Redis")
            embedded = EmbeddedRedis(workdir / "redis", fsync="everysec").start()
            url = embedded.url
        client = redis.Redis.from_url(url)
        report["redis"] = {
            "url": safe_redis_url(url),
            "embedded": embedded is not None,
            **redis_persistence(client),
        }
        sandbox = SandboxServer(sandbox_config).start()
        section = blikk_section(sandbox.base_urls["blikk"], sandbox_config)
        progress(f"sandbox at {sandbox.url}; Blikk limit {sandbox_config.blikk_rate_per_second}/s")

        if options.mode == "processes":
            start_at = time.time() + START_DELAY
            window = (start_at + options.warmup, start_at + options.warmup + options.duration)
            spec = {
                "redis_url": url,
                "key_prefix": key_prefix,
                "section": section,
                "app_secret": sandbox_config.blikk_app_secret,
                "start_at": start_at,
                "stop_at": window[1] + 1.0,
            }
            progress(f"{options.workers} plain processes calling BlikkConnector.create")
            processes = _start_children(options, spec, workdir)
        else:
            config_path = workdir / "relay.toml"
            config_path.write_text("\n".join(_toml(section)) + "\n")
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("RELAY_", "CLOCKIFY_", "BLIKK_", "EVERIT_", "TRACKET_"))
            }
            env.update(
                REDIS_URL=url,
                RELAY_KEY_PREFIX=key_prefix,
                RELAY_CONFIG=str(config_path),
                BLIKK_APP_SECRET=sandbox_config.blikk_app_secret,
                RELAY_LOG_LEVEL="WARNING",
                PYTHONUNBUFFERED="1",
            )
            backlog = int((options.duration + options.warmup + 20) * 4 * 1.5) + 10 * options.workers
            progress(f"queueing {backlog} NEW_TIME_ENTRY events")
            asyncio.run(_queue_events(url, key_prefix, backlog))
            report["events_queued"] = backlog
            progress(f"{options.workers} real Celery workers (clockify-relay worker)")
            processes = _start_celery_workers(options, env, workdir)
            deadline = time.time() + 60
            while sum(_split_requests(fake_state(sandbox.url))) == 0:
                if time.time() > deadline:
                    raise RuntimeError(f"no request reached the fake in 60 s; logs in {workdir}")
                time.sleep(0.1)
            start_at = time.time()
            window = (start_at + options.warmup, start_at + options.warmup + options.duration)

        _sleep_until(window[0])
        first = fake_state(sandbox.url)
        first_at = time.time()
        progress(f"measuring for {options.duration:g}s")
        _sleep_until(window[1])
        last = fake_state(sandbox.url)
        last_at = time.time()

        workers: list[dict[str, Any]] = []
        if options.mode == "processes":
            for child in processes:
                assert child.stdout is not None
                out = child.stdout.read()
                if child.wait(timeout=60) != 0:
                    raise RuntimeError(f"a worker process failed; logs in {workdir}")
                workers.append(json.loads(out.strip().splitlines()[-1]))
        else:
            for process in processes:
                _stop_group(process)
        final = fake_state(sandbox.url)

        measured = last_at - first_at
        api_requests = _split_requests(last)[0] - _split_requests(first)[0]
        rejected = int(last["rejected_429"]) - int(first["rejected_429"])
        rate = round(api_requests / measured, 3)
        report["window_seconds"] = round(measured, 3)
        report["measured"] = {
            "requests_per_second": rate,
            "requests": api_requests,
            "rejected_429": rejected,
        }
        total_api, total_auth = _split_requests(final)
        report["whole_run"] = {
            "api_requests": total_api,
            "token_requests": total_auth,
            "rejected_429": int(final["rejected_429"]),
            "max_requests_in_any_second": int(final["max_requests_in_any_second"]),
            "time_reports": len(final["timereports"]),
            "tokens_issued": int(final["tokens_issued"]),
        }
        if workers:
            report["workers"] = workers
        report["targets"] = {
            "requests_per_second": {
                "value": rate,
                "target": TARGET_RATE,
                "met": rate >= TARGET_RATE,
            },
            "no_429": {
                "value": int(final["rejected_429"]),
                "target": 0,
                "met": int(final["rejected_429"]) == 0,
            },
        }
        report["load_average_at_end"] = round(os.getloadavg()[0], 2)
        return report
    finally:
        for process in processes:
            if process.poll() is None:
                if options.mode == "celery":
                    _stop_group(process)
                else:
                    process.kill()
                    process.wait(timeout=10)
        if sandbox is not None:
            sandbox.stop()
        if client is not None:
            deleted = delete_prefix(client, key_prefix)
            report["cleanup"] = {"key_prefix": key_prefix, "deleted_keys": deleted}
            client.close()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a few lines of text."""
    machine = report["machine"]
    redis_info = report["redis"]
    measured = report["measured"]
    whole = report["whole_run"]
    lines = [
        f"machine: {machine['cpus']} CPUs ({machine['cpu_model']}), Python {machine['python']}",
        f"redis: {redis_info['version']} at {redis_info['url']}"
        f"{' (embedded)' if redis_info['embedded'] else ''}",
        f"mode: {report['options']['mode']}, {report['options']['workers']} worker processes, "
        f"Blikk fake limit {report['blikk_limit_per_second']}/s per token",
        "",
        f"measured window: {report['window_seconds']} s",
        f"  requests/s at the fake (access token): {measured['requests_per_second']}",
        f"  requests: {measured['requests']}, 429s: {measured['rejected_429']}",
        f"whole run: {whole['api_requests']} API + {whole['token_requests']} token requests, "
        f"{whole['rejected_429']} answered 429, max {whole['max_requests_in_any_second']} "
        f"requests in any one second, {whole['time_reports']} time reports",
    ]
    for worker in report.get("workers", []):
        lines.append(
            f"  worker pid {worker['pid']}: {worker['created']} created, "
            f"errors {worker['errors'] or 'none'}"
        )
    lines.append("targets:")
    for name, target in report["targets"].items():
        lines.append(
            f"  {name}: {'met' if target['met'] else 'MISSED'} "
            f"({target['value']} vs {target['target']})"
        )
    return "\n".join(lines)


def main() -> None:
    """Entry point of one plain worker process: spec on stdin, result as JSON on stdout."""
    result = child_main(json.load(sys.stdin))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
