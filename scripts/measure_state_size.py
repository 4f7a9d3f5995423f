#!/usr/bin/env python3
"""Measure the Redis memory the relay keeps per time entry (README "Sizing").

Writes N entry states (ID map, last applied sequence, owner) for one target plus the per-entry
sequence counter under a throwaway prefix, reads ``used_memory`` before and after, and removes
them again. Usage: ``.venv/bin/python scripts/measure_state_size.py [N]`` (REDIS_URL or
127.0.0.1:6379).
"""

from __future__ import annotations

import os
import sys
import uuid

import redis

from clockify_relay.pipeline.engine import EntryState
from clockify_relay.redis_conn import Keys


def main(count: int) -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    keys = Keys(f"relaysize-{uuid.uuid4().hex[:8]}:")
    workspace = "6641f2a9c7e13b5d2a8f0c11"
    before = int(client.info("memory")["used_memory"])
    for i in range(count):
        entry_id = f"69b00a1e5d4c3b2a{i:08x}"
        state = EntryState(client, keys.entry_state("everit", entry_id), 400 * 86400)
        state.set_id("", str(100000 + i))
        state.advance(3)
        state.set_owner("6641f2b4c7e13b5d2a8f0c21")
        client.set(keys.sequence(workspace, entry_id), 3, ex=400 * 86400)
    after = int(client.info("memory")["used_memory"])
    for key in client.scan_iter(f"{keys.prefix}*", count=5000):
        client.delete(key)
    per_entry = (after - before) / count
    print(f"{count} entries: {per_entry:.0f} bytes per entry for one target + sequence")
    print(f"≈ {per_entry * 1e6 / 2**20:.0f} MiB per million entries (one target)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
