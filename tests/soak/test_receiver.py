"""The soak's notification receiver, against boxcut's own scanner and delivery code (fakeredis for the store, real
HTTP to the receiver): it takes boxcut's signed notices, refuses for a while when told, refuses what is not
signed, and what it records satisfies the notification invariant, or shows the notice missing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace

import fakeredis
import pytest
import requests

from config.notify_urls import NotifyURL
from config.secret import Secret
from tests.soak.invariants import Notifying, World, jobs_are_notified
from tests.soak.receiver import NoticeReceiver, notify_env
from worker.jobs.model import JobState
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job
from worker.notify.delivery import Notifier, http_post
from worker.notify.notice import Notice
from worker.notify.scanner import NotifyScanner
from worker.signing import signature

SECRET = "soak-notify-secret-0123456789"


@pytest.fixture
def receiver() -> Iterator[NoticeReceiver]:
    with NoticeReceiver(SECRET) as running:
        yield running


class Boxcut:
    """boxcut's notification path on a fake Redis: jobs moved through states, the scanner's pass, and each
    delivery attempted until it is final."""

    def __init__(self, url: str) -> None:
        self.store = JobStore(fakeredis.FakeRedis(), key_prefix="soak:")
        self.queued: list[Notice] = []
        urls = (NotifyURL(url),)
        self.scanner = NotifyScanner(store=self.store, urls=urls, enqueue=self.queued.append)
        self.notifier = Notifier(store=self.store, urls=urls, secret=Secret(SECRET), public_url=None,
                                 post=http_post(requests.Session()), retry_seconds=0.0, max_attempts=3)
        self.scanner.scan()  # the first pass: at the stream's end

    def job(self, *states: JobState) -> str:
        job = build_job(JobRequest(targets=[{"type": "user", "login": "jdoe@example.com"}], source="soak",
                                   reason="soak", requested_by="pytest"))
        self.store.create(job)
        for state in states:
            self.store.transition(job.job_id, to=state, allowed_from=list(JobState))
        return job.job_id

    def deliver(self) -> list[str]:
        """Scan, then attempt every queued notice until its delivery is final; each attempt's status."""
        self.scanner.scan()
        statuses = []
        while self.queued:
            notice = self.queued.pop(0)
            attempted = self.notifier.attempt(notice)
            statuses.append(attempted.status)
            if attempted.retry_in is not None:
                self.queued.append(notice)
        return statuses

    def world(self, receiver: NoticeReceiver) -> World:
        ids = [r.job_id for r in self.store.list_jobs(limit=100)[0]]
        jobs = {job_id: self.store.load(job_id) for job_id in ids}
        return World(answered=[], jobs=jobs, trails={j: self.store.audit_entries(job_id=j) for j in jobs},
                     requests=[], notify=Notifying(receivers=(receiver.url,), attempts=3),
                     notices=receiver.notices())


def test_boxcuts_notices_are_taken_signed_and_satisfy_the_invariant(receiver: NoticeReceiver) -> None:
    boxcut = Boxcut(receiver.url)
    waited = boxcut.job(JobState.RESOLVING, JobState.AWAITING_APPROVAL, JobState.TERMINATING, JobState.SUCCEEDED)
    cancelled = boxcut.job(JobState.CANCELLED)
    dry = boxcut.job(JobState.RESOLVING, JobState.DRY_RUN)
    boxcut.job(JobState.RESOLVING)  # not settled: owes nothing
    assert boxcut.deliver() == ["delivered"] * 4
    got = receiver.notices()
    assert [(n["status"], n["signed"]) for n in got] == [(200, True)] * 4
    assert {(n["body"]["job_id"], n["body"]["type"], n["body"]["state"]) for n in got} == {
        (waited, "boxcut.job.awaiting_approval", "awaiting_approval"), (waited, "boxcut.job.finished", "succeeded"),
        (cancelled, "boxcut.job.finished", "cancelled"), (dry, "boxcut.job.finished", "dry_run")}
    assert all(n["receiver"] == receiver.url and n["headers"]["user-agent"] == "boxcut-notify/1" for n in got)
    world = boxcut.world(receiver)
    assert list(jobs_are_notified(world)) == []
    lost = [n for n in world.notices if n["body"]["job_id"] != dry]
    (missing,) = jobs_are_notified(replace(world, notices=lost))
    assert (missing.invariant, missing.subject) == ("notified", dry)
    assert "dry_run" in missing.detail and "delivered after 1 attempts" in missing.detail


def test_a_receiver_told_to_refuse_answers_500_that_many_times_then_takes_the_notice(
        receiver: NoticeReceiver) -> None:
    boxcut = Boxcut(receiver.url)
    job_id = boxcut.job(JobState.CANCELLED)
    receiver.refuse(times=2)
    assert boxcut.deliver() == ["retrying", "retrying", "delivered"]
    assert [n["status"] for n in receiver.notices()] == [500, 500, 200]
    assert len({n["body"]["id"] for n in receiver.notices()}) == 1
    assert list(jobs_are_notified(boxcut.world(receiver))) == []
    # Refused more often than its attempts: the delivery fails, and the invariant names the job.
    again = boxcut.job(JobState.FAILED)
    receiver.refuse(times=5)
    assert boxcut.deliver() == ["retrying", "retrying", "failed"]
    named = [(v.invariant, v.subject) for v in jobs_are_notified(boxcut.world(receiver))]
    assert named == [("notified", again)] and job_id != again


def test_a_receiver_told_to_refuse_for_a_while_refuses_every_post_until_then(receiver: NoticeReceiver) -> None:
    receiver.refuse(seconds=0.5)
    assert _post(receiver, {"id": "a"}).status_code == 500
    assert _post(receiver, {"id": "a"}).status_code == 500
    time.sleep(0.6)
    assert _post(receiver, {"id": "a"}).status_code == 200


def test_a_post_not_signed_with_the_secret_or_not_json_is_refused_and_recorded(receiver: NoticeReceiver) -> None:
    assert _post(receiver, {"id": "x"}, secret="another-secret").status_code == 401
    assert _post(receiver, {"id": "x"}, stamp=str(int(time.time()) - 600)).status_code == 401  # stale
    assert _post(receiver, b"not json").status_code == 400
    assert [(n["status"], n["signed"], n["body"]) for n in receiver.notices()] == [
        (401, False, {"id": "x"}), (401, False, {"id": "x"}), (400, True, None)]


def test_notify_env_names_the_receiver_and_soak_timings() -> None:
    env = notify_env("http://127.0.0.1:1/notify", SECRET)
    assert env["BOXCUT_NOTIFY_URLS"] == "http://127.0.0.1:1/notify" and env["BOXCUT_NOTIFY_HMAC_SECRET"] == SECRET
    assert float(env["BOXCUT_NOTIFY_RETRY_SECONDS"]) < 10 and int(env["BOXCUT_NOTIFY_ATTEMPTS"]) >= 2


def _post(receiver: NoticeReceiver, body: dict[str, str] | bytes, *, secret: str = SECRET,
          stamp: str | None = None) -> requests.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = stamp or str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Boxcut-Timestamp": stamp,
               "X-Boxcut-Signature": signature(secret, stamp, raw)}
    return requests.post(receiver.url, data=raw, headers=headers, timeout=5)
