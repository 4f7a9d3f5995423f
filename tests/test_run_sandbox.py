"""`clockify-relay run --sandbox` as a newcomer runs it: nothing installed, no REDIS_URL."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from clockify_relay.embedded_redis import free_port
from tests.fixture_loader import fixture_bytes
from tests.processes import RelayProcess, wait_until

pytestmark = pytest.mark.integration


def test_run_sandbox_delivers_to_every_fake(tmp_path: Path) -> None:
    port, sandbox_port = free_port(), free_port()
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
    relay = RelayProcess(
        [
            "run",
            "--sandbox",
            "--port",
            str(port),
            "--sandbox-port",
            str(sandbox_port),
            "--data-dir",
            str(tmp_path / "data"),
            "--concurrency",
            "2",
        ],
        env,
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
        # The embedded Redis persists under --data-dir (AOF).
        assert any((tmp_path / "data" / "redis").rglob("*.aof*"))
        assert token.group(1) not in relay.log().replace(token.group(0), "")
    finally:
        relay.stop()
