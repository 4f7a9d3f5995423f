"""``clockify-relay bench``: the benchmark commands (registered by :mod:`clockify_relay.cli`)."""

from __future__ import annotations

import json
from typing import Any

import click


def _emit(report: dict[str, Any], output: str, text: str) -> None:
    click.echo(json.dumps(report, indent=2) if output == "json" else text)


def _progress(message: str) -> None:
    click.echo(f"# {message}", err=True)


@click.group()
def bench() -> None:
    """Benchmarks (docs/BENCHMARKS.md). They measure; they assert nothing."""


@bench.command()
@click.option(
    "--duration",
    default=10.0,
    show_default=True,
    type=float,
    help="seconds of each maximum-throughput phase (after the warm-up)",
)
@click.option(
    "--warmup",
    default=1.0,
    show_default=True,
    type=float,
    help="unmeasured seconds at the start of each maximum-throughput phase",
)
@click.option(
    "--connections",
    default=32,
    show_default=True,
    type=int,
    help="keep-alive connections of the load generator",
)
@click.option(
    "--rate",
    default=100.0,
    show_default=True,
    type=float,
    help="requests/s of the receiver's fixed-rate phase",
)
@click.option(
    "--rate-seconds",
    default=60.0,
    show_default=True,
    type=float,
    help="length of the fixed-rate phase",
)
@click.option(
    "--embedded-redis",
    "embedded",
    is_flag=True,
    default=False,
    help="use an embedded Redis with AOF (the default unless --redis-url is given)",
)
@click.option(
    "--redis-url",
    default=None,
    help="use this Redis instead (its persistence settings are reported, not changed)",
)
@click.option(
    "--fsync",
    type=click.Choice(["always", "everysec"]),
    default="always",
    show_default=True,
    help="appendfsync of the embedded Redis",
)
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def ingest(
    duration: float,
    warmup: float,
    connections: int,
    rate: float,
    rate_seconds: float,
    embedded: bool,
    redis_url: str | None,
    fsync: str,
    output: str,
) -> None:
    """Receiver vs a bare Starlette endpoint: throughput, latency, RSS (same uvicorn settings)."""
    from clockify_relay.bench.ingest import IngestOptions, format_report, run_ingest

    if embedded and redis_url:
        raise click.UsageError("--embedded-redis and --redis-url exclude each other")
    if connections < 1 or duration <= 0 or rate <= 0 or rate_seconds <= 0:
        raise click.UsageError("--connections, --duration, --rate and --rate-seconds must be > 0")
    options = IngestOptions(
        duration=duration,
        connections=connections,
        rate=rate,
        rate_seconds=rate_seconds,
        warmup=warmup,
        redis_url=redis_url,
        fsync=fsync,
    )
    report = run_ingest(options, _progress)
    _emit(report, output, format_report(report))


@bench.command()
@click.option(
    "--workers",
    default=4,
    show_default=True,
    type=int,
    help="worker processes sharing the Redis rate limiter",
)
@click.option(
    "--duration",
    default=30.0,
    show_default=True,
    type=float,
    help="measured seconds (after the warm-up)",
)
@click.option(
    "--warmup",
    default=2.0,
    show_default=True,
    type=float,
    help="unmeasured seconds first (token fetch, first slots)",
)
@click.option(
    "--mode",
    type=click.Choice(["processes", "celery"]),
    default="processes",
    show_default=True,
    help="processes: plain processes calling the Blikk connector's create in a loop; "
    "celery: real `clockify-relay worker` processes fed with webhook events",
)
@click.option(
    "--embedded-redis",
    "embedded",
    is_flag=True,
    default=False,
    help="use an embedded Redis (the default unless --redis-url is given)",
)
@click.option("--redis-url", default=None, help="use this Redis instead")
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def ratelimit(
    workers: int,
    duration: float,
    warmup: float,
    mode: str,
    embedded: bool,
    redis_url: str | None,
    output: str,
) -> None:
    """N worker processes against the Blikk fake's real limit: achieved rate and 429s."""
    from clockify_relay.bench.ratelimit import (
        RatelimitOptions,
        format_report,
        run_ratelimit,
    )

    if embedded and redis_url:
        raise click.UsageError("--embedded-redis and --redis-url exclude each other")
    if workers < 1 or duration <= 0 or warmup < 0:
        raise click.UsageError("--workers and --duration must be > 0")
    options = RatelimitOptions(
        workers=workers, duration=duration, warmup=warmup, mode=mode, redis_url=redis_url
    )
    report = run_ratelimit(options, _progress)
    _emit(report, output, format_report(report))
