"""The event-stream reader on fakeredis with a scripted stream: positions kept only after their events, Box's
repeats and empty pages, a position too old, the lock, Shield alerts as jobs, and the watch after termination."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest

from config.shield_rules import DEFAULT_RULES
from worker.box.answers import EventPage
from worker.errors import BoxPermanentError
from worker.event_stream.cursor import StreamCursor
from worker.event_stream.reader import EventReader
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.model import TargetStatus
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job, submit
from worker.locks import RedisLock
from worker.transactions import GuardedWrite

JDOE = "17738362"


class ScriptedStream:
    """A stream of pages: position N reads page N (positions are page numbers); `now` is past the last."""

    def __init__(self, *pages: list[dict[str, Any]], refuse: dict[str, BoxPermanentError] | None = None) -> None:
        self.pages = list(pages)
        self.asked: list[str] = []
        self.refuse = refuse or {}

    def admin_events(self, stream_position: str, *, limit: int) -> EventPage:
        self.asked.append(stream_position)
        if stream_position in self.refuse:
            raise self.refuse.pop(stream_position)
        if stream_position == "now":
            return EventPage([], str(len(self.pages)))
        index = int(stream_position)
        if index >= len(self.pages):
            return EventPage([], stream_position)
        return EventPage(self.pages[index], str(index + 1))


def shield(event_id: str, category: str = "Ransomware Activity", user_id: int = 17738362) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "SHIELD_ALERT", "created_by": {"id": "2"},
            "additional_details": {"shield_alert": {"rule_category": category, "priority": "high",
                                                    "risk_score": 90, "user": {"id": user_id}}}}


def by_user(event_id: str, user_id: str, at: float, **more: Any) -> dict[str, Any]:
    created = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
    return {"event_id": event_id, "event_type": "LOGIN", "created_by": {"id": user_id, "login": "x"},
            "created_at": created, **more}


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(), key_prefix="t:", watch_seconds=1800)


def reader(store: JobStore, stream: ScriptedStream, enqueued: list[str] | None = None) -> EventReader:
    sink = enqueued if enqueued is not None else []
    return EventReader(box=stream, store=store, cursor=StreamCursor(store.redis, key_prefix="t:"),
                       keys=IdempotencyKeys(store.redis, key_prefix="t:", ttl_seconds=86400),
                       enqueue=sink.append, rules=DEFAULT_RULES)


def shield_jobs(store: JobStore) -> list[str]:
    return [j.job_id for j in store.list_jobs(source="box-shield")[0]]


def test_a_first_pass_starts_from_now_and_reads_nothing_older(store: JobStore) -> None:
    stream = ScriptedStream([shield("old-1")])
    report = reader(store, stream).read()
    assert stream.asked[0] == "now" and report.restarted == "first"
    assert shield_jobs(store) == []
    status = StreamCursor(store.redis, key_prefix="t:").status()
    assert status.position == "1" and status.restart_why is not None and "reading begins now" in status.restart_why


def test_alerts_become_jobs_once_through_repeats_empty_pages_and_a_second_pass(store: JobStore) -> None:
    stream = ScriptedStream([shield("a-1")], [], [shield("a-2"), shield("a-1")], [shield("a-2", "Anomalous Download")])
    cursor = StreamCursor(store.redis, key_prefix="t:")
    cursor.save("0", events=0)
    enqueued: list[str] = []
    first = reader(store, stream, enqueued).read()
    assert (first.pages, first.alerts) == (5, 2)  # four pages, then an empty one at the end: caught up
    assert cursor.position() == "4"
    assert len(shield_jobs(store)) == 2 and len(enqueued) == 2
    cursor.save("0", events=0)  # as if a crash lost the position: the stream is read again
    again = reader(store, stream, enqueued).read()
    assert again.alerts == 0 and len(shield_jobs(store)) == 2 and len(enqueued) == 2


def test_a_failure_mid_pass_keeps_the_position_of_the_last_page_handled(store: JobStore) -> None:
    def boom(_job_id: str) -> None:
        raise RuntimeError("broker down")

    stream = ScriptedStream([shield("b-1", "A Category Box Adds Later", 1)], [shield("b-2")])
    cursor = StreamCursor(store.redis, key_prefix="t:")
    cursor.save("0", events=0)
    event_reader = reader(store, stream)
    event_reader.enqueue = boom
    with pytest.raises(Exception, match="broker"):
        event_reader.read()
    assert cursor.position() == "1"  # page 0 (an alert recorded only, nothing to enqueue) is done; page 1 is not
    assert cursor.status().last_problem is not None and "broker" in cursor.status().last_problem
    assert len(shield_jobs(store)) == 2  # page 1's job ended cancelled, and its claim was let go
    reader(store, stream).read()
    states = sorted(store.load(j).state.value for j in shield_jobs(store))
    assert states == ["cancelled", "queued", "recorded"]


def test_a_position_older_than_box_keeps_starts_again_from_now_and_says_so(store: JobStore) -> None:
    stream = ScriptedStream([shield("c-1")], [shield("c-2")])
    cursor = StreamCursor(store.redis, key_prefix="t:", clock=lambda: time.time() - 14 * 86400)
    cursor.save("0", events=0)
    report = reader(store, stream).read()
    assert report.restarted == "too_old" and stream.asked[0] == "now"
    assert shield_jobs(store) == []
    assert "older than Box keeps" in (StreamCursor(store.redis, key_prefix="t:").status().restart_why or "")


def test_a_position_box_refuses_starts_again_from_now(store: JobStore) -> None:
    refused = BoxPermanentError(endpoint="/events", status=400, code="bad_request", message="Bad Request",
                                 request_id=None)
    stream = ScriptedStream([shield("d-1")], refuse={"0": refused})
    StreamCursor(store.redis, key_prefix="t:").save("0", events=0)
    assert reader(store, stream).read().restarted == "refused"
    assert stream.asked[:2] == ["0", "now"]


def test_box_refusing_the_stream_is_noted_for_doctor_and_the_position_kept(store: JobStore) -> None:
    refused = BoxPermanentError(endpoint="/events", status=403, code="access_denied_insufficient_permissions",
                                 message=None, request_id=None)
    stream = ScriptedStream([shield("e-1")], refuse={"0": refused})
    cursor = StreamCursor(store.redis, key_prefix="t:")
    cursor.save("0", events=0)
    with pytest.raises(BoxPermanentError):
        reader(store, stream).read()
    assert cursor.position() == "0"
    assert "Run new reports and access existing reports" in (cursor.status().last_problem or "")


def test_one_reader_at_a_time(store: JobStore) -> None:
    stream = ScriptedStream([shield("f-1")])
    StreamCursor(store.redis, key_prefix="t:").save("0", events=0)
    holder = RedisLock(store.redis, "t:events:lock", ttl_ms=60_000)
    assert holder.acquire()
    assert reader(store, stream).read().held_elsewhere and stream.asked == []
    holder.release()
    assert reader(store, stream).read().alerts == 1


def accepted_job(store: JobStore, user_id: str = JDOE) -> str:
    job = build_job(JobRequest(targets=[{"type": "user", "id": user_id}], source="splunk"))
    submit(store=store, enqueue=lambda _j: None, job=job)
    target = store.load(job.job_id).targets[0]
    target.user_id, target.status = user_id, TargetStatus.ACCEPTED
    write = GuardedWrite()
    store.stage_targets(write, job.job_id, {0: target}, event="answered")
    write.apply(store.redis)
    return job.job_id


def test_the_watch_records_the_users_own_events_after_acceptance_once_each(store: JobStore) -> None:
    job_id = accepted_job(store)
    now = time.time()
    stream = ScriptedStream([
        by_user("g-1", JDOE, now + 120, session_id="s-9", ip_address="203.0.113.9"),
        by_user("g-2", "99", now + 120),  # another user
        by_user("g-3", JDOE, now - 3600),  # before the termination
        by_user("g-4", JDOE, now + 3 * 3600),  # after the watch
        by_user("g-1", JDOE, now + 120, session_id="s-9", ip_address="203.0.113.9"),  # Box's repeat
    ])
    StreamCursor(store.redis, key_prefix="t:").save("0", events=0)
    assert reader(store, stream).read().activity == 1
    job = store.load(job_id)
    assert job.active_after and job.watch_until is not None
    (seen,) = job.to_dict()["targets"][0]["activity_after"]
    assert (seen["event_id"], seen["event_type"], seen["session_id"], seen["ip_address"]) == (
        "g-1", "LOGIN", "s-9", "203.0.113.9")
    assert 118 <= seen["seconds_after"] <= 121
    assert [j.job_id for j in store.list_jobs(state="active-after")[0]] == [job_id]
    assert [e["event"] for e in store.audit_entries(job_id=job_id)].count("activity_after") == 1
    StreamCursor(store.redis, key_prefix="t:").save("0", events=0)
    assert reader(store, stream).read().activity == 0  # read again: nothing twice


def test_no_watch_without_a_watch_length_and_no_flag_without_activity() -> None:
    unwatched = JobStore(fakeredis.FakeRedis(), key_prefix="t:", watch_seconds=0)
    job_id = accepted_job(unwatched)
    assert unwatched.watched(now_ms=int(time.time() * 1000)) == []
    job = unwatched.load(job_id)
    assert (job.watch_until, job.active_after, job.to_dict()["active_after"]) == (None, False, False)
    assert job.to_dict()["targets"][0]["activity_after"] == []


def test_a_removed_job_takes_its_activity_and_listing_with_it(store: JobStore) -> None:
    job_id = accepted_job(store)
    assert store.note_activity(job_id, 0, {"event_id": "h-1", "event_type": "LOGIN"})
    store.remove(job_id)
    assert store.list_jobs(state="active-after")[0] == []
    assert not store.redis.exists(f"t:job:{job_id}:activity")
    assert not store.note_activity(job_id, 0, {"event_id": "h-2"})  # a job that is gone records nothing
