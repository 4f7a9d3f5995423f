"""Tracket target: api.py (HTTP client), connector.py (the engine's Connector), mapping.py (pure),
config.py (the ``[targets.tracket]`` section)."""
