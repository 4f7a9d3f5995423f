"""Logging for every process (receiver, worker and its pool children, scheduler): one set-up.

``RELAY_LOG_FORMAT`` picks the format: ``json`` (one object per line: ``ts``, ``level``,
``logger``, ``message`` and every ``extra`` field — ``event_id``, ``entry_id``,
``event_type``, ``target``, …) or ``text`` (a human line with the extra fields as
``key=value``). Unset: text when stderr is a terminal, else JSON (containers).

:func:`logging_config` is a :func:`logging.config.dictConfig` dictionary, so uvicorn (which
takes it as ``log_config`` and applies it in each of its worker processes) and
:func:`configure_logging` (the worker, through Celery's ``setup_logging`` signal, and the
scheduler) set up the same thing. Celery's per-task "Task … succeeded in …" lines
(``celery.app.trace`` at INFO) are silenced: the relay's own lines say what happened, and a
task that dead-lettered its delivery still "succeeds" for Celery. Its errors stay.

Nothing here logs a secret, and as a last guard every line has the password of any URL in it
(``redis://user:password@host``) masked.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from clockify_relay.settings import Settings

# Attributes every LogRecord has; anything else on a record came in as ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message", "taskName"}
)
# Celery's trace passes the task's arguments (the whole envelope) as ``extra={"data": …}``.
_DROPPED = frozenset({"data"})
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
QUIET_LOGGERS = {
    # "Task clockify_relay.deliver[…] succeeded in …": also for a dead-lettered delivery.
    "celery.app.trace": "WARNING",
    # httpx logs every request at INFO; the trace and the delivery lines carry each outcome.
    "httpx": "WARNING",
    "httpcore": "WARNING",
}


def mask_secrets(text: str) -> str:
    """``scheme://user:password@host`` → ``scheme://user:***@host``."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a record (None values left out)."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and key not in _DROPPED and value is not None
    }


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the extra fields, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_secrets(record.getMessage()),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc_info"] = mask_secrets(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc_info"] = mask_secrets(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        line = orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        return mask_secrets(line) if "://" in line else line


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: message key=value …`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{key}={value}" for key, value in extra_fields(record).items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f" {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return mask_secrets(line)


def log_format(settings: Settings, stream: IO[str] | None = None) -> str:
    """``json`` or ``text``: the setting, else text on a terminal and JSON otherwise."""
    if settings.log_format:
        return settings.log_format
    stream = sys.stderr if stream is None else stream
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # closed or odd streams
        return "json"


def logging_config(settings: Settings) -> dict[str, Any]:
    """The dictConfig of a relay process: one stderr handler on the root logger in the chosen
    format; uvicorn's loggers and Celery's propagate to it; noisy loggers quieted."""
    formatter = JsonFormatter if log_format(settings) == "json" else TextFormatter
    level = settings.log_level.upper()
    loggers: dict[str, Any] = {
        name: {"level": quiet, "handlers": [], "propagate": True}
        for name, quiet in QUIET_LOGGERS.items()
    }
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        loggers[name] = {"level": level, "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"relay": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "relay",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": loggers,
    }


def configure_logging(settings: Settings) -> None:
    """Set up this process's logging (worker, scheduler, CLI commands that run long); Python
    warnings become log lines too (``py.warnings``), not raw text between them."""
    logging.config.dictConfig(logging_config(settings))
    logging.captureWarnings(True)
