"""Everit Timetracker target: Clockify entries → Everit worklogs on Jira issues.

api.py (HTTP client), connector.py (the engine's Connector), mapping.py (pure), config.py (the
``[targets.everit]`` section), fake.py (the sandbox fake), tests/.
"""

from clockify_relay.connectors.spec import EnvVar, TargetSpec

SPEC = TargetSpec(
    name="everit",
    package=__name__,
    connector="connector:EveritConnector",
    config_keys="config:KNOWN_KEYS",
    fake="fake:EveritFake",
    env=(
        EnvVar("EVERIT_API_KEY", "api_key", secret=True),
        EnvVar("EVERIT_BASE_URL", "base_url"),
    ),
    sandbox_section={"defaults": {"issue_id": 10000}},
    sandbox_env=lambda config: {"EVERIT_API_KEY": config.everit_api_key},
)
