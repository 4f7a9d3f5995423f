"""Local time of an entry's owner (docs/ARCHITECTURE.md §6) and splitting entries by local day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clockify_relay.clockify.models import TimeEntry
from clockify_relay.errors import ConfigurationError
from clockify_relay.settings import Settings


def owner_zone(entry: TimeEntry, settings: Settings) -> ZoneInfo:
    """The owner's zone: payload ``timeZone``, else ``[users.<id>].timezone``, else default."""
    user_section = settings.raw.get("users", {}).get(entry.user_id, {})
    name = entry.time_zone or user_section.get("timezone") or settings.default_timezone
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {name!r} for user {entry.user_id} (entry {entry.id})"
        ) from None


@dataclass(frozen=True)
class LocalSpan:
    """The part of an entry that falls on one local day."""

    day: date
    start: datetime  # aware, in the owner's zone
    end: datetime  # aware, in the owner's zone; midnight of the next day when it runs past

    @property
    def seconds(self) -> int:
        # Subtract in UTC so a DST change inside the span counts the real elapsed time.
        return int(
            (
                self.end.astimezone(ZoneInfo("UTC")) - self.start.astimezone(ZoneInfo("UTC"))
            ).total_seconds()
        )


def split_by_local_day(start: datetime, end: datetime, zone: ZoneInfo) -> list[LocalSpan]:
    """Split [start, end) at each local midnight in ``zone`` (DST-aware)."""
    local_start = start.astimezone(zone)
    local_end = end.astimezone(zone)
    spans: list[LocalSpan] = []
    cursor = local_start
    while cursor.date() < local_end.date():
        next_midnight = datetime.combine(cursor.date() + timedelta(days=1), time(0), tzinfo=zone)
        spans.append(LocalSpan(cursor.date(), cursor, next_midnight))
        cursor = next_midnight
    if local_end > cursor or not spans:
        spans.append(LocalSpan(cursor.date(), cursor, local_end))
    return spans
