"""The operations mail (``[targets.mail.ops]``): one mail to the ops addresses listing the
deliveries dead-lettered since the last one, at most one per ``interval``.

The scheduler (pipeline/scheduler.py) calls :meth:`OpsMailer.check` every second; it does work at
most once per interval for the whole deployment (``opsmail:check``, ``SET NX`` with the
interval as its TTL). A check lists the dead letters whose last failure is after the mark
(``opsmail:mark``) and at most ``SETTLE`` seconds old (a letter written with a slightly older
time is not skipped), writes the new mark, then sends one mail over the section's SMTP server.
The mark is written *before* the send: a crash or an SMTP failure loses that ops mail (logged),
it never sends two for the same batch. A letter that fails again (a failed replay) has a new
last failure time and is listed again.

The mail names each letter's target, event type, entity id, error and the replay command; the
errors are the relay's own messages, which never carry a secret, and no event body is included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import redis

from clockify_relay.connectors.mail.config import MailConfig, OpsMail, parse_config
from clockify_relay.connectors.mail.smtp import SendFailure, SmtpChannel
from clockify_relay.pipeline.dlq import DeadLetter, DeadLetterQueue
from clockify_relay.redis_conn import Keys

log = logging.getLogger("clockify_relay.opsmail")
SETTLE = 5.0  # seconds: dead letters younger than this wait for the next check


def ops_mailer(
    targets: Mapping[str, Mapping[str, Any]], client: redis.Redis, keys: Keys
) -> OpsMailer | None:
    """The ops mailer of the settings, or None when ``[targets.mail.ops]`` is not set (or the
    mail target is off)."""
    section = targets.get("mail")
    if section is None or section.get("enabled", True) is False or "ops" not in section:
        return None
    config = parse_config(section)
    assert config.ops is not None  # "ops" in the section, and it parsed
    return OpsMailer(config, config.ops, client, keys)


class OpsMailer:
    """Sends the dead-letter digest."""

    def __init__(self, config: MailConfig, ops: OpsMail, client: redis.Redis, keys: Keys) -> None:
        self.config = config
        self.ops = ops
        self.redis = client
        self.keys = keys
        self.dlq = DeadLetterQueue(client, keys)
        self.smtp = SmtpChannel(config.smtp, config.timeout)

    def check(self, now: float | None = None) -> list[DeadLetter] | None:
        """At most once per interval: mail the dead letters new since the last ops mail.
        Returns the letters mailed about (None: no check was due, or nothing was new)."""
        interval_ms = max(1, int(self.ops.interval * 1000))
        if not self.redis.set(self.keys.ops_mail_check, "1", nx=True, px=interval_ms):
            return None  # checked within this interval already
        now = time.time() if now is None else now
        raw = self.redis.get(self.keys.ops_mail_mark)
        mark = float(raw) if raw is not None else 0.0
        cutoff = now - SETTLE
        letters = [
            letter
            for letter in self.dlq.list(since=mark, until=cutoff)
            if letter.last_failure > mark
        ]
        if not letters:
            return None
        # Marked before sending: a crash from here loses this ops mail, never sends it twice.
        self.redis.set(self.keys.ops_mail_mark, repr(cutoff))
        try:
            self.smtp.send(self.message(letters))
        except SendFailure as failure:
            log.error(
                "ops mail about %d dead letter(s) not sent: %s", len(letters), failure.error.message
            )
            return None
        log.info("ops mail sent about %d dead letter(s)", len(letters))
        return letters

    def message(self, letters: Sequence[DeadLetter]) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.config.sender
        message["To"] = ", ".join(self.ops.to)
        message["Subject"] = f"clockify-relay: {len(letters)} new dead letter(s)"
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid("opsmail", domain=self.config.domain)
        message.set_content(body(letters))
        return message


def body(letters: Sequence[DeadLetter]) -> str:
    """The digest: one paragraph per dead letter, with its replay command."""
    lines = [
        f"{len(letters)} deliver{'y' if len(letters) == 1 else 'ies'} failed for good and "
        "wait in the dead-letter queue:",
        "",
    ]
    for letter in letters:
        failed = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(letter.last_failure))
        lines += [
            f"* {letter.target}: {letter.event_type} {letter.entity_id} (failed {failed}, "
            f"{letter.attempts} attempt(s))",
            f"  {letter.error_kind}: {letter.error}",
            f"  clockify-relay dlq replay {letter.id}",
            "",
        ]
    lines.append("clockify-relay dlq list shows every dead letter; dlq show <id> one in full.")
    return "\n".join(lines) + "\n"
