"""A small HTTP/1.1 keep-alive load generator for the ingest benchmark.

It runs in its own process (``python -m clockify_relay.bench.loadgen``; the spec as JSON on
stdin, the result as JSON on stdout) so it never shares an interpreter -- or a GIL -- with the
server it measures. It is built on raw :class:`asyncio.Protocol` connections (on uvloop when
available) rather than an HTTP client library, because on a two-core machine every cycle the
load generator spends is a cycle the server does not get.

Two modes:

* ``max``: closed loop. ``connections`` connections each send the next request as soon as the
  previous answer arrives, for ``duration`` seconds; the first ``warmup`` seconds are not
  measured. Gives the maximum throughput and the latency at that load.
* ``rate``: open loop at a fixed ``rate`` (requests/s) for ``duration`` seconds. Request *i* is
  due at ``start + i / rate`` whatever happened before; its latency is measured from that due
  time (not from when a connection became free), so a stalled server cannot hide its stall
  (no "coordinated omission").

Every request carries a realistic Clockify ``NEW_TIME_ENTRY`` body (~2.5 KB) with a fresh
24-hex entry id, so the receiver never sees a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

# A NEW_TIME_ENTRY webhook body in the shape Clockify sends (a copy of the recorded fixture
# tests/fixtures/clockify/NEW_TIME_ENTRY.json, embedded so the benchmark needs no test files).
SAMPLE_ENTRY_ID = "69b00a1e5d4c3b2a19f8e701"
SAMPLE_NEW_TIME_ENTRY: dict[str, Any] = {
    "id": SAMPLE_ENTRY_ID,
    "description": "Kickoff with Nordlys &amp; design review &lt;v2&gt;",
    "userId": "6641f2b4c7e13b5d2a8f0c21",
    "billable": True,
    "projectId": "6641f3e8c7e13b5d2a8f0c41",
    "timeInterval": {
        "start": "2026-03-10T08:00:00Z",
        "end": "2026-03-10T09:30:00Z",
        "duration": "PT1H30M",
        "timeZone": "Europe/Stockholm",
        "offsetStart": 3600,
        "offsetEnd": 3600,
        "zonedStart": "2026-03-10T09:00:00",
        "zonedEnd": "2026-03-10T10:30:00",
    },
    "workspaceId": "6641f2a9c7e13b5d2a8f0c11",
    "isLocked": False,
    "hourlyRate": None,
    "costRate": None,
    "customFieldValues": [
        {
            "customFieldId": "6641f450c7e13b5d2a8f0c71",
            "timeEntryId": SAMPLE_ENTRY_ID,
            "value": "NRD-1042",
            "name": "Ticket",
        }
    ],
    "type": "REGULAR",
    "kioskId": None,
    "approvalStatus": None,
    "detailedApprovalStatus": None,
    "projectCurrency": None,
    "currentlyRunning": False,
    "project": {
        "name": "Website relaunch",
        "hourlyRate": {"amount": 120000},
        "costRate": {"amount": 60000},
        "clientId": "6641f3d0c7e13b5d2a8f0c31",
        "workspaceId": "6641f2a9c7e13b5d2a8f0c11",
        "billable": True,
        "memberships": [
            {"userId": "6641f2b4c7e13b5d2a8f0c21", "hourlyRate": None, "costRate": None},
            {"userId": "6641f2b4c7e13b5d2a8f0c22", "hourlyRate": None, "costRate": None},
        ],
        "estimate": {"estimate": "PT0S", "type": "AUTO"},
        "color": "#8D6E63",
        "archived": False,
        "clientName": "Nordlys AB",
        "duration": "PT0S",
        "note": "",
        "activeEstimate": "NONE",
        "timeEstimate": {
            "includeNonBillable": True,
            "estimate": 0,
            "type": "AUTO",
            "resetOption": None,
        },
        "budgetEstimate": None,
        "estimateReset": None,
        "sourceType": None,
        "auditMetadata": {"updatedAt": 1773046800000},
        "accessOnPaidPlan": None,
        "id": "6641f3e8c7e13b5d2a8f0c41",
        "public": False,
        "template": False,
    },
    "task": {
        "name": "Design",
        "projectId": "6641f3e8c7e13b5d2a8f0c41",
        "assigneeId": "",
        "assigneeIds": [],
        "userGroupIds": [],
        "estimate": "PT0S",
        "status": "ACTIVE",
        "workspaceId": "6641f2a9c7e13b5d2a8f0c11",
        "budgetEstimate": 0,
        "billable": True,
        "hourlyRate": None,
        "costRate": None,
        "sourceType": "PRODUCTION",
        "id": "6641f40ac7e13b5d2a8f0c51",
        "duration": "PT0S",
    },
    "user": {
        "id": "6641f2b4c7e13b5d2a8f0c21",
        "name": "Anna Lindqvist",
        "status": "ACTIVE",
        "hourlyRate": {"amount": 95000},
        "costRate": {"amount": 52000},
    },
    "tags": [
        {
            "name": "Meeting",
            "workspaceId": "6641f2a9c7e13b5d2a8f0c11",
            "archived": False,
            "id": "6641f42fc7e13b5d2a8f0c61",
        },
        {
            "name": "Remote",
            "workspaceId": "6641f2a9c7e13b5d2a8f0c11",
            "archived": False,
            "id": "6641f42fc7e13b5d2a8f0c62",
        },
    ],
}
SAMPLE_EVENT_TYPE = "NEW_TIME_ENTRY"
# Python's default separators (", " and ": "): 2474 bytes, between Clockify's compact form and
# the indented fixture.
SAMPLE_BODY: bytes = json.dumps(SAMPLE_NEW_TIME_ENTRY).encode()
ENTRY_ID_HEX = 24


class BodyFactory:
    """Request bodies that differ only in the entry id: ``id_prefix`` + a hex counter.

    The template is split around the sample id once, so building a body is one ``join``.
    """

    def __init__(self, id_prefix: str, template: bytes = SAMPLE_BODY) -> None:
        if len(id_prefix) >= ENTRY_ID_HEX:
            raise ValueError("id_prefix must be shorter than an entry id")
        self.id_prefix = id_prefix
        self.parts = template.split(SAMPLE_ENTRY_ID.encode())
        self.counter = 0
        self.width = ENTRY_ID_HEX - len(id_prefix)

    def next_id(self) -> str:
        """A new entry id: 24 characters, unique within this factory."""
        self.counter += 1
        return f"{self.id_prefix}{self.counter:0{self.width}x}"

    def body(self) -> bytes:
        """A body with a new entry id in every place the sample id appeared."""
        return self.next_id().encode().join(self.parts)


def request_head(host: str, port: int, path: str, headers: Mapping[str, str]) -> bytes:
    """The request line and the fixed headers, up to (not including) Content-Length."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


def build_request(head: bytes, body: bytes) -> bytes:
    """A complete keep-alive request."""
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


class ResponseError(Exception):
    """The server answered something this client cannot parse, or closed the connection."""


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ResponseError(f"connection closed: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        marker = head.find(b"\r\ncontent-length:")
        if marker < 0:
            self._fail("response without Content-Length")
            return
        line_end = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : line_end if line_end > 0 else len(head)].strip())
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(head[9:12])
        del self.buffer[:total]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def _fail(self, message: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ResponseError(message))
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> asyncio.Future[int]:
        """Write one request; the future resolves to the response status."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter


class Pool:
    """``size`` connections to one server, reopened when the server closes one."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host = host
        self.port = port
        self.size = size
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(Connection, self.host, self.port)
        # uvloop may call connection_made only on the next loop iteration.
        protocol.transport = transport
        return protocol

    async def open(self) -> None:
        for _ in range(self.size):
            self.idle.put_nowait(await self._open())

    async def acquire(self) -> Connection:
        conn = await self.idle.get()
        if conn.closed:
            conn = await self._open()
        return conn

    def release(self, conn: Connection) -> None:
        self.idle.put_nowait(conn)

    def close(self) -> None:
        while not self.idle.empty():
            conn = self.idle.get_nowait()
            if conn.transport is not None:
                conn.transport.close()


@dataclass
class Recorder:
    """Statuses of every answered request; latencies of the measured ones."""

    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    completed_in_window: int = 0


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..1)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in milliseconds."""
    ordered = sorted(latencies)
    if not ordered:
        return {}
    ms = 1000.0
    return {
        "p50": round(percentile(ordered, 0.50) * ms, 3),
        "p90": round(percentile(ordered, 0.90) * ms, 3),
        "p99": round(percentile(ordered, 0.99) * ms, 3),
        "p999": round(percentile(ordered, 0.999) * ms, 3),
        "max": round(ordered[-1] * ms, 3),
        "mean": round(sum(ordered) / len(ordered) * ms, 3),
    }


async def _one(
    pool: Pool, data: bytes, due: float, window: tuple[float, float], recorder: Recorder
) -> None:
    """Send one request on a pooled connection and record it against ``due``."""
    conn = await pool.acquire()
    try:
        status = await conn.send(data)
    except (ResponseError, OSError) as exc:
        recorder.errors[type(exc).__name__] += 1
        return
    finally:
        pool.release(conn)
    done = time.perf_counter()
    recorder.statuses[status] += 1
    if window[0] <= due < window[1]:
        recorder.latencies.append(done - due)
    if window[0] <= done <= window[1]:
        recorder.completed_in_window += 1


async def run_max(
    pool: Pool, head: bytes, bodies: BodyFactory, duration: float, warmup: float, recorder: Recorder
) -> tuple[float, float]:
    """Closed loop on every connection; returns the measured window (perf_counter times)."""
    start = time.perf_counter()
    window = (start + warmup, start + warmup + duration)

    async def loop() -> None:
        while time.perf_counter() < window[1]:
            data = build_request(head, bodies.body())
            await _one(pool, data, time.perf_counter(), window, recorder)

    await asyncio.gather(*(loop() for _ in range(pool.size)))
    return window


async def run_rate(
    pool: Pool, head: bytes, bodies: BodyFactory, duration: float, rate: float, recorder: Recorder
) -> tuple[float, float]:
    """Open loop: request ``i`` is due at ``start + i / rate``; returns the window."""
    start = time.perf_counter() + 0.05
    window = (start, start + duration)
    total = int(duration * rate)
    tasks: set[asyncio.Task[None]] = set()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        data = build_request(head, bodies.body())
        task = asyncio.create_task(_one(pool, data, due, (start, math.inf), recorder))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return window


async def run(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run one phase described by ``spec`` and summarise it."""
    host, port = str(spec["host"]), int(spec["port"])
    pool = Pool(host, port, int(spec["connections"]))
    head = request_head(host, port, str(spec.get("path", "/")), dict(spec.get("headers", {})))
    bodies = BodyFactory(str(spec.get("id_prefix", "")))
    recorder = Recorder()
    cpu_before = time.process_time()
    await pool.open()
    mode = str(spec["mode"])
    duration = float(spec["duration"])
    wall_start = time.perf_counter()
    if mode == "max":
        window = await run_max(
            pool, head, bodies, duration, float(spec.get("warmup", 1.0)), recorder
        )
    elif mode == "rate":
        window = await run_rate(pool, head, bodies, duration, float(spec["rate"]), recorder)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    wall = time.perf_counter() - wall_start
    pool.close()
    measured = window[1] - window[0]
    result: dict[str, Any] = {
        "mode": mode,
        "connections": pool.size,
        "measured_seconds": round(measured, 3),
        "sent": bodies.counter,
        "statuses": {str(k): v for k, v in sorted(recorder.statuses.items())},
        "errors": dict(recorder.errors),
        "latency_ms": latency_summary(recorder.latencies),
        "measured_requests": len(recorder.latencies),
        "loadgen_cpu_seconds": round(time.process_time() - cpu_before, 3),
        "wall_seconds": round(wall, 3),
    }
    if mode == "max":
        result["requests_per_second"] = round(recorder.completed_in_window / measured, 1)
    else:
        result["target_rate"] = float(spec["rate"])
        result["requests_per_second"] = round(len(recorder.latencies) / measured, 1)
    return result


def run_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run a phase on uvloop when it is installed (as the servers do), else on asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        result = asyncio.run(run(spec))
        result["event_loop"] = "asyncio"
        return result
    result = uvloop.run(run(spec))
    result["event_loop"] = "uvloop"
    return result


def main() -> None:
    """Read the spec from stdin, run it, print the result as one JSON line."""
    spec = json.load(sys.stdin)
    result = run_spec(spec)
    result["pid"] = os.getpid()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
