"""The replay guard: a signature's first delivery runs once; repeats get its answer; refusals are forgotten."""

from __future__ import annotations

import time

import fakeredis
import pytest

from tests.unit.fakes import FakeClock
from tests.unit.intake_fixtures import make_intake, sample
from worker.intake.auth import SignedDelivery
from worker.intake.replays import (
    PENDING_LEASE_SECONDS,
    WAIT_FOR_FIRST_SECONDS,
    FirstDeliveryPending,
    SeenSignatures,
)

TOLERANCE = 300


def guard(redis: fakeredis.FakeRedis, clock: FakeClock) -> SeenSignatures:
    return SeenSignatures(redis, key_prefix="t:", tolerance_seconds=TOLERANCE, clock=clock.time, sleep=clock.sleep)


def test_the_first_delivery_runs_and_a_repeat_gets_its_answer_without_running() -> None:
    redis, clock = fakeredis.FakeRedis(), FakeClock()
    seen = guard(redis, clock)
    delivery = SignedDelivery("ab" * 32, int(clock.time()))
    runs: list[str] = []
    assert seen.once(delivery, lambda: runs.append("first") or "answer-1") == ("answer-1", False)
    assert seen.once(delivery, lambda: runs.append("again") or "answer-2") == ("answer-1", True)
    assert runs == ["first"]


def test_a_signature_is_remembered_until_its_window_closes() -> None:
    redis, clock = fakeredis.FakeRedis(), FakeClock()
    stamp = int(clock.time()) + 100  # a sender whose clock runs 100 s ahead: its window closes 400 s from now
    guard(redis, clock).once(SignedDelivery("cd" * 32, stamp), lambda: "answer")
    ttl = int(redis.pttl("t:sig:" + "cd" * 32)) / 1000
    assert TOLERANCE + 100 <= ttl <= TOLERANCE + 100 + 10


def test_a_refused_delivery_is_not_seen() -> None:
    redis, clock = fakeredis.FakeRedis(), FakeClock()
    seen = guard(redis, clock)
    delivery = SignedDelivery("ef" * 32, int(clock.time()))

    def refuse() -> str:
        raise RuntimeError("the broker refused it")

    with pytest.raises(RuntimeError):
        seen.once(delivery, refuse)
    assert seen.once(delivery, lambda: "second try") == ("second try", False)


def test_a_repeat_while_the_first_is_being_accepted_waits_then_is_told_to_retry() -> None:
    redis, clock = fakeredis.FakeRedis(), FakeClock()
    seen = guard(redis, clock)
    delivery = SignedDelivery("01" * 32, int(clock.time()))
    told: list[FirstDeliveryPending] = []

    def first_while_a_repeat_arrives() -> str:
        with pytest.raises(FirstDeliveryPending) as pending:
            seen.once(delivery, lambda: "never run")
        told.append(pending.value)
        return "first"

    assert seen.once(delivery, first_while_a_repeat_arrives) == ("first", False)
    assert told[0].retry_after > 0 and sum(clock.sleeps) >= WAIT_FOR_FIRST_SECONDS
    assert seen.once(delivery, lambda: "never run") == ("first", True)


def test_a_first_delivery_holds_the_signature_only_for_a_short_lease_while_it_runs() -> None:
    """So an intake that dies mid-delivery frees the signature for the sender's retry within the lease."""
    redis, clock = fakeredis.FakeRedis(), FakeClock()
    key = "t:sig:" + "23" * 32
    held: list[int] = []
    guard(redis, clock).once(SignedDelivery("23" * 32, int(clock.time())),
                             lambda: held.append(int(redis.pttl(key))) or "answer")
    assert 0 < held[0] <= PENDING_LEASE_SECONDS * 1000
    assert int(redis.pttl(key)) > PENDING_LEASE_SECONDS * 1000  # the answer is kept for the window


def test_a_signed_delivery_the_broker_refused_is_accepted_when_sent_again() -> None:
    intake = make_intake(broker_refusals=1)
    stamp = time.time()
    first = intake.post_signed("/v1/alerts/sumologic", sample("sumologic.json"), timestamp=stamp)
    again = intake.post_signed("/v1/alerts/sumologic", sample("sumologic.json"), timestamp=stamp)
    assert first.status_code >= 500
    assert again.status_code == 202, again.text
    assert intake.enqueued == [again.json()["job_id"]]
