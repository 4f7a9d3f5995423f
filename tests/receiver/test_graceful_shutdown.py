"""SIGTERM to a running ``clockify-relay serve`` (what Kubernetes and compose send on a rollout):
webhook requests already in flight all get their complete answer; none is cut."""

from __future__ import annotations

import signal
import socket
import threading
import time
import uuid

import orjson
import pytest

from tests.fixture_loader import fixture_json
from tests.processes import relay_env, start_receiver, wait_until
from tests.receiver.conftest import TOKEN

IN_FLIGHT = 8


def webhook_body() -> bytes:
    payload = fixture_json("NEW_TIME_ENTRY")
    payload["id"] = uuid.uuid4().hex[:24]  # a new entry each: no duplicate
    return orjson.dumps(payload)


def read_response(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Status and JSON body of one HTTP/1.1 response, read to its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-body: {body!r}"
        body += chunk
    return status, orjson.loads(body[:length])


@pytest.mark.integration
def test_requests_in_flight_at_sigterm_get_complete_answers(
    redis_url: str, key_prefix: str
) -> None:
    receiver, url = start_receiver(relay_env(redis_url, key_prefix, CLOCKIFY_WEBHOOK_TOKENS=TOKEN))
    assert receiver.process is not None
    port = int(url.rsplit(":", 1)[1])
    try:
        bodies = [webhook_body() for _ in range(IN_FLIGHT)]
        sockets = []
        # Each request sends its head and half its body, then stalls: in flight at SIGTERM.
        for body in bodies:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            head = (
                "POST /webhooks/clockify HTTP/1.1\r\nHost: relay\r\n"
                "Content-Type: application/json\r\n"
                "Clockify-Webhook-Event-Type: NEW_TIME_ENTRY\r\n"
                f"Clockify-Signature: {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body[: len(body) // 2])
            sockets.append(sock)
        time.sleep(0.5)  # every head is read and its request started

        receiver.process.send_signal(signal.SIGTERM)
        wait_until(
            lambda: "Shutting down" in receiver.log(), timeout=10, what="receiver shutting down"
        )
        time.sleep(1.0)  # the server is draining while the clients are still sending

        answers: list[tuple[int, dict[str, object]]] = []
        errors: list[BaseException] = []

        def finish(sock: socket.socket, body: bytes) -> None:
            try:
                sock.sendall(body[len(body) // 2 :])
                answers.append(read_response(sock))
            except BaseException as exc:  # reported below, with the others
                errors.append(exc)
            finally:
                sock.close()

        threads = [
            threading.Thread(target=finish, args=pair) for pair in zip(sockets, bodies, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        assert len(answers) == IN_FLIGHT
        for status, answer in answers:
            assert status == 202, answer
            assert answer["status"] == "queued"
        # It exits on its own once they are answered, well before its graceful timeout
        # (uvicorn raises the signal again once drained, so the status is -SIGTERM).
        assert receiver.process.wait(timeout=20) in (0, -signal.SIGTERM)
        # And it took no new connection meanwhile.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        receiver.stop()
