"""The sandbox's SMTP server: a real one (aiosmtpd) on 127.0.0.1, for the mail target.

It keeps every mail it accepted, shown under ``"smtp"`` in ``GET /_sandbox/state`` as
``{"messages": [{"from", "to", "subject", "body", "message_id"}], "mode": …}`` and forgotten by
``POST /_sandbox/reset``. ``PUT /_sandbox/smtp/mode`` (``{"mode": …}``) makes it misbehave
until the next reset:

* ``accept`` (default);
* ``refuse``: answer MAIL FROM with ``code`` (default 550; a 4xx such as 451 is a transient
  refusal); nothing is accepted;
* ``down``: stop listening (connections are refused) — back on the same port with another mode;
* ``lose-reply``: accept the mail (it is kept), then drop the connection before answering, as a
  server that crashes or a network that fails at the worst moment.
"""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from clockify_relay.embedded_redis import free_port

MODES = ("accept", "refuse", "down", "lose-reply")


class ModeError(ValueError):
    """A mode request that is not valid; the message says why."""


class SmtpSink:
    """The mails the sandbox's SMTP server accepted, its mode, and the server itself."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.mode = "accept"
        self.code = 550
        self.host = "127.0.0.1"
        self.port = 0
        self._controller: Controller | None = None

    # -- the server -----------------------------------------------------------------------

    def start(self, port: int = 0) -> int:
        """Listen on ``port`` (a free one when 0); returns it."""
        self.port = port or self.port or free_port()
        controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller
        return self.port

    def stop(self) -> None:
        """Stop listening (safe to call twice)."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    @property
    def listening(self) -> bool:
        return self._controller is not None

    # -- control --------------------------------------------------------------------------

    def set_mode(self, spec: Any) -> dict[str, Any]:
        """Apply ``{"mode": …, "code": …}`` (blocking: may stop or start the server)."""
        if not isinstance(spec, dict) or spec.get("mode") not in MODES:
            raise ModeError(f"'mode' must be one of {', '.join(MODES)}")
        unknown = set(spec) - {"mode", "code"}
        if unknown:
            raise ModeError(f"unknown fields: {sorted(unknown)}")
        code = spec.get("code", 550)
        if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 599:
            raise ModeError("'code' must be an SMTP refusal code (400-599)")
        with self.lock:
            self.mode, self.code = spec["mode"], code
        self._follow_mode()
        return self.state()

    def _follow_mode(self) -> None:
        if self.mode == "down" and self.listening:
            self.stop()
        elif self.mode != "down" and not self.listening and self.port:
            self.start(self.port)

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "messages": [dict(m) for m in self.messages],
                "mode": self.mode,
                "code": self.code if self.mode == "refuse" else None,
                "port": self.port,
            }

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.mode, self.code = "accept", 550
        self._follow_mode()

    def record(self, envelope: Envelope) -> None:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        body = ""
        if isinstance(parsed, EmailMessage):
            part = parsed.get_body(preferencelist=("plain",))
            if isinstance(part, EmailMessage):
                body = str(part.get_content()).replace("\r\n", "\n")  # as sent
        with self.lock:
            self.messages.append(
                {
                    "from": envelope.mail_from,
                    "to": list(envelope.rcpt_tos),
                    "subject": str(parsed["Subject"] or ""),
                    "body": body,
                    "message_id": str(parsed["Message-ID"] or ""),
                }
            )


class _Handler:
    """aiosmtpd's handler hooks."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.sink.mode == "refuse":
            return f"{self.sink.code} sandbox: refused (mode refuse)"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.sink.record(envelope)
        if self.sink.mode == "lose-reply" and server.transport is not None:
            server.transport.close()  # accepted, and the answer never reaches the client
        return "250 OK: queued"
