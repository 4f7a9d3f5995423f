"""Organi target: Clockify entries → Organi Time API worklogs; the client also covers the
worklog/confirmation status and mailing operations the approval flows build on.

api.py (HTTP client), connector.py (the engine's Connector), mapping.py (pure), config.py (the
``[targets.organi]`` section), fake.py (the sandbox fake), tests/.
"""

from clockify_relay.clockify.models import APPROVAL_EVENTS, TIME_ENTRY_EVENTS
from clockify_relay.connectors.spec import EnvVar, TargetSpec

SPEC = TargetSpec(
    name="organi",
    package=__name__,
    connector="connector:OrganiConnector",
    # Approval events set the worklog status of the owner's worklogs (approvals.py).
    handler="approvals:ApprovalHandler",
    events=TIME_ENTRY_EVENTS | APPROVAL_EVENTS,
    config_keys="config:KNOWN_KEYS",
    fake="fake:OrganiFake",
    env=(
        EnvVar("ORGANI_TOKEN", "token", secret=True),
        EnvVar("ORGANI_BASE_URL", "base_url"),
    ),
    # Catch-all mappings so any well-formed entry flows through; the fake requires the
    # document's cacheId on DELETE, so the sandbox sends one.
    sandbox_section={
        "cache_id": "sandbox-cache",
        "defaults": {"author": "sandbox-author", "worklog_type": 1, "performance_type": 1},
    },
    sandbox_env=lambda config: {"ORGANI_TOKEN": config.organi_token},
)
