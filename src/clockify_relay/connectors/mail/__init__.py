"""Mail target: rules in ``[[targets.mail.rules]]`` turn events (approvals, time entries) into
mails sent over SMTP, at most once per (rule, event).

An event target (docs/ARCHITECTURE.md §8): handler.py (the EventHandler: rules, the send
record, Message-IDs), smtp.py (the SMTP channel: smtplib, failure → error taxonomy), fields.py
(an event's fields, pure), config.py (the section, rules and SMTP_URL, checked at load),
tests/. Its sandbox is a real SMTP server (sandbox/smtp.py), not an HTTP fake.
"""

from clockify_relay.clockify.models import ROUTED_EVENTS
from clockify_relay.connectors.spec import EnvVar, TargetSpec

SPEC = TargetSpec(
    name="mail",
    package=__name__,
    handler="handler:MailHandler",
    events=ROUTED_EVENTS,
    config_keys="config:KNOWN_KEYS",
    validate="config:section_problems",
    env=(EnvVar("SMTP_URL", "smtp_url", secret=True), EnvVar("MAIL_FROM", "from")),
    sandbox_section={
        "from": "Clockify relay <relay@sandbox.example>",
        "timeout": 3,  # a local server
        "rules": [
            {
                "name": "approval-decided",
                "events": ["APPROVAL_REQUEST_STATUS_UPDATED"],
                "states": ["APPROVED", "REJECTED"],
                "to": ["{creator_email}"],
                "subject": "Timesheet {period} of {owner}: {state}",
                "body": (
                    "The timesheet of {owner} for {period} is {state}.\n\n"
                    "Note: {note}\n\n(Decided by {updated_by}.)\n"
                ),
            }
        ],
    },
    sandbox_env=lambda config: {"SMTP_URL": f"smtp://127.0.0.1:{config.smtp_port}?starttls=false"},
)
