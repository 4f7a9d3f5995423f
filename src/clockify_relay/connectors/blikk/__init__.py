"""Blikk target: Clockify entries → Blikk time reports, one per local day.

api.py (HTTP client), connector.py (the engine's Connector), mapping.py (pure), config.py (the
``[targets.blikk]`` section), auth.py (shared access token), lookups.py (registries for
``clockify-relay check --lookups``), fake.py (the sandbox fake), tests/.
"""

from clockify_relay.connectors.spec import EnvVar, TargetSpec

SPEC = TargetSpec(
    name="blikk",
    package=__name__,
    connector="connector:BlikkConnector",
    config_keys="config:KNOWN_KEYS",
    fake="fake:BlikkFake",
    lookups="lookups:list_lookups",
    env=(
        EnvVar("BLIKK_APP_ID", "app_id"),
        EnvVar("BLIKK_APP_SECRET", "app_secret", secret=True),
        EnvVar("BLIKK_BASE_URL", "base_url"),
    ),
    # Catch-all rows ("*") map every Clockify user and project to records the fake seeds.
    sandbox_section={
        "defaults": {"activity_id": 1, "time_code_id": 1, "time_article_id": 1},
        "users": {"*": 1},
        "projects": {"*": {"project_id": 1}},
    },
    sandbox_env=lambda config: {
        "BLIKK_APP_ID": config.blikk_app_id,
        "BLIKK_APP_SECRET": config.blikk_app_secret,
    },
)
