"""Blikk's registries, listed for ``clockify-relay check``: the ids an operator needs to fill
``[targets.blikk.users]``, ``[targets.blikk.projects]`` and ``[targets.blikk.defaults]``.

Each function reads every page of one list endpoint (paced by the shared rate limiter like any
other call) and returns compact rows ``{"id": ..., "name": ..., "active": ...}``.
"""

from __future__ import annotations

from typing import Any

from clockify_relay.connectors.blikk.api import BlikkClient
from clockify_relay.connectors.blikk.connector import BlikkConnector

# Name of the lookup → its list endpoint.
ENDPOINTS: dict[str, str] = {
    "users": "/v1/Admin/Users",
    "projects": "/v1/Core/Projects",
    "internal_projects": "/v1/Admin/InternalProjects",
    "absence_projects": "/v1/Admin/AbsenceProjects",
    "activities": "/v1/Admin/Activities",
    "time_codes": "/v1/Admin/TimeCodes",
    "time_articles": "/v1/Admin/TimeArticles",
}


def _row(item: dict[str, Any]) -> dict[str, Any]:
    if "firstName" in item or "lastName" in item:
        name = f"{item.get('firstName') or ''} {item.get('lastName') or ''}".strip()
    elif "title" in item:
        number = item.get("orderNumber")
        name = f"{number} {item['title']}".strip() if number else str(item["title"])
    else:
        name = str(item.get("name") or "")
    row: dict[str, Any] = {"id": item.get("id"), "name": name}
    if "isActive" in item:
        row["active"] = bool(item["isActive"])
    return row


def _list(client: BlikkClient, name: str) -> list[dict[str, Any]]:
    return [_row(item) for item in client.paged(ENDPOINTS[name])]


def list_users(client: BlikkClient) -> list[dict[str, Any]]:
    """Blikk users (``userId`` of a time report)."""
    return _list(client, "users")


def list_projects(client: BlikkClient) -> list[dict[str, Any]]:
    """Customer projects (``projectId``)."""
    return _list(client, "projects")


def list_internal_projects(client: BlikkClient) -> list[dict[str, Any]]:
    """Internal projects (``internalProjectId``)."""
    return _list(client, "internal_projects")


def list_absence_projects(client: BlikkClient) -> list[dict[str, Any]]:
    """Absence projects (``absenceProjectId``)."""
    return _list(client, "absence_projects")


def list_activities(client: BlikkClient) -> list[dict[str, Any]]:
    """Activities (``activityId``)."""
    return _list(client, "activities")


def list_time_codes(client: BlikkClient) -> list[dict[str, Any]]:
    """Time codes (``timeCodeId``)."""
    return _list(client, "time_codes")


def list_time_articles(client: BlikkClient) -> list[dict[str, Any]]:
    """Time articles (``timeArticleId``)."""
    return _list(client, "time_articles")


def list_lookups(connector: BlikkConnector) -> dict[str, list[dict[str, Any]]]:
    """Every registry an operator maps to, by name (``users``, ``projects``, ...)."""
    return {name: _list(connector.client, name) for name in ENDPOINTS}
