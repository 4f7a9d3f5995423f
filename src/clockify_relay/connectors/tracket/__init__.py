"""Tracket target: Clockify entries → Tracket worklogs on items.

api.py (HTTP client), connector.py (the engine's Connector), mapping.py (pure), config.py (the
``[targets.tracket]`` section), fake.py (the sandbox fake), tests/.
"""

from clockify_relay.connectors.spec import EnvVar, TargetSpec

SPEC = TargetSpec(
    name="tracket",
    package=__name__,
    connector="connector:TracketConnector",
    config_keys="config:KNOWN_KEYS",
    fake="fake:TracketFake",
    env=(
        EnvVar("TRACKET_TOKEN", "token", secret=True),
        EnvVar("TRACKET_BASE_URL", "base_url"),
    ),
    sandbox_section={"defaults": {"item_id": "sandbox-item", "user_id": "sandbox-user"}},
    sandbox_env=lambda config: {"TRACKET_TOKEN": config.tracket_token},
)
