"""The mail target's EventHandler: the rules an event matches, each sent at most once.

At most once per (rule, event) (README "Mail"). The event is what Clockify reported: its type,
its object and its body (a digest, so a duplicate Clockify sends again, a redelivered task and a
replay are the same event). Under a lock per event, for each matching rule:

1. recorded as sent: nothing to do;
2. recorded as *sending* (a send began and no answer was recorded: a worker died, or the
   connection broke after the mail went out): the server may have the mail. Never sent again
   by itself: dead-lettered as an unknown outcome; ``dlq replay --force`` sends it again;
3. otherwise the send is recorded as *sending* and then handed to the SMTP server, with a
   Message-ID derived from (rule, event); on the server's acceptance it is recorded as sent.
   A failure that proves the server took nothing (smtp.py) clears the record, so the retry
   sends it; one that proves nothing leaves it, and (2) applies.

A rule's channel is "smtp" (its mail, to the SMTP server) or "organi" (Organi's configured
mailing ``list``, through the Organi target's client: organi.py); both keep the same record.

So a crash between the record and the acceptance can lose one mail, and nothing sends two.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import orjson
import redis
from redis.lock import Lock

from clockify_relay.connectors.mail.config import MailConfig, Rule, parse_config, render
from clockify_relay.connectors.mail.fields import MailEvent, mail_event
from clockify_relay.connectors.mail.organi import OrganiListChannel
from clockify_relay.connectors.mail.smtp import SendFailure, SmtpChannel
from clockify_relay.errors import TransientError, UnknownOutcomeError
from clockify_relay.pipeline.engine import LOCK_WAIT, Outcome, skipped
from clockify_relay.pipeline.messages import Envelope

if TYPE_CHECKING:
    from clockify_relay.pipeline.runtime import Runtime

TARGET = "mail"
LOCK_MARGIN = 5.0
SENDING, SENT = "sending", "sent"


def event_key(envelope: Envelope) -> str:
    """The event's identity: type, workspace, object and body (keys in any order)."""
    body = orjson.dumps(envelope["payload"], option=orjson.OPT_SORT_KEYS)
    head = f"{envelope['event_type']}\0{envelope['workspace_id']}\0{envelope['entity_id']}\0"
    return hashlib.sha256(head.encode() + body).hexdigest()[:40]


def message_id(rule: Rule, key: str, domain: str) -> str:
    """The same for every attempt of (rule, event), so a receiver can tell a copy."""
    digest = hashlib.sha256(f"{rule.name}\0{key}".encode()).hexdigest()[:32]
    return f"<{digest}.relay@{domain}>"


class MailHandler:
    """Sends the mails of the ``[[targets.mail.rules]]`` an event matches."""

    def __init__(self, runtime: Runtime, section: Mapping[str, Any]) -> None:
        self.config: MailConfig = parse_config(section)
        self.settings = runtime.settings
        self.redis: redis.Redis = runtime.redis
        self.keys = runtime.keys
        self.smtp = SmtpChannel(self.config.smtp, self.config.timeout)
        self.organi: OrganiListChannel | None = None
        if any(rule.channel == "organi" for rule in self.config.rules):
            self.organi = OrganiListChannel(self.settings.targets.get("organi"))
        # The lock is renewed before every send; it must outlast the slowest one.
        budgets = [self.smtp.call_budget, self.organi.call_budget if self.organi else 0.0]
        slowest = max(budgets)
        self.lock_seconds = int(slowest + LOCK_MARGIN)
        self._lock: Lock | None = None

    def probe(self) -> str:
        return self.smtp.probe()

    def deliver(self, envelope: Envelope, *, force: bool = False) -> Outcome:
        event_type = str(envelope["event_type"])
        if not any(event_type in rule.events for rule in self.config.rules):
            return skipped(f"no mail rule is for {event_type}")
        event = mail_event(event_type, envelope["payload"], self.settings)
        rules = [rule for rule in self.config.rules if rule.why_not(event) is None]
        if not rules:
            return skipped(f"no mail rule matches this {event_type}")
        key = event_key(envelope)
        outcome = Outcome("applied", f"{len(rules)} mail rule(s) matched")
        with self._locked(key):
            record = self.keys.mail_sent(key)
            for rule in rules:
                self._send_once(rule, event, key, record, force, outcome)
        return outcome

    def _send_once(
        self, rule: Rule, event: MailEvent, key: str, record: str, force: bool, outcome: Outcome
    ) -> None:
        status = self.redis.hget(record, rule.name)
        text = status.decode() if isinstance(status, bytes) else status
        state = text.split(" ", 1)[0] if text else None
        mid = message_id(rule, key, self.config.domain)
        if state == SENT:
            outcome.operations.append(f"{rule.name}: sent before")
            outcome.remote_ids[rule.name] = mid
            return
        if state == SENDING and not force:
            raise UnknownOutcomeError(
                f"unknown outcome — mail rule {rule.name!r} began sending this event's mail "
                f"{mid} and never recorded the answer ({rule.channel}): it may have been sent. "
                "Check the recipients' mailboxes before replaying with --force"
            )
        if rule.channel == "organi":
            self._send_mailing(rule, record, outcome)
            outcome.remote_ids[rule.name] = mid
            return
        recipients = rule.recipients(event)
        if not recipients:
            outcome.operations.append(f"{rule.name}: no recipient in this event")
            return
        message = EmailMessage()
        message["From"] = self.config.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = render(rule.subject, event)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = mid
        message.set_content(render(rule.body, event))
        self._renew_lock()
        self._write(record, rule.name, f"{SENDING} {time.time():.3f}")
        try:
            refused = self.smtp.send(message)
        except SendFailure as failure:
            if not failure.maybe_accepted:
                self.redis.hdel(record, rule.name)  # surely not accepted: a retry sends it
            raise failure.error from None
        self._write(record, rule.name, f"{SENT} {time.time():.3f}")
        got = [r for r in recipients if r not in refused]
        outcome.operations.append(f"{rule.name}: sent to {', '.join(got)}")
        if refused:
            outcome.operations.append(f"{rule.name}: refused {', '.join(sorted(refused))}")
        outcome.remote_ids[rule.name] = mid

    def _send_mailing(self, rule: Rule, record: str, outcome: Outcome) -> None:
        # An "organi" rule has its list, and the handler its channel (built in __init__).
        assert self.organi is not None and rule.mailing_list is not None
        self._renew_lock()
        self._write(record, rule.name, f"{SENDING} {time.time():.3f}")
        try:
            self.organi.send(rule.mailing_list)
        except SendFailure as failure:
            if not failure.maybe_accepted:
                self.redis.hdel(record, rule.name)  # surely not sent: a retry sends it
            raise failure.error from None
        self._write(record, rule.name, f"{SENT} {time.time():.3f}")
        outcome.operations.append(f"{rule.name}: Organi mailing list {rule.mailing_list!r} sent")

    def _write(self, record: str, field: str, value: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(record, field, value)
        pipe.expire(record, self.settings.state_ttl)
        pipe.execute()

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        lock = self.redis.lock(
            self.keys.lock(TARGET, key), timeout=self.lock_seconds, blocking_timeout=LOCK_WAIT
        )
        if not lock.acquire():
            raise TransientError(f"{TARGET}: event {key} is busy in another delivery")
        self._lock = lock
        try:
            yield
        finally:
            self._lock = None
            with suppress(redis.exceptions.LockError):
                lock.release()

    def _renew_lock(self) -> None:
        if self._lock is None:
            return
        try:
            self._lock.reacquire()
        except redis.exceptions.LockError:
            raise TransientError(f"{TARGET}: the event's lock expired; retrying") from None
