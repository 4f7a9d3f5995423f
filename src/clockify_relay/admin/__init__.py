"""The operator path: the admin HTTP API (api.py), the ``clockify-relay`` operator commands
(cli.py), and the service functions both call (service.py) — dead letters, replays, events,
target pause/resume — plus ``check`` (checks.py) and admin tokens (tokens.py).

Operator actions only write to Redis (enqueue, park, flag); the workers make every call to a
target (docs/ARCHITECTURE.md, "Operator actions go through the workers"). The receiver package
never imports this one.
"""
