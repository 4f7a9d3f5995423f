"""Benchmarks: ``clockify-relay bench ingest`` and ``clockify-relay bench ratelimit``.

Benchmarks are not tests: they measure and report, they never assert timings. Their figures and
how to reproduce them are in docs/BENCHMARKS.md. Shared helpers live here.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis


def cpu_model() -> str:
    """The CPU model as /proc/cpuinfo names it (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """What a figure depends on: cores, CPU, OS and Python."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def safe_redis_url(url: str) -> str:
    """``url`` without its password, for reports."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def redis_persistence(client: redis.Redis) -> dict[str, Any]:
    """Redis version and persistence settings (``CONFIG GET appendonly/appendfsync/save``)."""
    info: dict[str, Any] = {"version": client.info("server").get("redis_version")}
    for name in ("appendonly", "appendfsync", "save"):
        try:
            value = client.config_get(name).get(name)
        except redis.ResponseError:  # CONFIG disabled on a managed Redis
            value = None
        info[name] = value.decode() if isinstance(value, bytes) else value
    return info


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix`` (SCAN + UNLINK in batches); returns how many."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted
