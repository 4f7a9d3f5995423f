"""Clients that stall or vanish, against the receiver on a real uvicorn server driven by a raw
socket: a disconnect mid-body ends the request quietly."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp

from clockify_relay import ops
from clockify_relay.receiver.app import create_app
from clockify_relay.settings import Secret, Settings, parse_tokens
from tests.processes import wait_until
from tests.receiver.conftest import TOKEN

ADMIN_SECRET = "admin-secret-for-tests-" + "0123456789abcdef" * 3


@contextmanager
def uvicorn_server(app: ASGIApp, **options: Any) -> Iterator[tuple[str, int]]:
    """``app`` on uvicorn in a thread, on a free port; yields (host, port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    # log_config=None: uvicorn's records reach the root logger, where caplog sees them.
    config = uvicorn.Config(app, log_config=None, lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10, what="uvicorn started", interval=0.01)
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def receiver_options() -> dict[str, Any]:
    return {"loop": "uvloop", "http": "httptools", "access_log": False}


@pytest.fixture
def app(settings: Settings) -> ASGIApp:
    return create_app(
        settings.with_changes(
            webhook_tokens=parse_tokens(TOKEN), admin_jwt_secret=Secret(ADMIN_SECRET)
        )
    )


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=5)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (
            "/webhooks/clockify",
            f"Clockify-Webhook-Event-Type: NEW_TIME_ENTRY\r\nClockify-Signature: {TOKEN}\r\n",
        ),
        (
            "/admin/dlq/replay",
            f"Authorization: Bearer {ops.mint_admin_token(ADMIN_SECRET, 'tester', 300)}\r\n",
        ),
    ],
)
def test_a_client_that_disconnects_mid_body_ends_the_request_without_a_traceback(
    app: ASGIApp, caplog: pytest.LogCaptureFixture, path: str, headers: str
) -> None:
    caplog.set_level(logging.DEBUG)
    with uvicorn_server(app, **receiver_options()) as address:
        with connect(address) as client:
            client.sendall(
                f"POST {path} HTTP/1.1\r\nHost: relay\r\n{headers}"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
                + b'{"id": "partial'
            )
        wait_until(
            lambda: any(
                "disconnect" in r.getMessage().lower() or r.exc_info for r in caplog.records
            ),
            timeout=10,
            what="the receiver noticed the disconnect",
        )
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    noted = [r for r in caplog.records if "disconnect" in r.getMessage().lower()]
    assert len(noted) == 1 and noted[0].levelno <= logging.INFO
    assert TOKEN not in caplog.text
