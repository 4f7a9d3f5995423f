"""Load the recorded Clockify webhook bodies under ``tests/fixtures/clockify/``.

``fixture_bytes`` gives the body exactly as stored (what the receiver gets on the wire);
``fixture_json`` the parsed object. Names are file names with or without ``.json``, e.g.
``"NEW_TIME_ENTRY"`` or ``"TIME_ENTRY_DELETED__rich.json"``. The ids used across the fixtures are
constants here (see tests/fixtures/clockify/README.md) so connector tests can map them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CLOCKIFY_FIXTURES = Path(__file__).parent / "fixtures" / "clockify"

WORKSPACE_ID = "6641f2a9c7e13b5d2a8f0c11"
USER_ANNA = "6641f2b4c7e13b5d2a8f0c21"  # Anna Lindqvist, Europe/Stockholm
USER_MARKO = "6641f2b4c7e13b5d2a8f0c22"  # Marko Petrović, Europe/Belgrade
CLIENT_NORDLYS = "6641f3d0c7e13b5d2a8f0c31"
PROJECT_WEBSITE = "6641f3e8c7e13b5d2a8f0c41"  # Website relaunch
PROJECT_INTERNAL = "6641f3e8c7e13b5d2a8f0c42"  # Internal
PROJECT_MOBILE = "69b00c915d4c3b2a19f8e901"  # Mobile app (NEW_PROJECT only)
TASK_DESIGN = "6641f40ac7e13b5d2a8f0c51"  # Website relaunch / Design
TASK_DEVELOPMENT = "6641f40ac7e13b5d2a8f0c52"  # Website relaunch / Development
TASK_ADMINISTRATION = "6641f40ac7e13b5d2a8f0c53"  # Internal / Administration
TAG_MEETING = "6641f42fc7e13b5d2a8f0c61"
TAG_REMOTE = "6641f42fc7e13b5d2a8f0c62"
CUSTOM_FIELD_TICKET = "6641f450c7e13b5d2a8f0c71"
ENTRY_MAIN = "69b00a1e5d4c3b2a19f8e701"  # NEW_TIME_ENTRY(+__legacy), UPDATED, DELETED, RESTORED
ENTRY_TIMER = "69b00a1e5d4c3b2a19f8e702"  # NEW_TIMER_STARTED, TIMER_STOPPED
ENTRY_SPLIT = "69b00a1e5d4c3b2a19f8e703"  # TIME_ENTRY_SPLIT
ENTRY_BREAK = "69b00a1e5d4c3b2a19f8e704"  # TIME_ENTRY_UPDATED__break
ENTRY_MIDNIGHT = "69b00a1e5d4c3b2a19f8e705"  # NEW_TIME_ENTRY__midnight_stockholm
APPROVAL_ANNA = "69b00b7f5d4c3b2a19f8e801"  # NEW_APPROVAL_REQUEST, APPROVAL_REQUEST_STATUS_UPDATED
APPROVAL_MARKO = "69b00b7f5d4c3b2a19f8e802"  # APPROVAL_REQUEST_STATUS_UPDATED__timezone_lowercase


def _path(name: str) -> Path:
    file_name = name if name.endswith(".json") else f"{name}.json"
    path = CLOCKIFY_FIXTURES / file_name
    if not path.is_file():
        raise FileNotFoundError(f"no Clockify fixture {file_name!r}; see {fixture_names()}")
    return path


def fixture_bytes(name: str) -> bytes:
    """The fixture body exactly as stored, as the receiver would get it from Clockify."""
    return _path(name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    """The fixture body parsed (a fresh object each call, safe to modify)."""
    body = json.loads(fixture_bytes(name))
    assert isinstance(body, dict)
    return body


def fixture_names() -> list[str]:
    """Every fixture name (without ``.json``), sorted."""
    return sorted(p.stem for p in CLOCKIFY_FIXTURES.glob("*.json"))


def event_type_of(name: str) -> str:
    """The Clockify event type a fixture is a body of: the name before any ``__variant``."""
    return name.removesuffix(".json").partition("__")[0]
