"""The Celery app, configured for at-least-once delivery on Redis (docs/ARCHITECTURE.md §3).

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acked only after its task
  returns, so a killed worker's message is delivered again.
- prefetch 1: a worker holds at most one unacked message per process.
- ``visibility_timeout`` modest (default 10 min) and every Celery countdown well below it
  (``RetryPolicy.max_countdown``, checked at worker start); longer waits are parked in Redis.
- every message the relay queues is also in the outbox (``pipeline/outbox.py``), so one lost
  by kombu between BRPOP and its unacked record is queued again by the scheduler.
- publishing retries briefly and then fails, so callers learn fast that Redis is gone.
- every key under the relay's prefix (``global_keyprefix``), so tenants and tests share a Redis.
- with ``REDIS_SENTINELS``, kombu's ``sentinel://`` transport finds the master through them
  (``broker_url``), and reconnects to the new one after a failover.
- stopping (SIGTERM, as Kubernetes and compose send it) is Celery's *soft shutdown*: the worker
  command runs with ``REMAP_SIGTERM=SIGQUIT`` (cli.py), so SIGTERM starts a cold shutdown that
  first lets running tasks finish for ``worker_soft_shutdown_timeout``
  (``RELAY_SOFT_SHUTDOWN_TIMEOUT``), then cancels what is still running and hands its messages
  back to the queue (kombu restores unacked messages when the channel closes), all before the
  orchestrator's SIGKILL (``terminationGracePeriodSeconds`` is larger: deploy/kubernetes).
- the main process touches a heartbeat file from its event loop (``pipeline/heartbeat.py``).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from celery import Celery

from clockify_relay.pipeline import heartbeat
from clockify_relay.pipeline.messages import QUEUE
from clockify_relay.redis_conn import data_node_options, redis_url, sentinel_options
from clockify_relay.settings import Settings


def broker_url(settings: Settings) -> str:
    """REDIS_URL, or with Sentinel kombu's ``sentinel://host:port/db;sentinel://…`` (one per
    sentinel; the data nodes' user, password and database number in each, from REDIS_URL)."""
    if not settings.uses_sentinel:
        return redis_url(settings)
    node = data_node_options(settings)
    auth = ""
    if node.get("password"):
        auth = f"{quote(str(node.get('username') or ''), safe='')}:"
        auth += f"{quote(str(node['password']), safe='')}@"
    db = node.get("db", 0)
    return ";".join(
        f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{db}"
        for host, port in settings.redis_sentinels
    )


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's transport options: the relay's prefix and visibility timeout, and with Sentinel
    the master's name and the sentinels' own connection options (their password)."""
    options: dict[str, Any] = {
        "global_keyprefix": settings.key_prefix,
        "visibility_timeout": settings.visibility_timeout,
        # Sweep for messages a killed worker left unacked every few seconds (kombu's default
        # is every 10 x 10 s), so they come back soon after the visibility timeout.
        "unacked_restore_interval": min(10, max(1, settings.visibility_timeout // 4)),
        "unacked_restore_throttle": 1,
    }
    if settings.uses_sentinel:
        options["master_name"] = settings.redis_sentinel_master
        options["sentinel_kwargs"] = sentinel_options(settings)
    return options


def make_celery(settings: Settings) -> Celery:
    """A Celery app for these settings (made by the process's entry point, never at import).

    The tasks (pipeline/tasks.py) are shared tasks: they run on whichever app this is."""
    # httpx logs every request at INFO; the trace already records each call, with more context.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = Celery(
        "clockify_relay", broker=broker_url(settings), include=["clockify_relay.pipeline.tasks"]
    )
    app.conf.update(
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 3,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Celery 5.5+: a time-limited warm shutdown before the cold one (see the module doc).
        worker_soft_shutdown_timeout=settings.soft_shutdown_timeout,
        enable_utc=True,
    )
    heartbeat.install(app, settings.heartbeat_file)
    return app
