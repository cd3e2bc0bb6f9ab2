"""Replays of signed requests: a signature's content decides de-duplication; refused deliveries are not kept."""

from __future__ import annotations

import copy
import time

import fakeredis

from config import defaults
from tests.unit.intake_fixtures import make_intake, sample
from worker.jobs.idempotency import IdempotencyKeys


def test_a_replay_with_fresh_idempotency_keys_gets_the_first_jobs_and_makes_none() -> None:
    intake = make_intake()
    stamp = time.time()
    first = intake.post_signed("/v1/alerts/sumologic", sample("sumologic.json"), timestamp=stamp,
                               headers={"Idempotency-Key": "k1"})
    again = intake.post_signed("/v1/alerts/sumologic", sample("sumologic.json"), timestamp=stamp,
                               headers={"Idempotency-Key": "k2"})
    bare = intake.post_signed("/v1/alerts/sumologic", sample("sumologic.json"), timestamp=stamp)
    assert (first.status_code, again.status_code, bare.status_code) == (202, 200, 200)
    assert again.json()["job_id"] == bare.json()["job_id"] == first.json()["job_id"]
    assert again.json()["duplicate"] is True and intake.enqueued == [first.json()["job_id"]]


def test_event_keys_outlive_every_signature_that_could_still_be_accepted() -> None:
    redis = fakeredis.FakeRedis()
    keys = IdempotencyKeys(redis, key_prefix="t:", ttl_seconds=60)  # the smallest the setting allows
    keys.claim(source="s", event_key="e", job_id="j-1")
    [key] = redis.keys("t:idem:*")
    assert int(redis.ttl(key)) >= 2 * defaults.HMAC_TOLERANCE_SECONDS


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
