"""The one ASGI factory: the receiver, and the admin API when it is enabled.

``clockify-relay serve`` and ``uvicorn --factory clockify_relay.asgi:create_app`` both build the
app here. The admin routes are mounted beside the webhook unless ``admin`` is false (without
``RELAY_ADMIN_JWT_SECRET`` they answer 503: the API fails closed); a cluster that keeps admin
off the public ingress serves them on a port of their own instead (``serve --admin-port``:
:func:`create_receiver_app` on one port, :func:`admin_app` on the other).

The receiver is handed settings without any target section: it never holds a target's
credentials (docs/ARCHITECTURE.md, "Operator actions go through the workers").
"""

from __future__ import annotations

from dataclasses import replace

from starlette.applications import Starlette

from clockify_relay.receiver.app import receiver_app
from clockify_relay.settings import Settings, load_settings


def receiver_settings(settings: Settings) -> Settings:
    """The settings the receiver keeps: everything but the targets' sections."""
    return replace(settings, targets={})


def create_app(settings: Settings | None = None, *, admin: bool = True) -> Starlette:
    """The receiver, with the admin API mounted under /admin when ``admin``."""
    settings = settings or load_settings(delivering=False)
    extra = []
    if admin:
        from clockify_relay.admin.api import admin_routes

        extra = admin_routes(settings)
    return receiver_app(receiver_settings(settings), extra)


def create_receiver_app() -> Starlette:
    """The receiver without the admin routes (a uvicorn factory for ``serve --admin-port``)."""
    return create_app(admin=False)


def admin_app(settings: Settings | None = None) -> Starlette:
    """The admin API alone (for a port of its own), with /healthz beside it."""
    from clockify_relay.admin.api import admin_only_app

    return admin_only_app(settings or load_settings(delivering=False))
