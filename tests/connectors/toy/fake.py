"""Toy's sandbox fake: records under ``/toy/v1/records``, bearer token required."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from clockify_relay.sandbox.core import FakeTarget, SandboxConfig, json_response, method_route

TOKEN = "toy-sandbox-token"


class ToyFake(FakeTarget):
    name = "toy"
    base_path = "/v1"

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self.reset()

    def routes(self) -> list[BaseRoute]:
        return [
            method_route("/v1/records", {"GET": self._list, "POST": self._create}),
            method_route("/v1/records/{id:int}", {"PUT": self._update, "DELETE": self._delete}),
        ]

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"records": [dict(r) for r in self.records.values()]}

    def reset(self) -> None:
        with self.lock:
            self.records: dict[int, dict[str, Any]] = {}
            self.next_id = 1

    def _refused(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return json_response({"error": "unauthorized"}, status_code=401)
        return None

    async def _list(self, request: Request) -> Response:
        return self._refused(request) or json_response({"records": self.state()["records"]})

    async def _create(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        body = await request.json()
        with self.lock:
            record = {"id": self.next_id, **body}
            self.records[self.next_id] = record
            self.next_id += 1
        return json_response(record, status_code=201)

    async def _update(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        record_id = int(request.path_params["id"])
        body = await request.json()
        with self.lock:
            if record_id not in self.records:
                return json_response({"error": "not found"}, status_code=404)
            self.records[record_id] = {"id": record_id, **body}
        return json_response(self.records[record_id])

    async def _delete(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        with self.lock:
            gone = self.records.pop(int(request.path_params["id"]), None)
        if gone is None:
            return json_response({"error": "not found"}, status_code=404)
        return Response(status_code=204)
