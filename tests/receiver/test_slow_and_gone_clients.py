"""Clients that stall, flood or vanish, against the receiver on a real uvicorn server driven by
a raw socket.

uvicorn bounds only the idle time between requests; the receiver's protocol adds deadlines for
the head and the body of a request and a cap on the head (clockify_relay.receiver.connection).
The served ``clockify-relay serve`` process is tested with its real limits; the rest of the
behaviour with the same protocol at shorter limits, so the tests stay quick.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import uvicorn
from starlette.types import ASGIApp

from clockify_relay.admin import tokens
from clockify_relay.asgi import create_app
from clockify_relay.pipeline.messages import QUEUE
from clockify_relay.receiver.connection import (
    HEAD_TIMEOUT,
    MAX_HEAD_BYTES,
    GuardedHttpToolsProtocol,
)
from clockify_relay.settings import Secret, Settings, parse_tokens
from tests.processes import relay_env, start_receiver, wait_until
from tests.receiver.conftest import TOKEN

ADMIN_SECRET = "admin-secret-for-tests-" + "0123456789abcdef" * 3
WEBHOOK_HEADERS = f"Clockify-Webhook-Event-Type: NEW_TIME_ENTRY\r\nClockify-Signature: {TOKEN}\r\n"


class QuickLimits(GuardedHttpToolsProtocol):
    """The receiver's protocol with limits short enough for tests."""

    head_timeout = 0.6
    body_timeout = 0.6
    max_head_bytes = 2048


@contextmanager
def uvicorn_server(app: ASGIApp, **options: Any) -> Iterator[tuple[str, int]]:
    """``app`` on uvicorn in a thread, on a free port; yields (host, port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    # log_config=None: uvicorn's records reach the root logger, where caplog sees them.
    config = uvicorn.Config(
        app, log_config=None, lifespan="on", timeout_graceful_shutdown=1, **options
    )
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


def receiver_options(protocol: type[GuardedHttpToolsProtocol] = QuickLimits) -> dict[str, Any]:
    """What ``serve_receiver`` runs uvicorn with, but for the protocol's limits."""
    return {"loop": "uvloop", "http": protocol, "access_log": False, "timeout_keep_alive": 1}


@pytest.fixture
def app(settings: Settings) -> ASGIApp:
    return create_app(
        settings.with_changes(
            webhook_tokens=parse_tokens(TOKEN), admin_jwt_secret=Secret(ADMIN_SECRET)
        )
    )


@pytest.fixture
def quick(app: ASGIApp) -> Iterator[tuple[str, int]]:
    """The receiver app on uvicorn with the guarded protocol at short limits."""
    with uvicorn_server(app, **receiver_options()) as address:
        yield address


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=5)


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float | None]:
    """Everything the server sends within ``limit`` seconds, and when it closed (None: open)."""
    started = time.monotonic()
    received = b""
    while (left := limit - (time.monotonic() - started)) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received, time.monotonic() - started
        if not chunk:
            return received, time.monotonic() - started
        received += chunk
    return received, None


def read_response(sock: socket.socket, data: bytes = b"") -> tuple[int, bytes]:
    """One response with a Content-Length body from a kept-alive connection: (status, body);
    ``data`` is what was already read of it."""
    sock.settimeout(5)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), body


def drip(sock: socket.socket, pieces: list[bytes], every: float) -> tuple[float | None, bytes]:
    """Send ``pieces`` ``every`` seconds apart, reading meanwhile. Returns how long after the
    first piece the server closed (None: every piece went out and the connection is still
    open) and what it sent."""
    started = time.monotonic()
    received = b""
    for piece in pieces:
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started, received
        answer, closed = read_until_closed(sock, every)
        received += answer
        if closed is not None:
            return time.monotonic() - started, received
    return None, received


# --- the served receiver, with its real limits ----------------------------------------------


@pytest.fixture(scope="module")
def served(redis_url: str) -> Iterator[tuple[str, int]]:
    """``clockify-relay serve`` as a process; nothing it is sent here reaches Redis."""
    env = relay_env(redis_url, f"relaytest:{uuid.uuid4().hex[:10]}:", CLOCKIFY_WEBHOOK_TOKENS=TOKEN)
    process, url = start_receiver(env)
    try:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)
    finally:
        process.stop()


def test_the_served_receiver_closes_a_connection_that_sends_one_header_line_per_second(
    served: tuple[str, int],
) -> None:
    with connect(served) as client:
        pieces = [b"POST /webhooks/clockify HTTP/1.1\r\n"]
        pieces += [b"X-Drip-%d: %d\r\n" % (n, n) for n in range(int(HEAD_TIMEOUT) + 10)]
        closed_after, answer = drip(client, pieces, every=1.0)
    assert closed_after is not None, "the connection was still open after every header line"
    assert HEAD_TIMEOUT - 1.0 <= closed_after < HEAD_TIMEOUT + 2.0, closed_after
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_the_served_receiver_answers_431_to_a_request_head_over_the_limit(
    served: tuple[str, int],
) -> None:
    big = b"X-Padding: " + b"a" * MAX_HEAD_BYTES + b"\r\n"
    with connect(served) as client:
        client.sendall(
            b"POST /webhooks/clockify HTTP/1.1\r\nHost: relay\r\n"
            + big
            + WEBHOOK_HEADERS.encode()
            + b"Content-Length: 2\r\n\r\n{}"
        )
        answer, closed = read_until_closed(client, 5.0)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert closed is not None


# --- the protocol's behaviour, at short limits ----------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (
            "/webhooks/clockify",
            f"Clockify-Webhook-Event-Type: NEW_TIME_ENTRY\r\nClockify-Signature: {TOKEN}\r\n",
        ),
        # Minted when the test runs (see below): a token minted at collection would expire
        # before a long suite reaches the test, and a 401 is answered without reading the body.
        ("/admin/dlq/replay", "Authorization: Bearer {admin_token}\r\n"),
    ],
)
def test_a_client_that_disconnects_mid_body_ends_the_request_without_a_traceback(
    app: ASGIApp, caplog: pytest.LogCaptureFixture, path: str, headers: str
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = headers.replace("{admin_token}", tokens.mint_admin_token(ADMIN_SECRET, "tester", 300))
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


def test_a_connection_that_never_sends_a_request_is_closed_after_the_head_timeout(
    quick: tuple[str, int],
) -> None:
    with connect(quick) as client:
        answer, closed = read_until_closed(client, 5.0)
    assert closed is not None and closed >= QuickLimits.head_timeout - 0.1
    assert answer == b""  # nothing was asked, so nothing is answered


def test_a_head_dripping_past_the_head_timeout_is_answered_408_and_closed(
    quick: tuple[str, int],
) -> None:
    pieces = [b"GET /healthz HTTP/1.1\r\n"] + [b"X-Drip: 1\r\n"] * 30
    with connect(quick) as client:
        closed_after, answer = drip(client, pieces, every=0.1)
    assert closed_after is not None, "the connection was still open after every header line"
    assert QuickLimits.head_timeout - 0.1 <= closed_after < QuickLimits.head_timeout + 1.0
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_a_body_dripping_past_the_body_timeout_is_answered_408_and_nothing_is_queued(
    quick: tuple[str, int],
    caplog: pytest.LogCaptureFixture,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    caplog.set_level(logging.INFO)
    head = (
        f"POST /webhooks/clockify HTTP/1.1\r\nHost: relay\r\n{WEBHOOK_HEADERS}"
        "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    ).encode()
    with connect(quick) as client:
        closed_after, answer = drip(client, [head] + [b" "] * 30, every=0.1)
    assert closed_after is not None, "the connection was still open after every body byte"
    assert QuickLimits.body_timeout - 0.1 <= closed_after < QuickLimits.body_timeout + 1.0
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    # The application saw a disconnect and ended the request quietly.
    wait_until(
        lambda: any("disconnected" in r.getMessage() for r in caplog.records),
        timeout=5,
        what="the receiver ended the request",
    )
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert redis_client.llen(f"{key_prefix}{QUEUE}") == 0


def test_requests_within_the_limits_are_served_on_a_kept_alive_connection(
    quick: tuple[str, int],
) -> None:
    """Each request has its own head deadline, counted from its first byte: a connection may
    live longer than one deadline as long as every request is quick."""
    limit = QuickLimits.head_timeout
    with connect(quick) as client:
        started = time.monotonic()
        for _ in range(3):
            # Pieces of one head, each well within the deadline.
            closed_after, answer = drip(
                client,
                [b"GET /healthz HTTP/1.1\r\n", b"Host: relay\r\n", b"\r\n"],
                every=limit / 4,
            )
            assert closed_after is None
            assert read_response(client, answer) == (200, b'{"status":"ok"}')
        assert time.monotonic() - started > limit
        # Idle after the last answer: uvicorn's keep-alive timeout closes the connection.
        answer, closed = read_until_closed(client, 5.0)
    assert answer == b"" and closed is not None


def test_a_request_head_over_the_limit_is_answered_431(quick: tuple[str, int]) -> None:
    many = b"".join(b"X-Header-%d: value\r\n" % n for n in range(200))  # complete, too many
    endless = b"X-Endless: " + b"a" * (4 * QuickLimits.max_head_bytes)  # never terminated
    for extra in (many, endless):
        with connect(quick) as client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n" + extra)
            answer, closed = read_until_closed(client, 5.0)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        # Refused at once, not when the head deadline ran out.
        assert closed is not None and closed < QuickLimits.head_timeout


def test_a_head_just_under_the_limit_is_served(quick: tuple[str, int]) -> None:
    padding = b"a" * (QuickLimits.max_head_bytes - 200)
    with connect(quick) as client:
        client.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Padding: " + padding + b"\r\n\r\n"
        )
        assert read_response(client) == (200, b'{"status":"ok"}')
