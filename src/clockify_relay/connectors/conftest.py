"""The project's shared fixtures for the tests that live beside each connector
(connectors/<target>/tests/): real Redis (tests/conftest.py), the sandbox as the fakes' own tests
have it -- one server per test module, cleared before each test (tests/sandbox/conftest.py) --
and the engine's fixtures (tests/pipeline/conftest.py)."""

from tests.conftest import key_prefix, redis_client, redis_url, settings
from tests.pipeline.conftest import clean_sandbox, everit_settings, rt
from tests.sandbox.conftest import http, sandbox, sandbox_server

__all__ = [
    "clean_sandbox",
    "everit_settings",
    "http",
    "key_prefix",
    "redis_client",
    "redis_url",
    "rt",
    "sandbox",
    "sandbox_server",
    "settings",
]
