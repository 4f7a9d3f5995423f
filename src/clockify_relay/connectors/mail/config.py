"""The ``[targets.mail]`` section: where mail goes out and the rules that send it.

Example::

    [targets.mail]
    from = "Clockify relay <relay@example.com>"   # or MAIL_FROM
    # smtp_url: SMTP_URL, a secret (smtp://user:pass@host:587?starttls=true, smtps://host:465)
    timeout = 10                                   # seconds per SMTP step

    [[targets.mail.rules]]
    name = "approval-decided"           # identifies the rule: what it sent is recorded by it
    events = ["APPROVAL_REQUEST_STATUS_UPDATED"]
    states = ["APPROVED", "REJECTED"]   # approval events only
    # projects = ["<project id>"]       # time-entry events only
    # users = ["<clockify user id>"]    # the entry's user or the approval's owner
    to = ["{creator_email}", "payroll@example.com"]
    subject = "Timesheet {period} of {owner}: {state}"
    body = "Note: {note}"
    # channel = "smtp"                  # the default; or "organi" with list = "<name>":

    [[targets.mail.rules]]
    name = "timesheet-approved-organi"
    events = ["APPROVAL_REQUEST_STATUS_UPDATED"]
    states = ["APPROVED"]
    channel = "organi"                  # Organi's "Send configured mailings"
    list = "timesheets-approved"        # the list name, configured in Organi (required)
    # no to/subject/body: Organi's mailing has its own recipients and text (refused here)

    [targets.mail.ops]                  # optional: one mail per batch of dead letters
    to = ["ops@example.com"]
    interval = 900                      # seconds, at least 60: at most one ops mail per interval

Everything here is checked when the settings are loaded (:func:`section_problems`, the spec's
``validate``): an unknown template field, a filter that cannot apply to the rule's events or a
malformed SMTP_URL stops the relay from starting, never a delivery.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import getaddresses, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from clockify_relay.clockify.models import (
    APPROVAL_EVENTS,
    APPROVAL_STATES,
    ROUTED_EVENTS,
    TIME_ENTRY_EVENTS,
)
from clockify_relay.connectors.mail.fields import ADDRESS_FIELDS, MailEvent, fields_of
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import KnownKeys, Secret, SettingsError

RULE_KEYS = KnownKeys.of(
    "name", "channel", "events", "states", "projects", "users", "to", "subject", "body", "list"
)
OPS_KEYS = KnownKeys.of("to", "interval")
KNOWN_KEYS = KnownKeys(
    frozenset({"smtp_url", "from", "timeout"}), {"ops": OPS_KEYS}, arrays={"rules": RULE_KEYS}
)
# Where a rule's mail goes: "smtp" (a mail of the rule's to/subject/body, smtp.py) or "organi"
# (Organi's pre-configured mailing ``list``, sent with the Organi target's client: organi.py).
CHANNELS = frozenset({"smtp", "organi"})
MESSAGE_KEYS = ("to", "subject", "body")
MIN_OPS_INTERVAL = 60
DEFAULT_OPS_INTERVAL = 900
DEFAULT_TIMEOUT = 10.0
PORTS = {"smtp": 25, "smtps": 465}


@dataclass(frozen=True)
class SmtpEndpoint:
    """SMTP_URL parsed. ``str()`` never shows the user or the password."""

    host: str
    port: int
    tls: str  # "smtps" (TLS from the start), "starttls" or "none"
    username: str | None = None
    password: Secret | None = None

    def __str__(self) -> str:
        scheme = "smtps" if self.tls == "smtps" else "smtp"
        return f"{scheme}://{self.host}:{self.port}"


def parse_smtp_url(raw: str) -> SmtpEndpoint:
    """``smtp://[user:pass@]host[:port][?starttls=true|false]`` or ``smtps://…``.

    STARTTLS is on by default for ``smtp://`` (``?starttls=false`` for a plain local relay);
    credentials are refused on a connection that would send them in clear. Errors never repeat
    the URL (it holds the password)."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise ConfigurationError("SMTP_URL is not a URL (smtp://user:pass@host:587)") from None
    if parts.scheme not in PORTS:
        raise ConfigurationError(
            f"SMTP_URL must start with smtp:// or smtps://, not {parts.scheme or 'nothing'}://"
        )
    if not parts.hostname:
        raise ConfigurationError("SMTP_URL has no host")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"starttls"})
    if unknown:
        raise ConfigurationError(f"SMTP_URL: unknown parameter {unknown[0]} (known: starttls)")
    starttls_values = query.get("starttls", ["true" if parts.scheme == "smtp" else "false"])
    if starttls_values[-1] not in ("true", "false"):
        raise ConfigurationError("SMTP_URL: starttls must be true or false")
    starttls = starttls_values[-1] == "true"
    if parts.scheme == "smtps" and starttls:
        raise ConfigurationError("SMTP_URL: smtps:// is TLS already; drop starttls=true")
    tls = "smtps" if parts.scheme == "smtps" else "starttls" if starttls else "none"
    username = unquote(parts.username) if parts.username else None
    password = Secret(unquote(parts.password)) if parts.password is not None else None
    if username and tls == "none":
        raise ConfigurationError(
            "SMTP_URL has credentials but neither smtps:// nor starttls: "
            "the password would travel in clear"
        )
    return SmtpEndpoint(parts.hostname, port or PORTS[parts.scheme], tls, username, password)


@dataclass(frozen=True)
class Rule:
    """One ``[[targets.mail.rules]]`` table."""

    name: str
    channel: str
    events: frozenset[str]
    states: frozenset[str] | None
    projects: frozenset[str] | None
    users: frozenset[str] | None
    to: tuple[str, ...]  # addresses, or "{field}" of an address field of the event
    subject: str
    body: str
    mailing_list: str | None = None  # the Organi list of channel "organi" (TOML: list)

    def why_not(self, event: MailEvent) -> str | None:
        """Why this rule does not fire for the event, or None when it does."""
        if event.event_type not in self.events:
            return f"not for {event.event_type}"
        if self.states is not None and event.state not in self.states:
            return f"state {event.state} is not one of its states"
        if self.projects is not None and event.project_id not in self.projects:
            return f"project {event.project_id} is not one of its projects"
        if self.users is not None and event.user_id not in self.users:
            return f"user {event.user_id} is not one of its users"
        return None

    def recipients(self, event: MailEvent) -> list[str]:
        """The addresses of this event (an address field the event leaves empty adds none)."""
        found: list[str] = []
        for item in self.to:
            address = event.fields.get(item[1:-1], "") if _is_field(item) else item
            if address and address not in found:
                found.append(address)
        return found


@dataclass(frozen=True)
class OpsMail:
    """``[targets.mail.ops]``: where the dead-letter digest goes, and how often at most."""

    to: tuple[str, ...]
    interval: float


@dataclass(frozen=True)
class MailConfig:
    """The whole section, parsed."""

    smtp: SmtpEndpoint
    sender: str
    timeout: float
    rules: tuple[Rule, ...]
    ops: OpsMail | None = None

    @property
    def domain(self) -> str:
        """The domain of Message-IDs: the sender's."""
        return parseaddr(self.sender)[1].rpartition("@")[2] or "clockify-relay.invalid"


def _is_field(item: str) -> bool:
    return len(item) > 2 and item[0] == "{" and item[-1] == "}"


def template_fields(template: str) -> tuple[list[str], list[str]]:
    """The field names a template uses, and what str.format could fail on at send time
    (positional or indexed fields, conversions, format specs, a lone brace)."""
    names: list[str] = []
    problems: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [], [f"{exc} (write {{{{ and }}}} for braces)"]
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        if not name.isidentifier():
            problems.append(f"{shown}}} is not a field name")
        elif spec or conversion:
            problems.append(f"{shown}}} takes no format or conversion")
        else:
            names.append(name)
    return names, problems


def render(template: str, event: MailEvent) -> str:
    """The template with the event's fields (checked at load, so every field is there)."""
    return template.format_map(event.fields)


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return value
    return None


def _rule(number: int, raw: Mapping[str, Any], problems: list[str]) -> Rule | None:
    where = f"[[targets.mail.rules]] #{number}"
    found: list[str] = []
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        found.append("name: required, a text naming the rule (what it sent is recorded by it)")
        name = f"#{number}"
    else:
        where = f"{where} ({name})"
    channel = raw.get("channel", "smtp")
    if channel not in CHANNELS:
        found.append(f"channel: must be one of {', '.join(sorted(CHANNELS))}")
    mailing_list = raw.get("list")
    if channel == "organi":
        if not isinstance(mailing_list, str) or not mailing_list.strip():
            found.append('list: required for channel "organi", the name of an Organi mailing list')
        for key in MESSAGE_KEYS:
            if key in raw:
                found.append(
                    f'{key}: not for channel "organi" (Organi\'s mailing has its own '
                    "recipients and text)"
                )
    elif "list" in raw:
        found.append('list: only for channel "organi"')
    events = _strings(raw.get("events"))
    if not events:
        found.append("events: required, a list of Clockify event types")
        events = []
    for event in events:
        if event not in ROUTED_EVENTS:
            found.append(f"events: {event} is not an event type the relay routes")
    events = [e for e in events if e in ROUTED_EVENTS]
    available = frozenset.intersection(*(fields_of(e) for e in events)) if events else None

    def filter_of(key: str, allowed_for: frozenset[str], what: str) -> frozenset[str] | None:
        if key not in raw:
            return None
        values = _strings(raw[key])
        if values is None:
            found.append(f"{key}: must be a list of {what}")
            return None
        if not set(events) <= allowed_for:
            kinds = "approval" if allowed_for == APPROVAL_EVENTS else "time-entry"
            found.append(f"{key}: applies to {kinds} events only, and the rule has others")
        return frozenset(values)

    states = filter_of("states", APPROVAL_EVENTS, "approval states")
    for state in sorted(states or ()):
        if state not in APPROVAL_STATES:
            found.append(f"states: unknown state {state} ({', '.join(sorted(APPROVAL_STATES))})")
    projects = filter_of("projects", TIME_ENTRY_EVENTS, "Clockify project ids")
    users = filter_of("users", ROUTED_EVENTS, "Clockify user ids")

    def known_fields(key: str, template: str) -> None:
        names, problems = template_fields(template)
        found.extend(f"{key}: {problem}" for problem in problems)
        if available is None:
            return
        for field in names:
            if field not in available:
                found.append(
                    f"{key}: unknown field {{{field}}}; the rule's events have "
                    + ", ".join(sorted(available))
                )

    if channel == "organi":
        problems += [f"{where} {problem}" for problem in found]
        if found or not isinstance(mailing_list, str):
            return None
        return Rule(
            name=name.strip(),
            channel=channel,
            events=frozenset(events),
            states=states,
            projects=projects,
            users=users,
            to=(),
            subject="",
            body="",
            mailing_list=mailing_list.strip(),
        )

    texts: dict[str, str] = {}
    for key in ("subject", "body"):
        value = raw.get(key)
        if not isinstance(value, str) or (key == "subject" and not value.strip()):
            found.append(f"{key}: required, a text (with {{field}} of the event)")
            value = ""
        known_fields(key, value)
        texts[key] = value
    if "\n" in texts["subject"] or "\r" in texts["subject"]:
        found.append("subject: must be one line")

    to = _strings(raw.get("to"))
    if not to:
        found.append('to: required, a list of addresses or address fields ("{creator_email}")')
        to = []
    for item in to:
        if _is_field(item):
            field = item[1:-1]
            if field not in ADDRESS_FIELDS:
                found.append(
                    f"to: {item} is not an address field ({', '.join(sorted(ADDRESS_FIELDS))})"
                )
            elif available is not None and field not in available:
                found.append(f"to: {item} is not a field of every event of the rule")
        elif not _valid_address(item):
            found.append(f"to: {item!r} is not an e-mail address")
    problems += [f"{where} {problem}" for problem in found]
    if found:
        return None
    return Rule(
        name=name.strip(),
        channel=channel,
        events=frozenset(events),
        states=states,
        projects=projects,
        users=users,
        to=tuple(to),
        subject=texts["subject"],
        body=texts["body"],
    )


def _valid_address(text: str) -> bool:
    [(_, address)] = getaddresses([text]) or [("", "")]
    if not address or "@" not in address:
        return False
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError):
        return False
    return True


def parse_config(section: Mapping[str, Any]) -> MailConfig:
    """The section, parsed; :class:`SettingsError` listing every problem."""
    problems: list[str] = []
    config = _parse(section, problems)
    if problems or config is None:
        raise SettingsError(problems or ["[targets.mail] is not usable"])
    return config


def section_problems(
    section: Mapping[str, Any], targets: Mapping[str, Mapping[str, Any]] | None = None
) -> list[str]:
    """Every problem of the section (settings.py calls it at load, through the spec, with every
    target's section: an "organi" rule needs the Organi target configured)."""
    problems: list[str] = []
    config = _parse(section, problems)
    if config is not None and targets is not None:
        organi = targets.get("organi")
        for rule in config.rules:
            if rule.channel == "organi" and (
                not isinstance(organi, Mapping) or organi.get("enabled", True) is False
            ):
                problems.append(
                    f"[[targets.mail.rules]] ({rule.name}) channel organi: needs the Organi "
                    "target configured and enabled ([targets.organi], its credentials)"
                )
    return problems


def _ops(raw: Any, problems: list[str]) -> OpsMail | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append("[targets.mail.ops] must be a table")
        return None
    to = _strings(raw.get("to"))
    if not to:
        problems.append("[targets.mail.ops] to: required, a list of addresses")
        to = []
    for item in to:
        if not _valid_address(item):
            problems.append(f"[targets.mail.ops] to: {item!r} is not an e-mail address")
    interval = raw.get("interval", DEFAULT_OPS_INTERVAL)
    if (
        isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or interval < MIN_OPS_INTERVAL
    ):
        problems.append(
            f"[targets.mail.ops] interval: must be a number of seconds, at least {MIN_OPS_INTERVAL}"
        )
        return None
    if not to or not all(_valid_address(item) for item in to):
        return None
    return OpsMail(tuple(to), float(interval))


def _parse(section: Mapping[str, Any], problems: list[str]) -> MailConfig | None:
    before = len(problems)
    enabled = section.get("enabled", True) is not False
    smtp: SmtpEndpoint | None = None
    raw_url = section.get("smtp_url")
    url = raw_url.reveal() if isinstance(raw_url, Secret) else raw_url
    if isinstance(url, str) and url:
        try:
            smtp = parse_smtp_url(url)
        except ConfigurationError as exc:
            problems.append(f"[targets.mail] {exc.message}")
    elif enabled:
        problems.append("[targets.mail] SMTP_URL is not set: where should mail go?")
    sender = section.get("from")
    if not isinstance(sender, str) or not _valid_address(sender):
        problems.append(
            '[targets.mail] from: required, the sender address ("Relay <relay@example.com>"; '
            "or MAIL_FROM)"
        )
    timeout = section.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        problems.append("[targets.mail] timeout: must be a positive number of seconds")
        timeout = DEFAULT_TIMEOUT
    rules: list[Rule] = []
    raw_rules = section.get("rules", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, Mapping) for r in raw_rules):
        problems.append("[targets.mail] rules: must be an array of tables ([[targets.mail.rules]])")
        raw_rules = []
    for number, raw in enumerate(raw_rules, 1):
        rule = _rule(number, raw, problems)
        if rule is not None:
            rules.append(rule)
    ops = _ops(section.get("ops"), problems)
    names = [rule.name for rule in rules]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"[[targets.mail.rules]] name {name!r} is used twice: names identify rules")
    if len(problems) > before or smtp is None or not isinstance(sender, str):
        return None
    return MailConfig(smtp, sender, float(timeout), tuple(rules), ops)
