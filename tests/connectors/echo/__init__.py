"""A test-only event target: it takes approval events and NEW_TIME_ENTRY through its own
handler (no Connector, no DeliveryEngine) and records what it got in Redis."""

from clockify_relay.clockify.models import APPROVAL_EVENTS
from clockify_relay.connectors.spec import TargetSpec

SPEC = TargetSpec(
    name="echo",
    package=__name__,
    handler="handler:EchoHandler",
    events=APPROVAL_EVENTS | {"NEW_TIME_ENTRY"},
    config_keys="handler:KNOWN_KEYS",
)
