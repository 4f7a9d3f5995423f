"""What one ``clockify-relay`` invocation shares: its settings, read once, and its runtime."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import click

from clockify_relay.pipeline.runtime import Runtime, reset_runtime
from clockify_relay.settings import Settings, load_settings

# Commands that never deliver (docs/ARCHITECTURE.md, "Operator actions go through the
# workers"): they run without the targets' credentials, so a target's section is not judged
# by its own config.py there (settings.load_settings ``delivering``).
NOT_DELIVERING = frozenset(
    {"serve", "dlq", "events", "targets", "admin-token", "webhooks", "redrive", "backfill"}
)


class Invocation:
    """The settings of this command line (environment + ``--config``), read on first use."""

    def __init__(self, config: str | None) -> None:
        self.config_path = Path(config).resolve() if config else None
        # Where the Redis URL came from: "REDIS_URL", the file of a local ``run``, or "default".
        self.redis_source = "default"

    @cached_property
    def settings(self) -> Settings:
        from clockify_relay.embedded_redis import URL_FILE, discover_url, local_dir

        env: dict[str, str] = dict(os.environ)
        if env.get("REDIS_URL"):
            self.redis_source = "REDIS_URL"
        else:
            # REDIS_URL wins; else the embedded Redis of a `run` in this directory, if it
            # answers; else the default (redis_conn.DEFAULT_REDIS_URL).
            found = discover_url()
            if found is not None:
                env["REDIS_URL"] = found
                self.redis_source = str(local_dir() / URL_FILE)
        context = click.get_current_context(silent=True)
        command = context.find_root().invoked_subcommand if context else None
        return load_settings(
            env, config_path=self.config_path, delivering=command not in NOT_DELIVERING
        )

    @cached_property
    def runtime(self) -> Runtime:
        """This process's runtime, built from these settings (and installed as the one that
        tasks run in this process use)."""
        return reset_runtime(self.settings)


def invocation() -> Invocation:
    """The current command's invocation (the ``main`` group makes it)."""
    found = click.get_current_context().find_object(Invocation)
    return found if found is not None else Invocation(None)
