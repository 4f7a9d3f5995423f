"""``clockify-relay bench ingest``: the receiver against a bare Starlette endpoint.

Both servers run, one after the other, in their own uvicorn process with the same settings (one
process, uvloop, httptools, access log off); the same load generator
(:mod:`clockify_relay.bench.loadgen`) drives both from a third process. Phases:

1. receiver, fixed rate (default 100 requests/s for 60 s): latency at a realistic load;
2. receiver, maximum throughput (closed loop, ``connections`` connections, ``duration`` s);
3. bare endpoint, maximum throughput, same settings.

After the receiver's phases every 202 is checked against the queue (LLEN of the Celery queue
under the run's own key prefix must equal the number of 202s); then every key of the run is
deleted. The server's peak RSS is the kernel's high-water mark (``VmHWM``) where available.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from clockify_relay.bench import delete_prefix, machine_info, redis_persistence, safe_redis_url
from clockify_relay.bench.loadgen import SAMPLE_BODY, SAMPLE_EVENT_TYPE, latency_summary
from clockify_relay.embedded_redis import EmbeddedRedis, free_port
from clockify_relay.pipeline.messages import QUEUE

RECEIVER_APP = "clockify_relay.asgi:create_app"
BASELINE_APP = "clockify_relay.bench.baseline:create_app"
WEBHOOK_PATH = "/webhooks/clockify"
UVICORN_SETTINGS = (
    "1 process, --loop uvloop, --http httptools, --no-access-log, --log-level warning"
)

# Targets from the issue.
TARGET_RATIO = 0.25
TARGET_P99_MS = 20.0
TARGET_RSS_MB = 80.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class IngestOptions:
    """What ``bench ingest`` runs."""

    duration: float = 10.0  # seconds of each maximum-throughput phase (after warm-up)
    connections: int = 32
    rate: float = 100.0  # requests/s of the receiver's fixed-rate phase
    rate_seconds: float = 60.0
    warmup: float = 1.0
    redis_url: str | None = None  # None: an embedded Redis with AOF, fsync ``fsync``
    fsync: str = "always"
    host: str = "127.0.0.1"


def server_env(redis_url: str, key_prefix: str, token: str) -> dict[str, str]:
    """The server's environment: ours without relay settings, plus the run's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "CLOCKIFY_"))}
    env.update(
        REDIS_URL=redis_url,
        RELAY_KEY_PREFIX=key_prefix,
        CLOCKIFY_WEBHOOK_TOKENS=token,
        RELAY_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def peak_rss_bytes(pid: int) -> int | None:
    """The kernel's resident-set high-water mark of ``pid`` (Linux ``VmHWM``), if known."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class ServerProcess:
    """One uvicorn process serving an app factory, with its RSS sampled while it runs."""

    def __init__(self, app: str, env: Mapping[str, str], host: str, log_path: Path) -> None:
        self.app = app
        self.env = dict(env)
        self.host = host
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self.sampled_peak_rss = 0
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        """The uvicorn command line: the same for every app."""
        return [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--factory",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start uvicorn and wait until ``/healthz`` answers 200."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv(),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.app} exited at start:\n{self.log()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.app} did not answer /healthz in {timeout:g}s")
            time.sleep(0.1)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        assert self.ps is not None
        while not self._stop_sampling.wait(0.05):
            try:
                self.sampled_peak_rss = max(self.sampled_peak_rss, self.ps.memory_info().rss)
            except psutil.Error:
                return

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss(self) -> int:
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        assert self.ps is not None
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def peak_rss(self) -> int:
        """Peak RSS so far: ``VmHWM`` where the kernel reports it, else the sampled maximum."""
        assert self.process is not None
        return max(peak_rss_bytes(self.process.pid) or 0, self.sampled_peak_rss)

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL after 10 s."""
        self._stop_sampling.set()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def run_loadgen(spec: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Run one phase of the load generator in its own process; its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "clockify_relay.bench.loadgen"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def redis_cpu_seconds(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (INFO cpu), for the share of the cores it took."""
    cpu = client.info("cpu")
    return float(cpu.get("used_cpu_user", 0.0)) + float(cpu.get("used_cpu_sys", 0.0))


def measure_phase(
    server: ServerProcess, client: redis.Redis | None, spec: Mapping[str, Any], timeout: float
) -> dict[str, Any]:
    """Run one load-generator phase against ``server``, adding the CPU each process used."""
    server_cpu = server.cpu_seconds()
    redis_cpu = redis_cpu_seconds(client) if client is not None else 0.0
    result = run_loadgen(spec, timeout)
    server_cpu = server.cpu_seconds() - server_cpu
    result["server_cpu_seconds"] = round(server_cpu, 3)
    answered = sum(result["statuses"].values())
    if answered:
        result["server_cpu_us_per_request"] = round(server_cpu / answered * 1e6, 1)
    if client is not None:
        result["redis_cpu_seconds"] = round(redis_cpu_seconds(client) - redis_cpu, 3)
    return result


def _spec(
    server: ServerProcess,
    token: str,
    mode: str,
    connections: int,
    duration: float,
    id_prefix: str,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "path": WEBHOOK_PATH,
        "headers": {
            "Content-Type": "application/json",
            "Clockify-Webhook-Event-Type": SAMPLE_EVENT_TYPE,
            "Clockify-Signature": token,
        },
        "mode": mode,
        "connections": connections,
        "duration": duration,
        "id_prefix": id_prefix,
        **extra,
    }


def _mb(value: int) -> float:
    return round(value / (1024 * 1024), 1)


def _target(value: float | None, target: float, higher_is_better: bool) -> dict[str, Any]:
    met = None if value is None else (value >= target if higher_is_better else value <= target)
    return {"value": value, "target": target, "met": met}


def run_ingest(options: IngestOptions, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Run every phase and return the report (a JSON-able dict)."""
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-ingest-"))
    embedded: EmbeddedRedis | None = None
    client: redis.Redis | None = None
    run_id = uuid.uuid4().hex[:8]
    key_prefix = f"{os.environ.get('RELAY_KEY_PREFIX') or 'relay:'}bench-{run_id}:"
    token = secrets.token_urlsafe(32)
    report: dict[str, Any] = {
        "bench": "ingest",
        "machine": machine_info(),
        "options": asdict(options),
        "uvicorn": UVICORN_SETTINGS,
        "body_bytes": len(SAMPLE_BODY),
        "event_type": SAMPLE_EVENT_TYPE,
        # Other work on the machine skews every figure; the 1-minute load average shows it.
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    receiver: ServerProcess | None = None
    baseline: ServerProcess | None = None
    try:
        if options.redis_url:
            url = options.redis_url
        else:
            progress(f"starting an embedded Redis (AOF, appendfsync {options.fsync})")
            embedded = EmbeddedRedis(workdir / "redis", fsync=options.fsync).start()
            url = embedded.url
        client = redis.Redis.from_url(url)
        # Measured where the embedded Redis writes its AOF (a remote Redis's disk is not
        # this one: then it is this machine's, and says so).
        report["disk_fsync_ms"] = {
            "where": "the embedded Redis's AOF directory"
            if embedded is not None
            else "this machine's work directory (Redis is elsewhere: not its disk)",
            **disk_fsync_latency(workdir / "redis"),
        }
        report["redis"] = {
            "url": safe_redis_url(url),
            "embedded": embedded is not None,
            **redis_persistence(client),
        }
        env = server_env(url, key_prefix, token)
        rate_timeout = options.rate_seconds + 120
        max_timeout = options.duration + options.warmup + 120

        # -- the receiver -----------------------------------------------------------------
        progress(f"starting the receiver ({RECEIVER_APP})")
        receiver = ServerProcess(RECEIVER_APP, env, options.host, workdir / "receiver.log").start()
        receiver_report: dict[str, Any] = {"idle_rss_mb": _mb(receiver.rss())}
        progress(f"receiver: fixed rate {options.rate:g}/s for {options.rate_seconds:g}s")
        receiver_report["fixed_rate"] = measure_phase(
            receiver,
            client,
            _spec(
                receiver,
                token,
                "rate",
                options.connections,
                options.rate_seconds,
                run_id[:6] + "a0",
                rate=options.rate,
            ),
            rate_timeout,
        )
        progress(
            f"receiver: maximum throughput for {options.duration:g}s "
            f"({options.connections} connections)"
        )
        receiver_report["max"] = measure_phase(
            receiver,
            client,
            _spec(
                receiver,
                token,
                "max",
                options.connections,
                options.duration,
                run_id[:6] + "b0",
                warmup=options.warmup,
            ),
            max_timeout,
        )
        receiver_report["peak_rss_mb"] = _mb(receiver.peak_rss())
        receiver.stop()
        report["receiver"] = receiver_report

        accepted = sum(
            int(receiver_report[phase]["statuses"].get("202", 0)) for phase in ("fixed_rate", "max")
        )
        queued = int(client.llen(f"{key_prefix}{QUEUE}"))
        report["queue_check"] = {
            "accepted_202": accepted,
            "queued": queued,
            "ok": accepted == queued and accepted > 0,
        }

        # -- the bare endpoint ------------------------------------------------------------
        progress(f"starting the bare endpoint ({BASELINE_APP})")
        baseline = ServerProcess(BASELINE_APP, env, options.host, workdir / "baseline.log").start()
        baseline_report: dict[str, Any] = {"idle_rss_mb": _mb(baseline.rss())}
        progress(f"bare endpoint: maximum throughput for {options.duration:g}s")
        baseline_report["max"] = measure_phase(
            baseline,
            None,
            _spec(
                baseline,
                token,
                "max",
                options.connections,
                options.duration,
                run_id[:6] + "c0",
                warmup=options.warmup,
            ),
            max_timeout,
        )
        baseline_report["peak_rss_mb"] = _mb(baseline.peak_rss())
        baseline.stop()
        report["baseline"] = baseline_report

        receiver_rps = float(receiver_report["max"]["requests_per_second"])
        baseline_rps = float(baseline_report["max"]["requests_per_second"])
        ratio = round(receiver_rps / baseline_rps, 3) if baseline_rps else None
        report["ratio"] = ratio
        report["load_average_at_end"] = round(os.getloadavg()[0], 2)
        p99 = receiver_report["fixed_rate"]["latency_ms"].get("p99")
        report["targets"] = {
            "throughput_ratio": _target(ratio, TARGET_RATIO, higher_is_better=True),
            "p99_ms_at_fixed_rate": _target(p99, TARGET_P99_MS, higher_is_better=False),
            "receiver_peak_rss_mb": _target(
                receiver_report["peak_rss_mb"], TARGET_RSS_MB, higher_is_better=False
            ),
            "every_202_queued": {"met": report["queue_check"]["ok"]},
        }
        return report
    finally:
        for server in (receiver, baseline):
            if server is not None:
                server.stop()
        if client is not None:
            deleted = delete_prefix(client, key_prefix)
            left = sum(1 for _ in client.scan_iter(match=f"{key_prefix}*", count=1000))
            report["cleanup"] = {
                "key_prefix": key_prefix,
                "deleted_keys": deleted,
                "keys_left": left,
            }
            client.close()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


FSYNC_SAMPLES = 300
FSYNC_BLOCK = b"x" * 2048  # about one AOF entry of an ingest script call


def disk_fsync_latency(directory: Path, samples: int = FSYNC_SAMPLES) -> dict[str, float]:
    """The disk's own fsync latency where Redis keeps its AOF: append a block, fsync, repeat
    (what ``appendfsync always`` does per write). With AOF ``always`` the ack latency cannot
    be lower than this (docs/ARCHITECTURE.md §3, durability decision)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-probe"
    timings: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(samples):
            os.write(fd, FSYNC_BLOCK)
            started = time.perf_counter()
            os.fsync(fd)
            timings.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return latency_summary(timings)


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a few aligned lines of text."""
    lines: list[str] = []
    machine = report["machine"]
    redis_info = report["redis"]
    lines.append(
        f"machine: {machine['cpus']} CPUs ({machine['cpu_model']}), Python {machine['python']}"
    )
    lines.append(
        f"redis: {redis_info['version']} at {redis_info['url']}"
        f"{' (embedded)' if redis_info['embedded'] else ''}, appendonly {redis_info['appendonly']},"
        f" appendfsync {redis_info['appendfsync']}"
    )
    lines.append(f"uvicorn: {report['uvicorn']}; body {report['body_bytes']} bytes")
    lines.append("")
    header = (
        f"{'phase':<30}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'srv µs/req':>11}  statuses"
    )
    lines.append(header)
    lines.append("-" * len(header))

    def row(name: str, phase: Mapping[str, Any]) -> None:
        lat = phase["latency_ms"]
        statuses = ", ".join(f"{k}: {v}" for k, v in phase["statuses"].items())
        if phase["errors"]:
            statuses += f", errors {phase['errors']}"
        lines.append(
            f"{name:<30}{phase['requests_per_second']:>9.1f}{lat.get('p50', 0):>9.2f}"
            f"{lat.get('p99', 0):>9.2f}{lat.get('max', 0):>9.2f}"
            f"{phase.get('server_cpu_us_per_request', 0):>11.0f}  {statuses}"
        )

    receiver = report["receiver"]
    fixed = receiver["fixed_rate"]
    row(f"receiver @ {fixed['target_rate']:g}/s, {fixed['measured_seconds']:g}s", fixed)
    row(f"receiver max, {receiver['max']['connections']} conns", receiver["max"])
    row(
        f"bare endpoint max, {report['baseline']['max']['connections']} conns",
        report["baseline"]["max"],
    )
    lines.append("")
    if "disk_fsync_ms" in report:
        disk = report["disk_fsync_ms"]
        lines.append(
            f"disk fsync ({disk['where']}): p50 {disk['p50']:.2f} ms, p99 {disk['p99']:.2f} ms, "
            f"max {disk['max']:.2f} ms; receiver ack p99 at the fixed rate "
            f"{fixed['latency_ms'].get('p99', 0):.2f} ms"
        )
    lines.append(f"receiver / bare throughput: {report['ratio']}")
    lines.append(
        f"peak RSS: receiver {receiver['peak_rss_mb']} MB "
        f"(idle {receiver['idle_rss_mb']} MB), "
        f"bare {report['baseline']['peak_rss_mb']} MB"
    )
    check = report["queue_check"]
    lines.append(
        f"queue check: {check['accepted_202']} answered 202, {check['queued']} queued -> "
        f"{'OK' if check['ok'] else 'MISMATCH'}"
    )
    if "cleanup" in report:
        lines.append(
            f"cleanup: {report['cleanup']['deleted_keys']} keys deleted, "
            f"{report['cleanup']['keys_left']} left"
        )
    lines.append("targets:")
    for name, target in report["targets"].items():
        verdict = {True: "met", False: "MISSED", None: "n/a"}[target["met"]]
        detail = f" ({target['value']} vs {target['target']})" if "target" in target else ""
        lines.append(f"  {name}: {verdict}{detail}")
    return "\n".join(lines)
