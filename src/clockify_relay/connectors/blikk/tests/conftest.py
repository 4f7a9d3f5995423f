"""Reuse the project's real-Redis fixtures (tests/conftest.py) for the Blikk connector tests."""

from tests.conftest import key_prefix, redis_client, redis_url, settings

__all__ = ["key_prefix", "redis_client", "redis_url", "settings"]
