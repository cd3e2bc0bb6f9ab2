"""The replay guard: a signature's first delivery runs once; repeats get its answer; refusals are forgotten."""

from __future__ import annotations

import copy
import time

import fakeredis
import pytest

from tests.unit.fakes import FakeClock
from tests.unit.intake_fixtures import make_intake, sample
from worker.errors import FirstDeliveryPending
from worker.intake.auth import SignedDelivery
from worker.intake.replays import PENDING_LEASE_SECONDS, WAIT_FOR_FIRST_SECONDS, SeenSignatures

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


def test_a_signature_is_remembered_as_long_as_any_intake_could_still_accept_it() -> None:
    redis, clock = fakeredis.FakeRedis(), FakeClock()
    stamp = int(clock.time()) + TOLERANCE  # a sender whose clock runs 300 s ahead: accepted for 600 s from now
    guard(redis, clock).once(SignedDelivery("cd" * 32, stamp), lambda: "answer")
    ttl = int(redis.pttl("t:sig:" + "cd" * 32)) / 1000
    assert 2 * TOLERANCE + 30 <= ttl <= 2 * TOLERANCE + 120  # plus a margin for intakes whose clocks differ


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
    intake = make_intake(refused_enqueues={0})
    stamp = time.time()
    first = intake.post_signed("/v1/alerts/sumologic", sample("sumologic.json"), timestamp=stamp)
    again = intake.post_signed("/v1/alerts/sumologic", sample("sumologic.json"), timestamp=stamp)
    assert first.status_code >= 500
    assert again.status_code == 202, again.text
    assert intake.enqueued == [again.json()["job_id"]]


def test_a_batch_refused_half_way_and_replayed_with_a_fresh_key_makes_each_event_once() -> None:
    """Okta posts two events; the broker takes the first job and refuses the second. A replay of the captured
    request with a new Idempotency-Key must not make the first event's job again."""
    intake = make_intake({"BOXCUT_OKTA_EVENT_TYPES": "user.lifecycle.deactivate,user.account.lock"},
                         refused_enqueues={1})
    hook = sample("okta-event-hook.json")
    second = copy.deepcopy(hook["data"]["events"][0]) | {"uuid": "second-event-uuid"}
    second["target"] = [{"type": "User", "alternateId": "rroe@example.com"}]
    hook["data"]["events"] = [hook["data"]["events"][0], second]
    stamp = time.time()
    first = intake.post_signed("/v1/alerts/okta", hook, timestamp=stamp, headers={"Idempotency-Key": "k1"})
    again = intake.post_signed("/v1/alerts/okta", hook, timestamp=stamp, headers={"Idempotency-Key": "k2"})
    assert first.status_code >= 500 and again.status_code == 202, again.text
    made = [j["job_id"] for j in again.json()["jobs"]]
    assert [j["duplicate"] for j in again.json()["jobs"]] == [True, False]
    assert intake.enqueued == made  # each event's job enqueued once, none twice
