"""Blikk connector: Clockify entries → Blikk time reports, one per local day.

``client.BlikkConnector`` (registered as ``blikk``), ``mapping`` (pure), ``config`` (the
``[targets.blikk]`` section), ``auth`` (shared access token), ``lookups`` (registries for
``clockify-relay check``).
"""
