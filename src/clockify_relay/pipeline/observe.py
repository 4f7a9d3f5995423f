"""Logs and metrics of a Celery worker: its main process and its forked pool processes.

- Logging: Celery configures logging itself unless a ``setup_logging`` receiver is connected;
  ours applies logs.py's configuration instead (pool processes are forked after it and keep
  it, so they log in the same format).
- Metrics: the pool processes are forked, so prometheus_client runs in multiprocess mode
  (metrics.py): ``PROMETHEUS_MULTIPROC_DIR`` is set before the pool starts (a fresh directory
  removed at exit unless the operator set one), a pool process that exits marks itself dead
  (``worker_process_shutdown``, sent in the pool process as it ends; a killed one cannot),
  and the main process serves one scrape of them all on ``--metrics-port``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging, worker_process_shutdown

from clockify_relay import metrics
from clockify_relay.logs import configure_logging
from clockify_relay.redis_conn import Keys, sync_client
from clockify_relay.settings import Settings

log = logging.getLogger("clockify_relay.worker")


def prepare_worker(settings: Settings, metrics_port: int = 0) -> None:
    """Set up logging and metrics before the Celery worker (and its pool) starts.

    Raises OSError when ``metrics_port`` cannot be listened on."""
    configure_logging(settings)

    def _logging(**_: Any) -> None:
        configure_logging(settings)

    setup_logging.connect(_logging, weak=False, dispatch_uid="clockify_relay.logging")
    metrics.multiprocess_for_children()
    worker_process_shutdown.connect(
        _pool_process_gone, weak=False, dispatch_uid="clockify_relay.metrics"
    )
    if metrics_port:
        client = sync_client(settings)
        metrics.start_worker_exporter(
            metrics_port, metrics.redis_sizes(client, Keys(settings.key_prefix))
        )
        log.info("metrics on :%d/metrics", metrics_port, extra={"metrics_port": metrics_port})


def _pool_process_gone(pid: int | None = None, **_: Any) -> None:
    if pid:
        metrics.mark_process_dead(pid)
