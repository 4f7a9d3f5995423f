"""The project's shared fixtures (tests/conftest.py: real Redis, the sandbox) for the tests that
live beside each connector."""

from tests.conftest import key_prefix, redis_client, redis_url, sandbox, settings

__all__ = ["key_prefix", "redis_client", "redis_url", "sandbox", "settings"]
