"""The Organi channel: a mail rule with ``channel = "organi"`` triggers Organi's pre-configured
mailing ``list`` ("Send configured mailings", ``OrganiClient.send_mailing``) with the Organi
target's own client and credentials (``[targets.organi]``, ORGANI_TOKEN).

What a failure proves, as for SMTP (smtp.py): a request that never connected, or an answer that
refused it (4xx, 5xx), sent nothing -- a retry may send; a request sent whose answer was lost
(``outcome_unknown``) may have triggered the mailing -- an unknown outcome, never sent again by
itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clockify_relay.connectors.mail.smtp import SendFailure
from clockify_relay.connectors.organi.api import OrganiClient
from clockify_relay.connectors.organi.config import parse_config
from clockify_relay.errors import (
    ConfigurationError,
    RelayError,
    TransientError,
    UnknownOutcomeError,
)


class OrganiListChannel:
    """Triggers Organi mailing lists."""

    def __init__(self, section: Mapping[str, Any] | None) -> None:
        if section is None:
            raise ConfigurationError(
                'mail: a rule with channel "organi" needs the Organi target ([targets.organi])'
            )
        self.client = OrganiClient(parse_config(section))

    @property
    def call_budget(self) -> float:
        """Worst-case seconds of one send (connect and read, each bounded by the timeout)."""
        return 2 * self.client.config.timeout

    def send(self, list_name: str) -> None:
        """Trigger the mailing; raises :class:`SendFailure`."""
        try:
            self.client.send_mailing(list_name)
        except RelayError as exc:
            maybe = isinstance(exc, UnknownOutcomeError) or (
                isinstance(exc, TransientError) and exc.outcome_unknown
            )
            raise SendFailure(exc, maybe) from None

    def close(self) -> None:
        self.client.close()
