"""Blikk target: Clockify entries → Blikk time reports, one per local day.

api.py (HTTP client), connector.py (the engine's Connector), mapping.py (pure), config.py (the
``[targets.blikk]`` section), auth.py (shared access token), lookups.py (registries for
``clockify-relay check``).
"""
