"""The ``clockify-relay`` command. Thin: it parses arguments and calls into the modules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click

from clockify_relay.errors import ConfigurationError


def _apply_config(config: str | None) -> None:
    # Every process (this one and its children) reads settings from the environment.
    if config:
        os.environ["RELAY_CONFIG"] = str(Path(config).resolve())


@click.group()
@click.option("--config", "config", envvar="RELAY_CONFIG", help="TOML config file (mappings, rules).")
def main(config: str | None) -> None:
    """clockify-relay: Clockify webhooks fanned out to Everit, Blikk, Tracket and more."""
    _apply_config(config)


def serve_receiver(host: str, port: int, workers: int = 1) -> None:
    """Run the receiver on uvicorn (uvloop + httptools) in the foreground."""
    import uvicorn

    uvicorn.run(
        "clockify_relay.receiver.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level=os.environ.get("RELAY_LOG_LEVEL", "info").lower(),
        access_log=False,
        proxy_headers=True,
    )


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="uvicorn processes")
def serve(host: str, port: int, workers: int) -> None:
    """Run the webhook receiver."""
    serve_receiver(host, port, workers)


def worker_argv(concurrency: int, beat: bool = False) -> list[str]:
    argv = ["worker", "--concurrency", str(concurrency), "--loglevel",
            os.environ.get("RELAY_LOG_LEVEL", "info").upper(), "--without-gossip",
            "--without-mingle"]
    if beat:
        argv.append("--beat")
    return argv


@main.command()
@click.option("--concurrency", default=2, show_default=True, type=int)
@click.option("--beat/--no-beat", default=False, show_default=True,
              help="also run the scheduler (exactly one process per deployment may)")
def worker(concurrency: int, beat: bool) -> None:
    """Run a Celery worker that delivers queued events."""
    from clockify_relay.pipeline.celery_app import app

    app.worker_main(worker_argv(concurrency, beat))


def _children_env(redis_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--concurrency", default=2, show_default=True, type=int)
@click.option("--data-dir", default=".relay-data", show_default=True, type=click.Path(path_type=Path),
              help="where the embedded Redis keeps its AOF when REDIS_URL is not set")
def run(host: str, port: int, concurrency: int, data_dir: Path) -> None:
    """Receiver, worker and scheduler together on one machine (embedded Redis if no REDIS_URL)."""
    from clockify_relay.embedded_redis import EmbeddedRedis

    embedded: EmbeddedRedis | None = None
    if not os.environ.get("REDIS_URL"):
        embedded = EmbeddedRedis(data_dir.resolve() / "redis").start()
        os.environ["REDIS_URL"] = embedded.url
        click.echo(f"embedded Redis at {embedded.url} (data in {data_dir / 'redis'})")
    worker_process = subprocess.Popen(
        [sys.executable, "-m", "clockify_relay", "worker", "--concurrency", str(concurrency), "--beat"],
        env=_children_env(os.environ.get("REDIS_URL")),
    )
    try:
        click.echo(f"receiver on http://{host}:{port}/webhooks/clockify")
        serve_receiver(host, port)
    finally:
        worker_process.send_signal(signal.SIGTERM)
        try:
            worker_process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker_process.kill()
        if embedded:
            embedded.stop()


def run_cli() -> None:
    """Entry point that turns configuration errors into a clear message and exit code 2."""
    try:
        main(standalone_mode=True)
    except ConfigurationError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


def _register_subcommands() -> None:
    """Command groups that live beside the modules they drive."""
    from clockify_relay.bench.cli import bench
    from clockify_relay.cli_ops import dlq, events

    for group in (dlq, events, bench):
        main.add_command(group)


try:
    _register_subcommands()
except ImportError:  # pragma: no cover - while a group is being written
    pass
