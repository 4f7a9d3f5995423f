"""Deadlines for reading a request, and a cap on its head, for the receiver's uvicorn server.

uvicorn (httptools) bounds only the idle time *between* requests (``timeout_keep_alive``). It
has no limit on how long a request's head or body may take to arrive, nor on the size of the
head (``h11_max_incomplete_event_size`` exists for the h11 parser only, and httptools buffers a
header value of any length), so a client that sends one header line per second holds a
connection and its memory for ever. A webhook sender such as Clockify sends a request at once;
:class:`GuardedHttpToolsProtocol` (``uvicorn --http`` accepts a protocol class) closes a
connection that is slower than any sender needs:

* the request head (request line and headers) must be complete within :data:`HEAD_TIMEOUT`
  seconds of the connection opening or of the first byte of a follow-up request on a kept-alive
  connection: otherwise ``408`` (when part of a head arrived) and close;
* the body must be complete within :data:`BODY_TIMEOUT` seconds of the head: otherwise
  ``408`` (when no answer was started) and close; the application sees a disconnect;
* a head over :data:`MAX_HEAD_BYTES` bytes is answered ``431`` and the connection closed.

The limits are class attributes so a test can run the same protocol with shorter deadlines.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("clockify_relay.receiver")

# Seconds for the request line and headers to arrive: they fit in one packet from any webhook
# sender; generous for a person typing a curl command over a slow link too.
HEAD_TIMEOUT = 5.0
# Seconds for the body to arrive once the head has: 1 MiB (RELAY_MAX_BODY_BYTES) at 35 kB/s.
BODY_TIMEOUT = 30.0
# Request line plus headers: Clockify's are well under 4 KiB (its signature is a short JWT).
MAX_HEAD_BYTES = 32 * 1024
# Seconds an idle kept-alive connection stays open between requests (uvicorn's own option).
KEEP_ALIVE_TIMEOUT = 5


class HeadTooLarge(Exception):
    """Raised inside a parser callback: the request head is over the limit."""


def _answer(status: bytes, reason: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b" " + reason + b"\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(reason)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + reason
    )


REQUEST_TIMEOUT = _answer(b"408", b"Request Timeout")
HEAD_TOO_LARGE = _answer(b"431", b"Request Header Fields Too Large")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head/body deadlines and a head size limit."""

    head_timeout: float = HEAD_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    max_head_bytes: int = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        # Between the end of one request and the head of the next one is complete.
        self._in_head = True
        # Whether a byte of the current head has been parsed (408 then, else a silent close).
        self._head_begun = False
        # Exact bytes of the parsed request line and complete headers of the current head.
        self._head_size = 0
        # Bytes received while the head was incomplete: bounds what httptools buffers for a
        # header that never ends (it hands over a header only once it is complete).
        self._head_received = 0
        self._too_large = False

    def _peer(self) -> str:
        """The client's address for log lines (a proxy's when behind one)."""
        return f"{self.client[0]}:{self.client[1]}" if self.client else "?"

    # -- deadlines --------------------------------------------------------------------------

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        peer = self._peer()
        if phase == "head" and not self._head_begun:
            log.debug("closed a connection from %s: no request within %gs", peer, seconds)
        else:
            log.info(
                "closed a connection from %s: request %s not complete within %gs",
                peer,
                phase,
                seconds,
            )
            if self._may_answer(phase):
                self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()

    def _may_answer(self, phase: str) -> bool:
        """True when a 408 is the next thing the client expects (else it would garble or follow
        another answer)."""
        cycle = self.cycle
        if phase == "head":
            # ``cycle`` is the previous request's, if any: it must be answered in full.
            return cycle is None or cycle.response_complete
        # The current request's body: not when the application answered already (e.g. 413
        # without reading), nor when the request is pipelined behind one still being answered.
        return cycle is not None and not cycle.response_started and not self.pipeline

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a request is closed too.
        self._arm(self.head_timeout, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_received += len(data)
            if self._deadline is None:
                # First bytes of a follow-up request: uvicorn's keep-alive timer just ended.
                self._arm(self.head_timeout, "head")
        super().data_received(data)
        if (
            self._in_head
            and self._head_received > self.max_head_bytes
            and not self.transport.is_closing()
        ):
            # Still no end of head after this many bytes: it cannot end within the limit.
            self._refuse_head()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400; an error raised by our own size check
        # deserves its own status.
        if self._too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        peer = self._peer()
        log.info("refused a request from %s: head over %d bytes", peer, self.max_head_bytes)
        self._disarm()
        if self._may_answer("head"):
            self.transport.write(HEAD_TOO_LARGE)
        self.transport.close()

    # -- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.max_head_bytes:
            self._too_large = True
            raise HeadTooLarge

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_begun = True, False
        self._head_size = self._head_received = 0
        super().on_message_complete()
