"""`clockify-relay run --sandbox` as a newcomer runs it: nothing installed, no REDIS_URL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from clockify_relay.embedded_redis import free_port
from tests.fixture_loader import fixture_bytes
from tests.processes import RelayProcess, wait_until

pytestmark = pytest.mark.integration


def clean_env() -> dict[str, str]:
    """This process's environment without anything of the relay's (REDIS_URL included)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "RELAY_",
                "CLOCKIFY_",
                "REDIS_",
                "EVERIT_",
                "BLIKK_",
                "TRACKET_",
                "ORGANI_",
                "SMTP_",
                "MAIL_",
            )
        )
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def second_shell(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``clockify-relay ARGS`` as typed in another shell in ``cwd``: no REDIS_URL."""
    return subprocess.run(
        [sys.executable, "-m", "clockify_relay", *args],
        cwd=cwd,
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_sandbox_delivers_to_every_fake(tmp_path: Path) -> None:
    port, sandbox_port = free_port(), free_port()
    env = clean_env()
    relay = RelayProcess(
        [
            "run",
            "--sandbox",
            "--port",
            str(port),
            "--sandbox-port",
            str(sandbox_port),
            "--concurrency",
            "2",
        ],
        env,
        cwd=tmp_path,  # the embedded Redis's files go to ./.clockify-relay
    ).start()
    try:
        relay.wait_for_log("ready.", timeout=60)
        token = re.search(r"export TOKEN=(\S+)", relay.log())
        assert token, relay.log()
        response = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/clockify",
            content=fixture_bytes("NEW_TIME_ENTRY"),
            headers={
                "Clockify-Webhook-Event-Type": "NEW_TIME_ENTRY",
                "Clockify-Signature": token.group(1),
            },
        )
        assert response.status_code == 202, response.text

        def booked() -> dict[str, int] | None:
            state = httpx.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/state").json()
            counts = {
                "everit": len(state["everit"]["worklogs"]),
                "blikk": len(state["blikk"]["timereports"]),
                "tracket": len(state["tracket"]["worklogs"]),
                "organi": len(state["organi"]["worklogs"]),
            }
            return counts if all(counts.values()) else None

        assert wait_until(booked, timeout=60, what="all four targets booked") == {
            "everit": 1,
            "blikk": 1,
            "tracket": 1,
            "organi": 1,
        }
        # Mail is on with its example rule: a decided approval mails the approval's creator.
        response = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/clockify",
            content=fixture_bytes("APPROVAL_REQUEST_STATUS_UPDATED"),
            headers={
                "Clockify-Webhook-Event-Type": "APPROVAL_REQUEST_STATUS_UPDATED",
                "Clockify-Signature": token.group(1),
            },
        )
        assert response.status_code == 202, response.text

        def mailed() -> list[dict[str, object]] | None:
            state = httpx.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/state").json()
            messages: list[dict[str, object]] = state["smtp"]["messages"]
            return messages or None

        [mail] = wait_until(mailed, timeout=60, what="the approval mailed")
        assert mail["to"] == ["anna@nordlys.example"]
        assert mail["subject"] == "Timesheet 2026-03-09 to 2026-03-15 of Anna Lindqvist: APPROVED"
        assert "Note: Looks good & approved" in str(mail["body"])
        # The embedded Redis persists under --data-dir, ./.clockify-relay by default (AOF).
        assert any((tmp_path / ".clockify-relay" / "redis").rglob("*.aof*"))
        assert token.group(1) not in relay.log().replace(token.group(0), "")
    finally:
        relay.stop()


def test_a_second_shell_finds_the_embedded_redis_and_the_printed_exports_work(
    tmp_path: Path,
) -> None:
    port, sandbox_port = free_port(), free_port()
    args = ["run", "--sandbox", "--port", str(port), "--sandbox-port", str(sandbox_port)]
    relay = RelayProcess([*args, "--concurrency", "1"], clean_env(), cwd=tmp_path).start()
    try:
        relay.wait_for_log("ready.", timeout=60)
        log = relay.log()
        exports = dict(re.findall(r"^  export (\w+)=(\S+)", log, re.MULTILINE))
        assert set(exports) == {
            "REDIS_URL",
            "RELAY_CONFIG",
            "TOKEN",
            "RELAY_ADMIN_JWT_SECRET",
            "ADMIN_TOKEN",
        }
        # A command to run, with this clockify-relay (PATH here does not find it).
        assert re.search(r"^  export ADMIN_TOKEN=\$\(\S*clockify-relay admin-token\)", log, re.M)
        url = exports["REDIS_URL"]
        assert (tmp_path / ".clockify-relay" / "redis.url").read_text().strip() == url
        embedded_at = url.removeprefix("redis://")

        # REDIS_URL unset, same directory: the commands reach the embedded Redis.
        listed = second_shell(tmp_path, "dlq", "list", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert orjson.loads(listed.stdout) == []
        checked = second_shell(tmp_path, "check", "-o", "json")
        report = orjson.loads(checked.stdout)
        assert report["redis"]["ok"] is True, report
        assert report["redis"]["at"] == embedded_at
        assert report["redis"]["source"].endswith(".clockify-relay/redis.url")
        # Redis as shipped: no eviction, AOF with fsync always, so no Redis warning.
        assert report["redis"]["config"] == {
            "maxmemory-policy": "noeviction",
            "appendonly": "yes",
            "appendfsync": "always",
        }
        assert report["warnings"] == []
        # This shell has no config of its own: no target, which check calls an error.
        assert checked.returncode == 1 and report["errors"][0].startswith("no target enabled")
        # With the exported config, an operator command sees the targets the workers run
        # (and needs none of their credentials).
        targets = second_shell(
            tmp_path, "targets", "list", "-o", "json", RELAY_CONFIG=exports["RELAY_CONFIG"]
        )
        assert targets.returncode == 0, targets.stderr
        assert all(t["enabled"] for t in orjson.loads(targets.stdout)["targets"])
        # Elsewhere nothing is found: the default address.
        elsewhere = second_shell(tmp_path / ".clockify-relay", "check", "-o", "json")
        assert orjson.loads(elsewhere.stdout)["redis"]["source"] == "default"

        # README's admin example, with the printed secret: the admin API answers.
        secret = exports["RELAY_ADMIN_JWT_SECRET"]
        minted = second_shell(tmp_path, "admin-token", RELAY_ADMIN_JWT_SECRET=secret)
        assert minted.returncode == 0, minted.stderr
        answer = httpx.get(
            f"http://127.0.0.1:{port}/admin/dlq",
            headers={"Authorization": f"Bearer {minted.stdout.strip()}"},
        )
        assert answer.status_code == 200, answer.text

        # A second run in the same directory fails clearly and changes nothing.
        again = second_shell(
            tmp_path,
            "run",
            "--sandbox",
            "--port",
            str(free_port()),
            "--sandbox-port",
            str(free_port()),
        )
        assert again.returncode == 1
        assert "another clockify-relay run is using" in again.stderr
        assert f"export REDIS_URL={url}" in again.stderr
        assert (tmp_path / ".clockify-relay" / "redis.url").read_text().strip() == url
    finally:
        relay.kill()  # SIGKILL: the address file is left behind, as after a crash

    # The stale file breaks nothing: nothing answers there, so commands use the default...
    assert (tmp_path / ".clockify-relay" / "redis.url").exists()
    stale = second_shell(tmp_path, "check", "-o", "json")
    assert orjson.loads(stale.stdout)["redis"]["source"] == "default"
    # ...and the next run starts, on the same port when it is free.
    relay = RelayProcess([*args, "--concurrency", "1"], clean_env(), cwd=tmp_path).start()
    try:
        relay.wait_for_log("ready.", timeout=60)
        assert f"export REDIS_URL={url}\n" in relay.log()
        checked = second_shell(tmp_path, "dlq", "list", "-o", "json")
        assert checked.returncode == 0, checked.stderr
    finally:
        relay.stop()
    # A clean stop removes the address file.
    assert not (tmp_path / ".clockify-relay" / "redis.url").exists()
