"""The sandbox Starlette app: every fake mounted at ``/{name}`` plus the control endpoints.

Control endpoints (never counted, never faulted):

* ``GET /_sandbox/state`` -- every record each fake holds (in that API's own field names), the
  request counts per target and the active faults; indented, for people reading it with curl.
* ``POST /_sandbox/reset`` -- clear records, faults and counters.
* ``POST /_sandbox/faults`` -- inject a fault (see :func:`clockify_relay.sandbox.core.parse_fault`),
  optionally limited to a path and a method; ``DELETE /_sandbox/faults`` drops all faults.
* ``PUT /_sandbox/smtp/mode`` -- make the SMTP server refuse, be down or lose its answer
  (sandbox/smtp.py); its mails are under ``"smtp"`` in the state.
* ``/_sandbox/{name}/...`` -- a fake's own control routes (e.g. seeding Clockify time entries).
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from clockify_relay.connectors import registry
from clockify_relay.sandbox.clockify import ClockifyFake
from clockify_relay.sandbox.core import (
    CONTROL_PREFIX,
    FakeTarget,
    FaultError,
    InvalidJSON,
    Sandbox,
    SandboxConfig,
    SandboxMiddleware,
    json_response,
    method_route,
    read_json,
)
from clockify_relay.sandbox.smtp import ModeError


def fake_classes() -> list[type[FakeTarget]]:
    """The fake of every registered target (connectors/<target>/fake.py), then Clockify's."""
    fakes = (spec.fake_class() for spec in registry.specs())
    return [*(fake for fake in fakes if fake is not None), ClockifyFake]


def _control_routes(sandbox: Sandbox) -> list[BaseRoute]:
    async def get_state(request: Request) -> Response:
        body = orjson.dumps(sandbox.state(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        return Response(body, media_type="application/json")

    async def post_reset(request: Request) -> Response:
        sandbox.reset()
        return json_response({"reset": True})

    async def post_fault(request: Request) -> Response:
        try:
            fault = sandbox.add_fault(await read_json(request))
        except (InvalidJSON, FaultError) as exc:
            return json_response({"error": str(exc)}, status_code=400)
        return json_response({"id": fault.id}, status_code=201)

    async def delete_faults(request: Request) -> Response:
        sandbox.faults.clear()
        return json_response({"cleared": True})

    async def put_smtp_mode(request: Request) -> Response:
        try:
            # Stopping or starting the SMTP server blocks: not on the event loop.
            state = await asyncio.to_thread(sandbox.smtp.set_mode, await read_json(request))
        except (InvalidJSON, ModeError) as exc:
            return json_response({"error": str(exc)}, status_code=400)
        return json_response(state)

    routes: list[BaseRoute] = [
        Route(f"{CONTROL_PREFIX}/state", get_state, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/reset", post_reset, methods=["POST"]),
        method_route(f"{CONTROL_PREFIX}/faults", {"POST": post_fault, "DELETE": delete_faults}),
        Route(f"{CONTROL_PREFIX}/smtp/mode", put_smtp_mode, methods=["PUT"]),
    ]
    for name, fake in sandbox.fakes.items():
        extra = fake.control_routes()
        if extra:
            routes.append(Mount(f"{CONTROL_PREFIX}/{name}", routes=extra))
    return routes


def build_app(config: SandboxConfig | None = None) -> Starlette:
    """A sandbox app with every fake of :func:`fake_classes`.

    Its :class:`~clockify_relay.sandbox.core.Sandbox` is ``app.state.sandbox``.
    """
    config = config or SandboxConfig()
    sandbox = Sandbox(config, [fake_cls(config) for fake_cls in fake_classes()])
    routes = _control_routes(sandbox)
    routes += [Mount(f"/{name}", routes=fake.routes()) for name, fake in sandbox.fakes.items()]
    app = Starlette(routes=routes, middleware=[Middleware(SandboxMiddleware, sandbox=sandbox)])
    app.state.sandbox = sandbox
    return app
