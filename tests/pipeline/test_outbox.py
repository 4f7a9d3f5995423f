"""The outbox on a real Redis: nothing queued is lost, a backlog is never mistaken for loss."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest
import redis

from clockify_relay.pipeline.messages import DELIVER_TASK, deliver_message
from clockify_relay.pipeline.outbox import RELEASE_BATCH, Outbox, Outgoing
from clockify_relay.redis_conn import Keys

LOST_AFTER = 10.0
STALE_AFTER = 100.0


@pytest.fixture
def outbox(redis_client: redis.Redis, key_prefix: str) -> Outbox:
    return Outbox(redis_client, Keys(key_prefix))


def message(message_id: str, due: float | None = None) -> Outgoing:
    return Outgoing(
        message_id, deliver_message(message_id, ["everit", {"id": message_id}], {}), due
    )


def pop(outbox: Outbox) -> str:
    """Take the next message off the queue as kombu's BRPOP would; return its task id."""
    raw = outbox.client.rpop(outbox.keys.queue)
    assert raw is not None
    return str(orjson.loads(raw)["headers"]["id"])


def sweep(outbox: Outbox, now: float, max_resends: int = 3) -> tuple[list[str], list[str]]:
    result = outbox.sweep(
        lost_after=LOST_AFTER, stale_after=STALE_AFTER, max_resends=max_resends, now=now
    )
    return result.resent, sorted(result.given_up)


def test_a_message_taken_off_the_queue_but_never_received_is_queued_again(
    outbox: Outbox,
) -> None:
    outbox.commit([message("a"), message("b")])
    assert pop(outbox) == "a"  # a worker took it and died before kombu recorded it
    assert pop(outbox) == "b"
    outbox.received("b")
    now = time.time()
    assert sweep(outbox, now) == ([], [])  # the first sweep only marks where the queue was
    assert sweep(outbox, now + LOST_AFTER / 2) == ([], [])  # not long enough yet
    assert sweep(outbox, now + LOST_AFTER) == (["a"], [])
    assert pop(outbox) == "a"
    assert outbox.client.llen(outbox.keys.queue) == 0


def test_a_lost_message_is_found_with_nothing_queued_after_it(outbox: Outbox) -> None:
    # The last event of a quiet period: no later message ever passes it.
    outbox.commit([message("last")])
    pop(outbox)
    now = time.time()
    sweep(outbox, now)
    assert sweep(outbox, now + LOST_AFTER) == (["last"], [])


def test_a_backlog_older_than_the_deadline_is_not_queued_again(outbox: Outbox) -> None:
    outbox.commit([message(f"m{i}") for i in range(50)])
    now = time.time()
    for step in range(5):  # 5 deadlines pass; no worker takes anything
        assert sweep(outbox, now + step * LOST_AFTER) == ([], [])
    # Workers come back and drain the backlog in order: nothing was doubled.
    taken = []
    for _ in range(50):
        taken.append(pop(outbox))
        outbox.received(taken[-1])
    assert taken == [f"m{i}" for i in range(50)]
    assert sweep(outbox, now + 10 * LOST_AFTER) == ([], [])
    assert outbox.client.llen(outbox.keys.queue) == 0


def test_a_message_done_is_forgotten_and_never_queued_again(outbox: Outbox) -> None:
    outbox.commit([message("a")])
    pop(outbox)
    outbox.received("a")
    outbox.commit([message("a-retry")], done="a")
    assert outbox.client.hkeys(outbox.keys.outbox()) == ["a-retry"]
    now = time.time()
    sweep(outbox, now)
    assert sweep(outbox, now + STALE_AFTER * 2) == ([], [])  # only a-retry, still queued


def test_a_message_received_but_never_done_is_queued_again_after_the_stale_deadline(
    outbox: Outbox,
) -> None:
    outbox.commit([message("held")])
    pop(outbox)
    now = time.time()
    outbox.received("held", now=now)
    assert sweep(outbox, now + STALE_AFTER - 1) == ([], [])
    assert sweep(outbox, now + STALE_AFTER + 1) == (["held"], [])


def test_a_message_lost_again_and_again_is_given_up_and_kept_for_the_dead_letter_queue(
    outbox: Outbox,
) -> None:
    outbox.commit([message("poison")])
    now = time.time()
    for turn in range(3):
        pop(outbox)  # taken, never received (say the worker cannot decode it)
        assert sweep(outbox, now, max_resends=2) == ([], [])  # marks that it left the queue
        expected = (["poison"], []) if turn < 2 else ([], ["poison"])
        assert sweep(outbox, now + LOST_AFTER, max_resends=2) == expected
        now += 2 * LOST_AFTER
    assert outbox.client.llen(outbox.keys.queue) == 0
    # The message stays until the caller has dead-lettered it and said it is done.
    assert outbox.client.hexists(outbox.keys.outbox(), "poison")
    outbox.commit(done="poison")
    assert outbox.pending() == 0


def test_once_writes_the_fan_out_only_the_first_time(outbox: Outbox) -> None:
    once = (f"{outbox.keys.prefix}routed:e1", 60)
    assert outbox.commit([message("d1"), message("d2")], done="route-1", once=once) == 2
    assert outbox.commit([message("d3")], done="route-1-again", once=once) == -1
    assert outbox.client.llen(outbox.keys.queue) == 2


def test_parked_messages_are_queued_when_due_and_only_then(outbox: Outbox) -> None:
    now = time.time()
    outbox.commit([message("soon", due=now), message("later", due=now + 3600)])
    assert outbox.client.llen(outbox.keys.queue) == 0
    assert outbox.release_due(now) == 1
    assert pop(outbox) == "soon"
    outbox.commit(done="soon")
    assert outbox.release_due(now) == 0
    # A parked message is neither waiting nor received: no sweep takes it for lost.
    sweep(outbox, now)
    assert sweep(outbox, now + STALE_AFTER * 2) == ([], [])
    assert outbox.release_due(now + 3601) == 1
    assert pop(outbox) == "later"


def test_release_handles_more_than_one_batch(outbox: Outbox) -> None:
    now = time.time()
    outbox.commit([message(f"p{i}", due=now) for i in range(RELEASE_BATCH + 7)])
    assert outbox.release_due(now) == RELEASE_BATCH + 7
    assert outbox.client.llen(outbox.keys.queue) == RELEASE_BATCH + 7


def test_deliver_messages_carry_their_id_and_eta_for_celery() -> None:
    eta = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)
    raw = orjson.loads(deliver_message("abc", ["everit", {"x": 1}], {"attempt": 2}, eta=eta))
    assert raw["headers"]["task"] == DELIVER_TASK
    assert raw["headers"]["id"] == "abc"
    assert raw["headers"]["eta"] == "2026-11-23T12:00:05+00:00"
    args, kwargs, _ = orjson.loads(raw["body"])
    assert args == ["everit", {"x": 1}]
    assert kwargs == {"attempt": 2}
