"""The one error taxonomy of clockify-relay.

Every failure a connector, the Clockify client or the pipeline can meet is one of these, and the
class alone decides what the delivery engine does with it::

    RelayError
    ├── TransientError        retry with backoff (timeouts, connection errors, 5xx, 429);
    │                         carries ``retry_after`` when the remote said how long to wait
    ├── PermanentError        dead-letter at once: the remote will keep refusing this request
    │   │                     (validation errors, 401/403, Everit 479, attested Blikk reports)
    │   └── UnknownOutcomeError  a create may or may not have happened and the target cannot
    │                            be searched: dead-letter, replay only with ``--force``
    └── ConfigurationError    dead-letter at once with a message that names what the operator
                              must add (a user or project mapping, a credential); replayable
                              after the fix

Messages never contain secrets, tokens or auth headers: they end up in the trace, the
dead-letter queue and the logs.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error the relay raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        response_excerpt: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.response_excerpt = response_excerpt

    @property
    def kind(self) -> str:
        """Short name of the error class, as stored in traces and the dead-letter queue."""
        return type(self).__name__


class TransientError(RelayError):
    """A failure that may go away by itself: retry later."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        response_excerpt: str | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message, status=status, response_excerpt=response_excerpt)
        self.retry_after = retry_after
        # True when the request was sent but no answer came (read timeout, dropped connection):
        # a create may have happened. False when it surely did not (connect failure, an answer).
        self.outcome_unknown = outcome_unknown


class PermanentError(RelayError):
    """The target refuses this request and will keep refusing it: dead-letter."""


class UnknownOutcomeError(PermanentError):
    """A create may have happened and the target cannot be searched to find out."""


class ConfigurationError(RelayError):
    """Something the operator must configure (a mapping, a credential) is missing."""
