"""The delivery engine on Blikk: real Redis, the Blikk fake over HTTP, deliveries in-process so
each test controls the order (tests/pipeline/test_multi_target_e2e.py runs real workers).

Blikk books per local day, so the ID map of an entry is keyed by date: these tests check that the
engine PUTs the days that stay, POSTs new ones and DELETEs the ones that went, by report id in
the fake's own state.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from tests.fixture_loader import ENTRY_MAIN, ENTRY_MIDNIGHT, PROJECT_WEBSITE, USER_ANNA
from tests.pipeline.conftest import entry_payload, envelope
from tests.processes import wait_until

from clockify_relay.errors import ConfigurationError, PermanentError, TransientError
from clockify_relay.pipeline.engine import Outcome
from clockify_relay.pipeline.messages import Envelope
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Secret, Settings

pytestmark = pytest.mark.integration

BLIKK_ANNA = 3  # Anna Lindqvist in the fake's seeded users
BLIKK_WEBSITE = 1  # "Website relaunch" in the fake's seeded projects


def blikk_section(sandbox: SandboxServer, **extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "base_url": sandbox.base_urls["blikk"],
        "app_id": sandbox.config.blikk_app_id,
        "app_secret": Secret(sandbox.config.blikk_app_secret),
        "defaults": {"activity_id": 1, "time_code_id": 1, "time_article_id": 1},
        "users": {USER_ANNA: {"user_id": BLIKK_ANNA}},
        "projects": {PROJECT_WEBSITE: {"project_id": BLIKK_WEBSITE}},
    }
    section.update(extra)
    return section


def blikk_runtime(settings: Settings, sandbox: SandboxServer, **extra: Any) -> Runtime:
    return Runtime(settings.with_changes(targets={"blikk": blikk_section(sandbox, **extra)}))


@pytest.fixture
def rt(settings: Settings, clean_sandbox: SandboxServer) -> Iterator[Runtime]:
    runtime = blikk_runtime(settings, clean_sandbox)
    yield runtime
    runtime.connector("blikk").close()
    runtime.redis.close()


def deliver(rt: Runtime, event: Envelope, **kwargs: Any) -> Outcome:
    return rt.engine("blikk").deliver(event, **kwargs)


def reports(sandbox: SandboxServer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sandbox.state()["blikk"]["timereports"]
    return sorted(result, key=lambda r: r["date"])


def by_date(sandbox: SandboxServer) -> dict[str, dict[str, Any]]:
    found = reports(sandbox)
    days = {r["date"]: r for r in found}
    assert len(days) == len(found), f"two reports on one day: {found}"
    return days


def summary(report: dict[str, Any]) -> tuple[str, str | None, str | None, float]:
    return report["date"], report["clockStart"], report["clockEnd"], report["hours"]


def timed(payload: dict[str, Any], start: str, end: str) -> dict[str, Any]:
    """The payload with a new UTC interval (start/end like ``2026-03-10T21:00:00Z``)."""
    changed = copy.deepcopy(payload)
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    finish = datetime.fromisoformat(end.replace("Z", "+00:00"))
    seconds = int((finish - begin).total_seconds())
    interval = dict(changed["timeInterval"])
    interval.update(start=start, end=end, duration=f"PT{seconds}S")
    for key in ("offsetStart", "offsetEnd", "zonedStart", "zonedEnd"):
        interval.pop(key, None)  # derived fields; the relay computes local time itself
    changed["timeInterval"] = interval
    return changed


def test_create_update_delete(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    created = deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert created.action == "applied"
    [report] = reports(clean_sandbox)
    # 08:00Z-09:30Z is 09:00-10:30 in Stockholm (CET) on 2026-03-10.
    assert summary(report) == ("2026-03-10", "09:00", "10:30", 1.5)
    assert report["invoiceableHours"] == 1.5
    assert report["comment"] == "Kickoff with Nordlys & design review <v2>"
    assert report["internalComment"] == f"clockify:{ENTRY_MAIN}"
    assert report["user"]["id"] == BLIKK_ANNA
    assert report["project"]["id"] == BLIKK_WEBSITE
    assert created.remote_ids == {"2026-03-10": str(report["id"])}

    updated = entry_payload("TIME_ENTRY_UPDATED")
    assert deliver(rt, envelope("TIME_ENTRY_UPDATED", updated, 2)).action == "applied"
    [after] = reports(clean_sandbox)
    assert after["id"] == report["id"]
    assert summary(after) == ("2026-03-10", "09:00", "11:00", 2.0)
    assert after["comment"].endswith("notes sent")

    assert deliver(rt, envelope("TIME_ENTRY_DELETED", updated, 3)).action == "deleted"
    assert reports(clean_sandbox) == []
    # A late duplicate of the create finds the tombstone: nothing comes back.
    assert deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1)).action == "skipped"
    assert reports(clean_sandbox) == []


def test_entry_across_midnight_in_stockholm_is_two_reports(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    # 22:15Z-23:45Z on 2026-03-10 is 23:15-00:45 in Stockholm: 45 minutes on each local day.
    # The first day ends at 23:59 on the clock (never "00:00", an end before the start); its
    # hours stay the exact 45 minutes.
    payload = entry_payload("NEW_TIME_ENTRY__midnight_stockholm")
    outcome = deliver(rt, envelope("NEW_TIME_ENTRY", payload, 1))
    days = by_date(clean_sandbox)
    assert [summary(r) for r in days.values()] == [
        ("2026-03-10", "23:15", "23:59", 0.75),
        ("2026-03-11", "00:00", "00:45", 0.75),
    ]
    assert all(r["internalComment"] == f"clockify:{ENTRY_MIDNIGHT}" for r in days.values())
    assert outcome.remote_ids == {day: str(r["id"]) for day, r in days.items()}

    assert deliver(rt, envelope("TIME_ENTRY_DELETED", payload, 2)).action == "deleted"
    assert reports(clean_sandbox) == []


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # 2026-03-29 02:00 CET → 03:00 CEST: 01:30-03:30 on the clock is one real hour.
        ("2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z", ("2026-03-29", "01:30", "03:30", 1.0)),
        # 2026-10-25 03:00 CEST → 02:00 CET: 01:30-03:30 on the clock is three real hours.
        ("2026-10-24T23:30:00Z", "2026-10-25T02:30:00Z", ("2026-10-25", "01:30", "03:30", 3.0)),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_entry_across_a_dst_change_books_real_hours(
    rt: Runtime,
    clean_sandbox: SandboxServer,
    start: str,
    end: str,
    expected: tuple[str, str, str, float],
) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", timed(entry_payload(), start, end), 1))
    [report] = reports(clean_sandbox)
    assert summary(report) == expected


def test_clock_reading_backwards_at_the_dst_fall_back_books_no_clock_times(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    # 2026-10-25 00:40Z-01:10Z is 02:40 CEST to 02:10 CET: half an hour that ends "before" it
    # starts on the clock. Blikk's clock times are optional: the report has none, hours exact.
    payload = timed(entry_payload(), "2026-10-25T00:40:00Z", "2026-10-25T01:10:00Z")
    deliver(rt, envelope("NEW_TIME_ENTRY", payload, 1))
    [report] = reports(clean_sandbox)
    assert summary(report) == ("2026-10-25", None, None, 0.5)


def test_edit_across_midnight_and_back_follows_one_two_one(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    # Stockholm is UTC+1 on 2026-03-10: 21:00Z is 22:00 local.
    before = timed(entry_payload(), "2026-03-10T21:00:00Z", "2026-03-10T22:30:00Z")
    across = timed(entry_payload(), "2026-03-10T21:00:00Z", "2026-03-11T00:00:00Z")

    deliver(rt, envelope("NEW_TIME_ENTRY", before, 1))
    [first] = reports(clean_sandbox)
    assert summary(first) == ("2026-03-10", "22:00", "23:30", 1.5)

    outcome = deliver(rt, envelope("TIME_ENTRY_UPDATED", across, 2))
    days = by_date(clean_sandbox)
    assert [summary(r) for r in days.values()] == [
        ("2026-03-10", "22:00", "23:59", 2.0),
        ("2026-03-11", "00:00", "01:00", 1.0),
    ]
    # The day that stayed was updated in place (PUT), the new day created (POST).
    assert days["2026-03-10"]["id"] == first["id"]
    assert days["2026-03-10"]["updatedDate"] is not None
    assert days["2026-03-11"]["id"] != first["id"]
    assert days["2026-03-11"]["updatedDate"] is None
    assert outcome.remote_ids == {day: str(r["id"]) for day, r in days.items()}

    outcome = deliver(rt, envelope("TIME_ENTRY_UPDATED", before, 3))
    [back] = reports(clean_sandbox)
    assert back["id"] == first["id"]
    assert summary(back) == ("2026-03-10", "22:00", "23:30", 1.5)
    assert outcome.remote_ids == {"2026-03-10": str(first["id"])}
    assert any(op.startswith("delete 2026-03-11") for op in outcome.operations)


def test_edit_to_another_day_moves_the_report(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    [first] = reports(clean_sandbox)
    moved = timed(entry_payload(), "2026-03-12T08:00:00Z", "2026-03-12T09:00:00Z")
    deliver(rt, envelope("TIME_ENTRY_UPDATED", moved, 2))
    [now] = reports(clean_sandbox)
    assert summary(now) == ("2026-03-12", "09:00", "10:00", 1.0)
    assert now["id"] != first["id"]


def _control(sandbox: SandboxServer, path: str) -> None:
    response = httpx.post(f"{sandbox.url}/_sandbox/blikk{path}")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("change", ["update", "delete"])
def test_attested_report_is_a_permanent_error_naming_it(
    rt: Runtime, clean_sandbox: SandboxServer, change: str
) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    [report] = reports(clean_sandbox)
    _control(clean_sandbox, f"/timereports/{report['id']}/attest")

    event_type = "TIME_ENTRY_UPDATED" if change == "update" else "TIME_ENTRY_DELETED"
    with pytest.raises(PermanentError) as info:
        deliver(rt, envelope(event_type, entry_payload("TIME_ENTRY_UPDATED"), 2))
    message = str(info.value)
    assert f"time report {report['id']}" in message
    assert "attested" in message
    assert f"cannot {change}" in message
    # The attested report is untouched, and still mapped: nothing was lost or doubled.
    [still] = reports(clean_sandbox)
    assert summary(still) == summary(report)


def test_gone_report_is_recreated_on_update(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    [report] = reports(clean_sandbox)
    clean_sandbox.sandbox.fakes["blikk"].reports.clear()  # type: ignore[attr-defined]
    outcome = deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload("TIME_ENTRY_UPDATED"), 2))
    [again] = reports(clean_sandbox)
    assert again["id"] != report["id"]
    assert outcome.remote_ids == {"2026-03-10": str(again["id"])}


def _impatient(settings: Settings, sandbox: SandboxServer, margin: float = 0.5) -> Runtime:
    # Requests time out after 0.5 s; a search for an unanswered create may run 0.5 s later.
    runtime = blikk_runtime(settings, sandbox, timeout=0.5, reconcile_margin=margin)
    # Take the access token now, so the injected fault hits the create and not the token call.
    runtime.connector("blikk").client.tokens.get()  # type: ignore[attr-defined]
    return runtime


def deliver_once_searchable(runtime: Runtime, event: Envelope) -> Outcome:
    """Deliver as the retries would: again while the engine says the unanswered create may
    still be in progress, until it may search."""

    def attempt() -> Outcome | None:
        try:
            return runtime.engine("blikk").deliver(event)
        except TransientError as exc:
            if "may still be in progress" not in exc.message:
                raise
            assert exc.retry_after is not None and exc.retry_after > 0
            return None

    outcome: Outcome = wait_until(attempt, timeout=10, what="the reconcile wait to pass")
    return outcome


def test_a_retry_does_not_search_while_the_unanswered_create_may_still_land(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    # Blikk takes 2 s to make the report; the client gives up after 0.5 s and the retry comes
    # at once. A search now would find nothing and book a second report.
    impatient = _impatient(settings, clean_sandbox, margin=2.0)
    clean_sandbox.inject_fault("blikk", latency=2.0, count=1)
    event = envelope("NEW_TIME_ENTRY", entry_payload(), 1)
    with pytest.raises(TransientError) as first:
        impatient.engine("blikk").deliver(event)
    assert first.value.outcome_unknown
    with pytest.raises(TransientError) as retry:
        impatient.engine("blikk").deliver(event)
    assert "may still be in progress" in retry.value.message
    assert retry.value.retry_after is not None and 1.0 < retry.value.retry_after <= 2.5
    assert reports(clean_sandbox) == []  # the first create has not landed yet

    outcome = deliver_once_searchable(impatient, event)
    [made] = reports(clean_sandbox)
    assert outcome.operations == [f"reconciled 2026-03-10 {made['id']}"]
    impatient.redis.close()


def test_create_with_unknown_outcome_is_reconciled_by_its_marker(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    impatient = _impatient(settings, clean_sandbox)
    # Blikk takes 1.5 s to answer the create; the client gives up after 0.5 s, but the report
    # is made.
    clean_sandbox.inject_fault("blikk", latency=1.5, count=1)
    event = envelope("NEW_TIME_ENTRY", entry_payload(), 1)
    with pytest.raises(TransientError) as info:
        impatient.engine("blikk").deliver(event)
    assert info.value.outcome_unknown
    wait_until(lambda: reports(clean_sandbox), timeout=10, what="the slow create to land")
    [made] = reports(clean_sandbox)

    outcome = deliver_once_searchable(impatient, event)
    assert outcome.action == "applied"
    assert outcome.operations == [f"reconciled 2026-03-10 {made['id']}"]
    assert outcome.remote_ids == {"2026-03-10": str(made["id"])}
    [only] = reports(clean_sandbox)
    assert only["id"] == made["id"]

    # From now on it is mapped like any other report: an update is a PUT of the same id.
    impatient.engine("blikk").deliver(
        envelope("TIME_ENTRY_UPDATED", entry_payload("TIME_ENTRY_UPDATED"), 2)
    )
    [updated] = reports(clean_sandbox)
    assert updated["id"] == made["id"]
    assert updated["hours"] == 2.0
    impatient.redis.close()


def test_a_delete_after_an_unanswered_create_finds_and_deletes_the_report(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    # Found by a chaos run: the create's answer is lost (a worker killed, a timeout), then the
    # entry is deleted. The delete must search for the report that was sent — it used to
    # search with an empty booking and dead-letter a configuration error, leaving the report.
    impatient = _impatient(settings, clean_sandbox)
    clean_sandbox.inject_fault("blikk", latency=1.5, count=1)
    with pytest.raises(TransientError):
        impatient.engine("blikk").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    wait_until(lambda: reports(clean_sandbox), timeout=10, what="the slow create to land")

    deleted = envelope("TIME_ENTRY_DELETED", entry_payload("TIME_ENTRY_DELETED"), 2)
    outcome = deliver_once_searchable(impatient, deleted)
    assert outcome.action == "deleted"
    assert reports(clean_sandbox) == []
    impatient.redis.close()


def test_create_with_unknown_outcome_that_never_landed_is_made_once(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    impatient = _impatient(settings, clean_sandbox)
    # The request is held and never reaches the fake's handler: nothing was created.
    clean_sandbox.inject_fault("blikk", timeout=2.0, count=1)
    event = envelope("NEW_TIME_ENTRY", entry_payload(), 1)
    with pytest.raises(TransientError) as info:
        impatient.engine("blikk").deliver(event)
    assert info.value.outcome_unknown
    assert reports(clean_sandbox) == []

    outcome = deliver_once_searchable(impatient, event)
    [made] = reports(clean_sandbox)
    assert outcome.operations == [f"create 2026-03-10 {made['id']}"]
    impatient.redis.close()


def test_unknown_outcome_across_midnight_reconciles_each_day(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    impatient = _impatient(settings, clean_sandbox)
    payload = entry_payload("NEW_TIME_ENTRY__midnight_stockholm")
    event = envelope("NEW_TIME_ENTRY", payload, 1)
    # The first day's create lands late; the second day is never attempted in that delivery.
    clean_sandbox.inject_fault("blikk", latency=1.5, count=1)
    with pytest.raises(TransientError):
        impatient.engine("blikk").deliver(event)
    wait_until(lambda: reports(clean_sandbox), timeout=10, what="the slow create to land")
    [made] = reports(clean_sandbox)

    outcome = deliver_once_searchable(impatient, event)
    days = by_date(clean_sandbox)
    assert list(days) == ["2026-03-10", "2026-03-11"]
    assert days["2026-03-10"]["id"] == made["id"]
    assert outcome.operations[0] == f"reconciled 2026-03-10 {made['id']}"
    impatient.redis.close()


def _bare_200(sandbox: SandboxServer) -> None:
    """Blikk answers creates and updates with the documented bare "200 OK" (no body)."""
    fake = sandbox.sandbox.fakes["blikk"]
    fake.set_write_response("empty")  # type: ignore[attr-defined]


def test_create_answered_without_body_is_mapped_not_doubled(
    rt: Runtime, clean_sandbox: SandboxServer
) -> None:
    _bare_200(clean_sandbox)
    payload = entry_payload("NEW_TIME_ENTRY__midnight_stockholm")
    outcome = deliver(rt, envelope("NEW_TIME_ENTRY", payload, 1))
    days = by_date(clean_sandbox)
    assert outcome.remote_ids == {day: str(r["id"]) for day, r in days.items()}
    assert len(days) == 2
    # A replay of the same create and a later update touch the same two reports.
    assert deliver(rt, envelope("NEW_TIME_ENTRY", payload, 1), force=True).action == "skipped"
    edited = dict(payload, description="edited")
    deliver(rt, envelope("TIME_ENTRY_UPDATED", edited, 2))
    after = by_date(clean_sandbox)
    assert {d: r["id"] for d, r in after.items()} == {d: r["id"] for d, r in days.items()}
    assert all(r["comment"] == "edited" for r in after.values())


def test_create_answered_without_body_and_not_found_stays_pending(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    _bare_200(clean_sandbox)
    rt = _impatient(settings, clean_sandbox)  # a pending create may be searched 1 s after
    # The POST passes (a latency-only fault answers normally); the marker search gets a 503.
    clean_sandbox.inject_fault("blikk", latency=0.01, count=1)
    clean_sandbox.inject_fault("blikk", status=503, count=1)
    event = envelope("NEW_TIME_ENTRY", entry_payload(), 1)
    with pytest.raises(TransientError) as info:
        deliver(rt, event)
    assert info.value.outcome_unknown
    state = rt.redis.hgetall(rt.keys.entry_state("blikk", ENTRY_MAIN))
    assert b"pending:2026-03-10" in state
    [made] = reports(clean_sandbox)

    # The retry finds the report by its marker instead of booking it again.
    outcome = deliver_once_searchable(rt, event)
    assert outcome.operations == [f"reconciled 2026-03-10 {made['id']}"]
    [only] = reports(clean_sandbox)
    assert only["id"] == made["id"]
    rt.redis.close()


def test_unmapped_user_is_a_configuration_error_naming_the_user(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    unmapped = blikk_runtime(settings, clean_sandbox, users={})
    with pytest.raises(ConfigurationError) as info:
        unmapped.engine("blikk").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    message = str(info.value)
    assert USER_ANNA in message
    assert "Anna Lindqvist" in message
    assert f'[targets.blikk.users."{USER_ANNA}"]' in message
    assert reports(clean_sandbox) == []
    # Nothing was left pending: once mapped, the same event creates normally.
    mapped = blikk_runtime(settings, clean_sandbox)
    outcome = mapped.engine("blikk").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    [made] = reports(clean_sandbox)
    assert outcome.operations == [f"create 2026-03-10 {made['id']}"]
    unmapped.redis.close()
    mapped.redis.close()


def test_unmapped_project_is_a_configuration_error_naming_the_project(
    settings: Settings, clean_sandbox: SandboxServer
) -> None:
    unmapped = blikk_runtime(settings, clean_sandbox, projects={})
    with pytest.raises(ConfigurationError) as info:
        unmapped.engine("blikk").deliver(envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert PROJECT_WEBSITE in str(info.value)
    assert "Website relaunch" in str(info.value)
    assert reports(clean_sandbox) == []
    unmapped.redis.close()


def test_expired_token_is_refreshed_once(rt: Runtime, clean_sandbox: SandboxServer) -> None:
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload(), 1))
    assert clean_sandbox.state()["blikk"]["tokens_issued"] == 1
    clean_sandbox.sandbox.fakes["blikk"].expire_tokens()  # type: ignore[attr-defined]
    deliver(rt, envelope("TIME_ENTRY_UPDATED", entry_payload("TIME_ENTRY_UPDATED"), 2))
    deliver(rt, envelope("NEW_TIME_ENTRY", entry_payload("NEW_TIME_ENTRY__midnight_stockholm"), 3))
    assert clean_sandbox.state()["blikk"]["tokens_issued"] == 2
    # Nothing lost: the update and both days of the new entry are booked.
    assert sorted(r["hours"] for r in reports(clean_sandbox)) == [0.75, 0.75, 2.0]
