"""The ``[targets.toy]`` section: ``token`` and ``base_url`` (from TOY_TOKEN, TOY_BASE_URL),
``[targets.toy.defaults] bucket`` and ``[targets.toy.projects."<id>"] bucket``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import KnownKeys, Secret

KNOWN_KEYS = KnownKeys.of(
    "token",
    "base_url",
    defaults=KnownKeys.of("bucket"),
    projects=KnownKeys.of(rows=KnownKeys.of("bucket")),
)


@dataclass(frozen=True)
class ToyConfig:
    token: Secret
    base_url: str
    bucket: str


def parse_config(section: Mapping[str, Any]) -> ToyConfig:
    token = section.get("token")
    if not isinstance(token, Secret) or not token:
        raise ConfigurationError("toy: no token; set TOY_TOKEN")
    bucket = section.get("defaults", {}).get("bucket")
    if not isinstance(bucket, str):
        raise ConfigurationError("[targets.toy.defaults] bucket is missing")
    return ToyConfig(token, str(section.get("base_url", "")), bucket)
