"""The worker's heartbeat file: proof for a liveness probe that its main process still turns.

A Celery worker's main process runs one event loop (kombu's hub): it takes messages off Redis,
hands them to the pool and acks them. A worker whose loop is stuck takes nothing, yet its
process is still there and a TCP or "process exists" probe would call it alive. So a worker
bootstep touches a file from that loop's own timer every few seconds: the file goes stale as
soon as the loop stops, and ``clockify-relay worker-alive --max-age N`` (the Kubernetes and
compose liveness check) exits 1 then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps

logger = logging.getLogger(__name__)

INTERVAL = 5.0  # seconds between touches; a probe's max age should be several of these
CONF_KEY = "relay_heartbeat_file"  # where make_celery leaves the path in the app's conf


def touch(path: Path) -> None:
    """Set ``path``'s modification time to now, creating it if needed."""
    path.touch(exist_ok=True)
    os.utime(path)


def beat(path: Path) -> None:
    """Touch ``path``; a failure is logged, never raised (the probe will tell)."""
    try:
        touch(path)
    except OSError as exc:
        logger.warning("cannot touch heartbeat file %s: %s", path, exc)


def age(path: Path, now: float | None = None) -> float | None:
    """Seconds since ``path`` was last touched, or None when there is no such file."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return (time.time() if now is None else now) - mtime


class Heartbeat(bootsteps.StartStopStep):
    """Touches the heartbeat file every :data:`INTERVAL` seconds from the worker's timer.

    With the prefork pool on Redis the worker's timer is driven by its event loop (no timer
    thread), so a hung loop stops the heartbeat too."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.path = Path(parent.app.conf[CONF_KEY])
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        self.beat()
        self.tref = parent.timer.call_repeatedly(INTERVAL, self.beat)
        logger.info("heartbeat file %s, touched every %.0f s", self.path, INTERVAL)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        # A stopped worker is not alive: the probe must not find a fresh file after it.
        with contextlib.suppress(OSError):
            self.path.unlink()

    def terminate(self, parent: Any) -> None:  # a cold shutdown (SIGTERM here) calls this
        self.stop(parent)

    def beat(self) -> None:
        beat(self.path)


def install(app: Celery, path: Path) -> None:
    """Add the heartbeat to every worker of ``app``."""
    app.conf[CONF_KEY] = str(path)
    app.steps["worker"].add(Heartbeat)
