"""Toy's HTTP client and Connector: one record per entry under ``/records``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.connectors.base import Booking, Connector
from clockify_relay.http_client import BaseClient, json_object
from clockify_relay.settings import Settings
from tests.connectors.toy.config import parse_config


class ToyConnector(Connector):
    name = "toy"

    def __init__(
        self, settings: Settings, section: Mapping[str, Any], redis_client: redis.Redis
    ) -> None:
        super().__init__(settings, section, redis_client)
        self.config = parse_config(section)
        self.client = BaseClient(
            self.config.base_url,
            headers={"Authorization": f"Bearer {self.config.token.reveal()}"},
            timeout=5.0,
        )
        self.client.target = "toy"

    def bookings(self, entry: TimeEntry) -> list[Booking]:
        payload = {"entry": entry.id, "seconds": entry.seconds, "bucket": self.config.bucket}
        return [Booking(key="", payload=payload)]

    def create(self, entry: TimeEntry, booking: Booking) -> str:
        response = self.client.request("POST", "/records", json=dict(booking.payload))
        return str(json_object(response)["id"])

    def update(self, entry: TimeEntry, remote_id: str, booking: Booking) -> str:
        self.client.request("PUT", f"/records/{remote_id}", json=dict(booking.payload))
        return remote_id

    def delete(self, entry: TimeEntry, remote_id: str) -> None:
        self.client.request("DELETE", f"/records/{remote_id}", allow_statuses=frozenset({404}))

    def probe(self) -> str:
        self.client.request("GET", "/records")
        return f"token accepted at {self.config.base_url}"

    def close(self) -> None:
        self.client.close()
