"""logs.py: the format switch (text on a terminal, JSON otherwise, or as set), what a JSON line
holds, secrets masked, Celery's per-task success lines silenced while its errors stay."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from clockify_relay.logs import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    log_format,
    logging_config,
    mask_secrets,
)
from clockify_relay.settings import Settings, SettingsError, load_settings


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_text_on_a_terminal_json_otherwise() -> None:
    assert log_format(Settings(), Tty()) == "text"
    assert log_format(Settings(), Pipe()) == "json"
    # Set: whatever the stream is.
    assert log_format(Settings(log_format="json"), Tty()) == "json"
    assert log_format(Settings(log_format="text"), Pipe()) == "text"


def test_relay_log_format_is_read_and_validated() -> None:
    assert load_settings({"RELAY_LOG_FORMAT": "JSON"}).log_format == "json"
    assert load_settings({"RELAY_LOG_FORMAT": "text"}).log_format == "text"
    assert load_settings({}).log_format is None
    with pytest.raises(SettingsError, match="RELAY_LOG_FORMAT must be json or text"):
        load_settings({"RELAY_LOG_FORMAT": "yaml"})
    with pytest.raises(SettingsError, match="RELAY_LOG_LEVEL must be one of"):
        load_settings({"RELAY_LOG_LEVEL": "loud"})


def record(message: str = "delivered", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "clockify_relay.events", logging.WARNING, __file__, 1, message, (), None
    )
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_ts_level_logger_message_and_extra_fields() -> None:
    line = JsonFormatter().format(
        record("dead-lettered", event_id="e1", entry_id="x1", target="everit", attempt=2)
    )
    data = orjson.loads(line)
    assert data["level"] == "WARNING"
    assert data["logger"] == "clockify_relay.events"
    assert data["message"] == "dead-lettered"
    assert data["ts"].endswith("Z") and "T" in data["ts"]
    assert (data["event_id"], data["entry_id"], data["target"], data["attempt"]) == (
        "e1",
        "x1",
        "everit",
        2,
    )
    assert "\n" not in line


def test_text_line_carries_the_extra_fields() -> None:
    line = TextFormatter().format(record("delivered", event_id="e1", target="blikk"))
    assert "WARNING" in line and "clockify_relay.events: delivered" in line
    assert "event_id=e1" in line and "target=blikk" in line


def test_url_passwords_are_masked() -> None:
    assert (
        mask_secrets("cannot reach redis://:s3cret@redis:6379/0 now")
        == "cannot reach redis://:***@redis:6379/0 now"
    )
    assert mask_secrets("smtp://user:pa55@mail:587") == "smtp://user:***@mail:587"
    line = JsonFormatter().format(record("down: redis://u:hunter2@h:1/0", url="redis://u:pw9@h"))
    assert "hunter2" not in line and "pw9" not in line


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("celery.app.trace", "httpx", "uvicorn", "uvicorn.error", "celery"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_configure_logging_json_and_celery_trace_quiet(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = Pipe()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(Settings(log_format="json", log_level="info"))
    trace_log = logging.getLogger("celery.app.trace")
    trace_log.info("Task clockify_relay.deliver[abc] succeeded in 0.1s: None")
    trace_log.error("Task clockify_relay.deliver[abc] raised unexpected: boom")
    logging.getLogger("uvicorn.error").info("Uvicorn running")
    logging.getLogger("clockify_relay.events").info("routed", extra={"event_id": "e9"})
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    messages = [line["message"] for line in lines]
    assert not any("succeeded" in message for message in messages)
    assert "Task clockify_relay.deliver[abc] raised unexpected: boom" in messages
    assert "Uvicorn running" in messages
    assert {"message": "routed", "event_id": "e9"}.items() <= lines[-1].items()


def test_uvicorn_gets_the_same_configuration() -> None:
    config = logging_config(Settings(log_format="text", log_level="warning"))
    assert config["formatters"]["relay"]["()"] == "clockify_relay.logs.TextFormatter"
    assert config["root"]["level"] == "WARNING"
    assert config["loggers"]["celery.app.trace"]["level"] == "WARNING"
    assert config["loggers"]["uvicorn.error"]["propagate"] is True
    assert config["disable_existing_loggers"] is False
