"""Parsing helpers shared by the connectors' TOML sections, so every connector words a config
mistake the same way: ``[targets.<name>.<table>."<id>"] <field> …``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clockify_relay.errors import ConfigurationError


def whole_number(value: object, where: str) -> int:
    """An integer id from TOML (int, or digits in a string); ConfigurationError otherwise."""
    # TOML booleans are ints in Python; `issue_id = true` is a mistake, not id 1.
    if isinstance(value, bool):
        raise ConfigurationError(f"{where} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ConfigurationError(f"{where} must be a whole number, got {value!r}")


def table(section: Mapping[str, Any], name: str, section_name: str) -> Mapping[str, Any]:
    """The sub-table ``[<section_name>.<name>]`` (empty when absent)."""
    value = section.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"[{section_name}.{name}] must be a table")
    return value


def id_rows(
    section: Mapping[str, Any], name: str, field_name: str, section_name: str
) -> dict[str, int]:
    """Rows ``[<section>.<name>."<id>"] <field_name> = N``, or the short form ``"<id>" = N``."""
    rows: dict[str, int] = {}
    for key, row in table(section, name, section_name).items():
        where = f'[{section_name}.{name}."{key}"] {field_name}'
        if isinstance(row, Mapping):
            if field_name not in row:
                raise ConfigurationError(f"{where} is missing")
            rows[str(key)] = whole_number(row[field_name], where)
        else:
            rows[str(key)] = whole_number(row, where)
    return rows


def text_value(value: object, where: str) -> str:
    """A string id or name from TOML (a TOML integer is accepted for convenience; a boolean is
    a mistake); ConfigurationError when empty or of another type."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigurationError(f"{where} must be a string, got {value!r}")
    text = str(value).strip()
    if not text:
        raise ConfigurationError(f"{where} must not be empty")
    return text


def text_rows(
    section: Mapping[str, Any], name: str, field_name: str, section_name: str
) -> dict[str, str]:
    """Rows ``[<section>.<name>."<id>"] <field_name> = "…"``, or the short form ``"<id>" = "…"``."""
    rows: dict[str, str] = {}
    for key, row in table(section, name, section_name).items():
        where = f'[{section_name}.{name}."{key}"] {field_name}'
        value = row.get(field_name) if isinstance(row, Mapping) else row
        if value is None:
            raise ConfigurationError(f"{where} is missing")
        rows[str(key)] = text_value(value, where)
    return rows


def string_setting(section: Mapping[str, Any], key: str, default: str, section_name: str) -> str:
    """A plain string key of the section (e.g. ``auth_header``), stripped."""
    value = section.get(key, default)
    if not isinstance(value, str):
        raise ConfigurationError(f"[{section_name}] {key} must be a string")
    return value.strip()
