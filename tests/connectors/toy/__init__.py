"""A target that exists only for tests: what a new target costs is this folder and one line in
connectors/registry.py (docs/ARCHITECTURE.md §8). Toy books each entry as one record.

connector.py (its Connector and HTTP client), config.py (the ``[targets.toy]`` section),
fake.py (its sandbox fake).
"""

from clockify_relay.connectors.spec import EnvVar, TargetSpec

SPEC = TargetSpec(
    name="toy",
    package=__name__,
    connector="connector:ToyConnector",
    config_keys="config:KNOWN_KEYS",
    fake="fake:ToyFake",
    env=(EnvVar("TOY_TOKEN", "token", secret=True), EnvVar("TOY_BASE_URL", "base_url")),
    sandbox_section={"defaults": {"bucket": "sandbox-bucket"}},
    sandbox_env=lambda config: {"TOY_TOKEN": "toy-sandbox-token"},
)
