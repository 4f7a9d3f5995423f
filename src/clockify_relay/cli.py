"""The ``clockify-relay`` command. Thin: it parses arguments and calls into the modules."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from clockify_relay.cli_context import Invocation, invocation
from clockify_relay.embedded_redis import LOCAL_DIR
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import Settings, load_settings

if TYPE_CHECKING:
    from clockify_relay.sandbox.server import SandboxServer


# -h beside --help, for the group and (inherited through the context) every subcommand.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="clockify-relay", prog_name="clockify-relay")
@click.option(
    "--config", "config", envvar="RELAY_CONFIG", help="TOML config file (mappings, rules)."
)
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """clockify-relay: Clockify webhooks fanned out to Everit, Blikk, Tracket and more."""
    # Settings are read once, when a command first needs them, and passed down from there.
    ctx.obj = Invocation(config)


def serve_receiver(
    settings: Settings, host: str, port: int, workers: int = 1, admin_port: int | None = None
) -> None:
    """Run the receiver on uvicorn (uvloop + httptools) in the foreground.

    The HTTP protocol is httptools with deadlines for reading a request and a cap on its head
    (see :mod:`clockify_relay.receiver.connection`: uvicorn has neither). With ``admin_port``
    the admin API is served there (by a thread of this process) instead of beside the webhook.
    """
    import threading

    import uvicorn

    from clockify_relay.asgi import admin_app, create_app
    from clockify_relay.logs import logging_config
    from clockify_relay.receiver.connection import BODY_TIMEOUT, HEAD_TIMEOUT, KEEP_ALIVE_TIMEOUT

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        # An import string, not the class: every worker process imports it itself.
        "http": "clockify_relay.receiver.connection:GuardedHttpToolsProtocol",
        "timeout_keep_alive": KEEP_ALIVE_TIMEOUT,
        # On SIGTERM uvicorn stops accepting and lets requests in flight finish; none can take
        # longer than the read deadlines plus the answer, so this bound cuts nothing that
        # could still complete (deploy/kubernetes: terminationGracePeriodSeconds is above it).
        "timeout_graceful_shutdown": HEAD_TIMEOUT + BODY_TIMEOUT + 5.0,
        "log_level": settings.log_level.lower(),
        # The relay's format (logs.py) for uvicorn's loggers and ours, in every process.
        "log_config": logging_config(settings),
        "access_log": False,
        "proxy_headers": True,
    }
    admin_server = None
    if admin_port is not None:
        # uvicorn installs signal handlers only in the main thread: the receiver there takes
        # SIGTERM, and the admin server is told to stop when it is done.
        admin_options = {**options, "port": admin_port, "http": "h11", "loop": "asyncio"}
        admin_server = uvicorn.Server(uvicorn.Config(admin_app(settings), **admin_options))
        threading.Thread(target=admin_server.run, name="admin-api", daemon=True).start()
    try:
        if workers == 1:
            uvicorn.run(create_app(settings, admin=admin_port is None), **options)
            return
        # Several processes each import the app factory, which reads the same environment; the
        # config path given on the command line reaches them the same way.
        if settings.config_path is not None:
            os.environ["RELAY_CONFIG"] = str(settings.config_path)
        if settings.redis_url and not os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = settings.redis_url  # found in ./.clockify-relay
        from clockify_relay.metrics import multiprocess_for_children

        multiprocess_for_children()  # one /metrics for every uvicorn process
        factory = "create_app" if admin_port is None else "create_receiver_app"
        uvicorn.run(f"clockify_relay.asgi:{factory}", factory=True, workers=workers, **options)
    finally:
        if admin_server is not None:
            admin_server.should_exit = True


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="uvicorn processes")
@click.option(
    "--admin-port",
    type=int,
    default=None,
    help="Serve the admin API on this port instead of beside the webhook (keep it off the "
    "public ingress).",
)
def serve(host: str, port: int, workers: int, admin_port: int | None) -> None:
    """Run the webhook receiver (and the admin API)."""
    serve_receiver(invocation().settings, host, port, workers, admin_port)


def worker_argv(concurrency: int, log_level: str, quiet: bool = False) -> list[str]:
    return [
        # JSON logs: no banner on stdout between the lines (a global option of ``celery``).
        *(["--quiet"] if quiet else []),
        "worker",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        log_level.upper(),
        "--without-gossip",
        "--without-mingle",
        # A node name of its own per worker process on a host (pid), not celery@<host> for all.
        "--hostname",
        f"relay-{os.getpid()}@%h",
    ]


def _exec_with_soft_shutdown() -> None:
    """Run this worker command again in this process with ``REMAP_SIGTERM=SIGQUIT``.

    billiard reads that variable once, when first imported (before any command runs), and
    only with it does SIGTERM start Celery's soft shutdown rather than an unbounded warm one
    (pipeline/celery_app.py). ``exec`` keeps the pid, so a container's PID 1 stays PID 1."""
    env = {**os.environ, "REMAP_SIGTERM": "SIGQUIT"}
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "clockify_relay", *sys.argv[1:]]
    os.execve(sys.executable, argv, env)  # noqa: S606 (this very command, again)


@main.command()
@click.option("--concurrency", default=2, show_default=True, type=int)
@click.option(
    "--beat/--no-beat",
    default=False,
    show_default=True,
    help="also run the scheduler (exactly one process per deployment may)",
)
@click.option(
    "--metrics-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="RELAY_WORKER_METRICS_PORT",
    help="Serve Prometheus metrics of every pool process on this port (0: off).",
)
def worker(concurrency: int, beat: bool, metrics_port: int) -> None:
    """Run a Celery worker that delivers queued events."""
    from billiard.common import REMAP_SIGTERM

    from clockify_relay.logs import log_format
    from clockify_relay.pipeline import scheduler as relay_scheduler
    from clockify_relay.pipeline.celery_app import make_celery
    from clockify_relay.pipeline.observe import prepare_worker

    settings = invocation().settings
    rt = invocation().runtime  # forked pool processes inherit it
    try:
        # Refuse a visibility timeout a delivery could outlive before taking any message.
        rt.check_timing()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    if REMAP_SIGTERM != "SIGQUIT":
        _exec_with_soft_shutdown()
    try:
        # After the checks and the re-exec: this switches the process to multiprocess metrics.
        prepare_worker(settings, metrics_port)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on port {metrics_port}: {exc}") from None
    if beat:
        relay_scheduler.start_thread(rt)
    quiet = log_format(settings) == "json"
    make_celery(rt.settings).worker_main(worker_argv(concurrency, rt.settings.log_level, quiet))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--concurrency", default=2, show_default=True, type=int)
@click.option(
    "--data-dir",
    default=LOCAL_DIR,
    show_default=True,
    type=click.Path(path_type=Path),
    help="where the embedded Redis keeps its AOF and its address (redis.url) when REDIS_URL "
    "is not set; other commands run in this directory find it in ./.clockify-relay",
)
@click.option(
    "--sandbox",
    "with_sandbox",
    is_flag=True,
    help="also run the sandbox fakes and point every target at them",
)
@click.option("--sandbox-port", default=9000, show_default=True, type=int)
@click.option(
    "--sandbox-reread",
    is_flag=True,
    help="with --sandbox: re-read entries from the sandbox's Clockify fake (rule 5)",
)
def run(
    host: str,
    port: int,
    concurrency: int,
    data_dir: Path,
    with_sandbox: bool,
    sandbox_port: int,
    sandbox_reread: bool,
) -> None:
    """Receiver, worker and scheduler together on one machine (embedded Redis if neither
    REDIS_URL nor REDIS_SENTINELS is set)."""
    from clockify_relay.embedded_redis import AlreadyRunning, LocalRedis

    data_dir = data_dir.resolve()
    embedded: LocalRedis | None = None
    sandbox_server = None
    # One environment for this process's receiver and the worker child; os.environ is left
    # as it was.
    env = dict(os.environ)
    config_path = invocation().config_path
    if config_path is not None:
        env["RELAY_CONFIG"] = str(config_path)
    exports: list[str] = []
    if not env.get("REDIS_URL") and not env.get("REDIS_SENTINELS"):
        _note_old_data_dir(data_dir)
        try:
            embedded = LocalRedis(data_dir).start()
        except AlreadyRunning as exc:
            raise click.ClickException(
                str(exc)
                + (f"\nto use it from this shell: export REDIS_URL={exc.url}" if exc.url else "")
            ) from None
        env["REDIS_URL"] = embedded.url
        click.echo(f"embedded Redis at {embedded.url} (data in {data_dir / 'redis'})")
        exports.append(f"export REDIS_URL={embedded.url}")
    try:
        if with_sandbox:
            sandbox_server, sandbox_exports = _start_sandbox_mode(
                env, sandbox_port, data_dir, sandbox_reread
            )
            exports += sandbox_exports
        settings = load_settings(env)
    except BaseException:
        if sandbox_server is not None:
            sandbox_server.stop()
        if embedded is not None:
            embedded.stop()
        raise
    if exports:
        # Printed once on purpose: throwaway secrets of this local run, for a second shell.
        found_here = embedded is not None and data_dir == Path(LOCAL_DIR).resolve()
        click.echo(
            "for a second shell"
            + (
                " (clockify-relay commands run in this directory find the embedded Redis "
                "without REDIS_URL):"
                if found_here
                else ":"
            )
        )
        for line in exports:
            click.echo(f"  {line}")
    # uvicorn re-raises a SIGTERM it caught once it has stopped; as an exception here (not the
    # default action, which ends the process on the spot) the clean-up below still runs: the
    # worker is stopped and the embedded Redis gives up its address file.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    worker_process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clockify_relay",
            "worker",
            "--concurrency",
            str(concurrency),
            "--beat",
        ],
        env=env,
    )
    try:
        click.echo(f"webhook URL: http://{host}:{port}/webhooks/clockify")
        serve_receiver(settings, host, port)
    finally:
        worker_process.send_signal(signal.SIGTERM)
        try:
            # Its soft shutdown lets running tasks finish first (pipeline/celery_app.py).
            worker_process.wait(timeout=settings.soft_shutdown_timeout + 15)
        except subprocess.TimeoutExpired:
            worker_process.kill()
        if sandbox_server is not None:
            sandbox_server.stop()
        if embedded:
            embedded.stop()


@main.command("worker-alive")
@click.option(
    "--max-age",
    default=60.0,
    show_default=True,
    type=float,
    help="seconds the heartbeat file may be old",
)
def worker_alive(max_age: float) -> None:
    """Liveness probe: exit 0 when this host's worker touched its heartbeat file
    (RELAY_HEARTBEAT_FILE) within --max-age seconds, else 1."""
    from clockify_relay.pipeline import heartbeat
    from clockify_relay.settings import heartbeat_file

    path = heartbeat_file(os.environ)
    age = heartbeat.age(path)
    if age is None:
        click.echo(f"not alive: no heartbeat file {path}", err=True)
        sys.exit(1)
    if age > max_age:
        click.echo(f"not alive: {path} is {age:.0f} s old (max {max_age:.0f} s)", err=True)
        sys.exit(1)
    click.echo(f"alive: {path} is {age:.1f} s old")


@main.command()
def scheduler() -> None:
    """Run the scheduler: releases parked deliveries, re-queues lost messages. Run one.

    It touches RELAY_HEARTBEAT_FILE on every turn (liveness: worker-alive)."""
    import logging
    import threading

    from clockify_relay.logs import configure_logging
    from clockify_relay.pipeline import scheduler as relay_scheduler

    configure_logging(invocation().settings)
    rt = invocation().runtime
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logging.getLogger("clockify_relay.scheduler").info("scheduler running")
    with contextlib.suppress(KeyboardInterrupt):
        relay_scheduler.run(rt, stop, rt.settings.heartbeat_file)


def _self_command() -> str:
    """How a second shell runs this clockify-relay: its name when that is what PATH finds,
    else the script's path (relative when under the current directory: .venv/bin/…)."""
    script = Path(sys.executable).parent / "clockify-relay"
    if not script.exists():
        return f"{sys.executable} -m clockify_relay"
    found = shutil.which("clockify-relay")
    if found is not None and Path(found).resolve() == script.resolve():
        return "clockify-relay"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _note_old_data_dir(data_dir: Path) -> None:
    """Earlier versions kept ``run``'s data in ./.relay-data: say so rather than start empty."""
    old = Path(".relay-data").resolve() / "redis"
    if data_dir == Path(LOCAL_DIR).resolve() and old.is_dir() and not (data_dir / "redis").exists():
        click.echo(
            f"note: {old} holds the data of an earlier run (the default --data-dir was "
            f".relay-data); move it to {data_dir / 'redis'} to keep it, or pass "
            "--data-dir .relay-data"
        )


def _start_sandbox_mode(
    env: dict[str, str], port: int, data_dir: Path, reread: bool
) -> tuple[SandboxServer, list[str]]:
    """Start the sandbox in this process and point ``env`` (the relay's) at it. Returns the
    server and the ``export`` lines a second shell needs (the throwaway secrets made here)."""
    from clockify_relay.sandbox import relay_config
    from clockify_relay.sandbox.server import SandboxServer as Server

    server = Server(port=port).start()
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = relay_config.write_toml(
        data_dir / "sandbox-relay.toml", relay_config.sandbox_targets(server.base_urls)
    )
    env["RELAY_CONFIG"] = str(config_path)
    env.update(relay_config.sandbox_env(server.config, server.base_urls))
    relay_config.bypass_proxy(env)
    # The Clockify fake knows only entries put into it, so re-reading is off unless asked for.
    env.pop("CLOCKIFY_API_KEY", None)
    if reread:
        env["CLOCKIFY_API_KEY"] = server.config.clockify_api_key
        env["CLOCKIFY_API_URL"] = server.base_urls["clockify"]
    click.echo(f"sandbox on {server.url} (state: {server.url}/_sandbox/state)")
    # The sandbox config, so `targets list`, `events`, `dlq` in a second shell see the same
    # targets (operator commands need no target credentials: docs/ARCHITECTURE.md).
    exports: list[str] = [f"export RELAY_CONFIG={config_path}"]
    if not env.get("CLOCKIFY_WEBHOOK_TOKENS"):
        token = relay_config.new_webhook_token()
        env["CLOCKIFY_WEBHOOK_TOKENS"] = token
        exports.append(f"export TOKEN={token}  # the webhook token (Clockify-Signature header)")
    if not env.get("RELAY_ADMIN_JWT_SECRET"):
        env["RELAY_ADMIN_JWT_SECRET"] = secrets.token_urlsafe(32)
        exports.append(
            f"export RELAY_ADMIN_JWT_SECRET={env['RELAY_ADMIN_JWT_SECRET']}  # the admin API's"
        )
    exports.append(f"export ADMIN_TOKEN=$({_self_command()} admin-token)  # valid for an hour")
    return server, exports


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9000, show_default=True, type=int)
def sandbox(host: str, port: int) -> None:
    """Run the contract fakes of Everit, Blikk, Tracket and Clockify's REST API."""
    from clockify_relay.sandbox.server import serve

    serve(host, port)


def run_cli() -> None:
    """Entry point that turns configuration errors into a clear message and exit code 2."""
    try:
        main(standalone_mode=True)
    except ConfigurationError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


def _register_subcommands() -> None:
    """Command groups that live beside the modules they drive."""
    from clockify_relay.admin.cli import admin_token, check, dlq, events, targets
    from clockify_relay.bench.cli import bench
    from clockify_relay.demo import demo

    for command in (check, dlq, events, targets, admin_token, bench, demo):
        main.add_command(command)
    from clockify_relay.admin.clockify_cli import register_commands  # webhooks, redrive, …

    register_commands(main)
    _short_help_everywhere(main)


def _short_help_everywhere(command: click.Command) -> None:
    """-h on every command, also when one is invoked on its own (tests do): click builds a
    command's help option once, from the context it first runs in."""
    command.context_settings = {**CONTEXT_SETTINGS, **command.context_settings}
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _short_help_everywhere(sub)


_register_subcommands()
