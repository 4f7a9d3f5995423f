"""The Procfile and docker-compose.yml parse and run the same commands."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from clockify_relay.cli import main

ROOT = Path(__file__).resolve().parent.parent


def procfile() -> dict[str, list[str]]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = shlex.split(command)
    return processes


def compose() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_procfile_has_web_worker_and_one_scheduler() -> None:
    processes = procfile()
    assert set(processes) == {"web", "worker", "scheduler"}
    for argv in processes.values():
        assert argv[0] == "clockify-relay"
        assert argv[1] in main.commands  # a real subcommand


def test_compose_runs_the_procfile_commands() -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    for name, argv in procfile().items():
        command = shlex.split(services[name]["command"])
        # Same subcommand; only the port/concurrency placeholders differ.
        assert command[:2] == argv[:2], name
        assert services[name]["environment"]["REDIS_URL"].startswith("redis://redis:")


def test_compose_redis_is_durable_and_never_evicts() -> None:
    command = compose()["services"]["redis"]["command"]
    assert "--appendonly yes" in command
    assert "--appendfsync always" in command
    assert "--maxmemory-policy noeviction" in command
