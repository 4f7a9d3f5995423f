"""The SMTP channel: one mail, one SMTP conversation, with the standard library (smtplib,
email.message.EmailMessage).

What a failure proves (README "Mail", the at-most-once rule). SMTP hands a mail over only when
the server answers 2xx to the end of the message data (the final ``.`` line). So:

* nothing was accepted when the conversation failed before that line was sent (connection
  refused or timed out, TLS, login, EHLO, MAIL FROM, RCPT TO, the DATA command) or when the
  server *answered* it with a refusal (4xx, 5xx): sending again is safe;
* after that line was sent, a lost connection or a timeout waiting for the answer proves
  nothing: the server may have accepted the mail. That is an unknown outcome, never retried
  by itself.

Errors (errors.py): 4xx answers and connection failures are transient, 5xx answers permanent,
a refused login or a server without STARTTLS a configuration error. Messages name the server by
``host:port`` only, never the credentials.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from clockify_relay.connectors.mail.config import SmtpEndpoint
from clockify_relay.errors import ConfigurationError, PermanentError, RelayError, TransientError

# SMTP steps in one conversation, each bounded by the timeout: connect and greeting, EHLO,
# STARTTLS, EHLO, AUTH, MAIL, RCPT (a few), DATA, the message, QUIT.
STEPS = 12


@dataclass
class SendFailure(Exception):
    """A send that failed; ``maybe_accepted``: the server may have taken the mail anyway."""

    error: RelayError
    maybe_accepted: bool


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP that notes when the end of the message data went out."""

    final_dot_sent = False

    def send(self, s: Any) -> None:
        # smtplib's data() sends the message and its terminating "<CRLF>.<CRLF>" in one call;
        # noted before sending, since a failed sendall may have sent it all.
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.final_dot_sent = True
        super().send(s)


class _SMTPS(smtplib.SMTP_SSL):
    final_dot_sent = False

    def send(self, s: Any) -> None:
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.final_dot_sent = True
        super().send(s)


class SmtpChannel:
    """Sends mails to one SMTP server (SMTP_URL)."""

    def __init__(self, endpoint: SmtpEndpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    @property
    def call_budget(self) -> float:
        """Worst-case seconds of one send."""
        return STEPS * self.timeout

    def _open(self) -> _SMTP | _SMTPS:
        context = ssl.create_default_context()
        client: _SMTP | _SMTPS
        if self.endpoint.tls == "smtps":
            client = _SMTPS(
                self.endpoint.host, self.endpoint.port, timeout=self.timeout, context=context
            )
        else:
            client = _SMTP(self.endpoint.host, self.endpoint.port, timeout=self.timeout)
        try:
            client.ehlo()
            if self.endpoint.tls == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if self.endpoint.username:
                password = self.endpoint.password.reveal() if self.endpoint.password else ""
                client.login(self.endpoint.username, password)
        except BaseException:
            client.close()
            raise
        return client

    def send(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """Hand the mail to the server; returns the recipients it refused (others got it).
        Raises :class:`SendFailure`."""
        client: _SMTP | _SMTPS | None = None
        try:
            client = self._open()
            refused = client.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            sent = client is not None and client.final_dot_sent
            raise self._failure(exc, sent) from None
        finally:
            if client is not None:
                _quit(client)
        return dict(refused)

    def probe(self) -> str:
        """Connect, EHLO, STARTTLS and log in as a send would."""
        try:
            client = self._open()
        except (smtplib.SMTPException, OSError) as exc:
            raise self._failure(exc, False).error from None
        _quit(client)
        who = "logged in" if self.endpoint.username else "connected"
        return f"{who} to the SMTP server at {self.endpoint}"

    def _failure(self, exc: BaseException, final_dot_sent: bool) -> SendFailure:
        where = f"SMTP server at {self.endpoint}"
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return SendFailure(
                ConfigurationError(
                    f"{where} refused the login ({exc.smtp_code}): check SMTP_URL's user and "
                    "password"
                ),
                False,
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return SendFailure(
                ConfigurationError(f"{where} does not offer what SMTP_URL asks for: {exc}"), False
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            text = "; ".join(
                f"{rcpt}: {code} {_text(reply)}" for rcpt, (code, reply) in exc.recipients.items()
            )
            if any(400 <= code < 500 for code in codes):
                deferred = TransientError(f"{where} deferred every recipient: {text}")
                return SendFailure(deferred, False)
            return SendFailure(PermanentError(f"{where} refused every recipient: {text}"), False)
        if isinstance(exc, smtplib.SMTPResponseException):
            # An answer: whatever it refused, the server did not take the mail.
            message = f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}"
            if 400 <= exc.smtp_code < 500:
                return SendFailure(TransientError(message, status=exc.smtp_code), False)
            return SendFailure(PermanentError(message, status=exc.smtp_code), False)
        # No answer: refused or dropped connections, timeouts, TLS failures.
        reason = type(exc).__name__
        if final_dot_sent:
            return SendFailure(
                TransientError(
                    f"{where}: the connection failed ({reason}) after the mail was sent and "
                    "before the server answered: it may have accepted it",
                    outcome_unknown=True,
                ),
                True,
            )
        return SendFailure(TransientError(f"{where} unreachable or dropped ({reason})"), False)


def _text(reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:200]


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
