"""The scanner on fakeredis: it follows the audit stream from its end, enqueues a delivery per receiver for each
job that comes to wait for approval or ends (and for nothing else), once each however often an entry is read,
and keeps its position only past entries whose deliveries are enqueued."""

from __future__ import annotations

from dataclasses import replace

import fakeredis
import pytest

from config.notify_urls import NotifyURL
from tests.unit.notify.helpers import GENERIC, SLACK, move, new_job
from worker.jobs.model import JobState
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job
from worker.locks import RedisLock
from worker.notify.notice import Notice
from worker.notify.records import Delivery, DeliveryRecords
from worker.notify.scanner import NotifyScanner


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(), key_prefix="t:")


def scanner(store: JobStore, sink: list[Notice], urls: tuple[NotifyURL, ...] = (GENERIC, SLACK)) -> NotifyScanner:
    return NotifyScanner(store=store, urls=urls, enqueue=sink.append)


def test_the_first_pass_starts_at_the_streams_end_and_sends_nothing_for_history(store: JobStore) -> None:
    old = new_job(store)
    move(store, old, JobState.RESOLVING, JobState.AWAITING_APPROVAL)
    sent: list[Notice] = []
    assert scanner(store, sent).scan().started
    assert scanner(store, sent).scan().notices == 0 and sent == []
    move(store, old, JobState.CANCELLED)
    report = scanner(store, sent).scan()
    assert report.notices == 2 and [(n.job_id, n.event, n.state, n.url_index) for n in sent] == [
        (old, "finished", "cancelled", 0), (old, "finished", "cancelled", 1)]


def test_a_first_pass_over_an_empty_stream_then_reads_everything_after_it(store: JobStore) -> None:
    sent: list[Notice] = []
    assert scanner(store, sent).scan().started
    job_id = new_job(store)
    move(store, job_id, JobState.RESOLVING, JobState.TERMINATING, JobState.SUCCEEDED)
    scanner(store, sent).scan()
    assert {(n.event, n.state) for n in sent} == {("finished", "succeeded")}


def test_it_picks_awaiting_approval_and_final_states_and_ignores_the_rest(store: JobStore) -> None:
    sent: list[Notice] = []
    scanner(store, sent).scan()
    job_id = new_job(store)
    store.set_fields(job_id, {"blast_radius": "40"}, event="blast_radius")
    move(store, job_id, JobState.RESOLVING, JobState.AWAITING_APPROVAL, JobState.RESOLVING, JobState.TERMINATING,
         JobState.PARTIAL)
    report = scanner(store, sent, urls=(GENERIC,)).scan()
    assert [(n.event, n.state) for n in sent] == [("awaiting_approval", "awaiting_approval"), ("finished", "partial")]
    assert report.entries == 7  # created, blast_radius, five moves
    records = store.load(job_id).notifications
    assert [(r["event"], r["status"], r["attempts"]) for r in records] == [
        ("awaiting_approval", "queued", 0), ("finished", "queued", 0)]
    assert records[0]["url"] == "https://receiver.example.com/…" and "s3cr3t" not in str(records)


def test_a_recorded_job_is_not_notified(store: JobStore) -> None:
    sent: list[Notice] = []
    scanner(store, sent).scan()
    store.create(build_job(JobRequest(targets=[{"type": "user", "id": "1"}], source="box-shield",
                                      record_only="recorded only")))
    assert scanner(store, sent).scan().notices == 0 and sent == []


def test_an_entry_read_again_is_never_enqueued_again(store: JobStore) -> None:
    sent: list[Notice] = []
    scanner(store, sent).scan()
    job_id = new_job(store)
    move(store, job_id, JobState.RESOLVING, JobState.AWAITING_APPROVAL)
    start = store.redis.get("t:notify:cursor")
    scanner(store, sent).scan()
    store.redis.set("t:notify:cursor", start)  # as if the position had not been kept
    assert scanner(store, sent).scan().notices == 0
    assert len(sent) == 2


def test_a_failed_enqueue_keeps_the_position_before_it_and_the_next_pass_sends_it(store: JobStore) -> None:
    sent: list[Notice] = []
    scanner(store, sent).scan()
    first, second = new_job(store), new_job(store)
    move(store, first, JobState.CANCELLED)
    move(store, second, JobState.CANCELLED)

    def broker_down(notice: Notice) -> None:
        if notice.job_id == second:
            raise ConnectionError("broker down")
        sent.append(notice)

    with pytest.raises(ConnectionError):
        NotifyScanner(store=store, urls=(GENERIC,), enqueue=broker_down).scan()
    assert [n.job_id for n in sent] == [first]
    assert not DeliveryRecords(store).exists(Notice(second, "x", "finished", "cancelled", 0))
    assert store.load(second).notifications == []
    NotifyScanner(store=store, urls=(GENERIC,), enqueue=sent.append).scan()
    assert [n.job_id for n in sent] == [first, second]  # the first not again, the second now


def test_a_delivery_recorded_before_the_scanner_records_it_queued_is_left_as_it_is(store: JobStore) -> None:
    sent: list[Notice] = []
    scanner(store, sent).scan()
    job_id = new_job(store)
    records = DeliveryRecords(store)

    def fast_worker(notice: Notice) -> None:  # the delivery ran before the scanner's own write
        sent.append(notice)
        records.put(notice, replace(Delivery.new(notice, GENERIC), status="delivered", attempts=1))

    move(store, job_id, JobState.CANCELLED)
    NotifyScanner(store=store, urls=(GENERIC,), enqueue=fast_worker).scan()
    assert [(r["status"], r["attempts"]) for r in store.load(job_id).notifications] == [("delivered", 1)]


def test_another_workers_pass_holds_the_stream(store: JobStore) -> None:
    sent: list[Notice] = []
    scanner(store, sent).scan()
    job_id = new_job(store)
    move(store, job_id, JobState.CANCELLED)
    held = RedisLock(store.redis, "t:notify:lock", ttl_ms=10_000)
    assert held.acquire()
    assert scanner(store, sent).scan().held_elsewhere and sent == []
    held.release()
    assert scanner(store, sent).scan().notices == 2


def test_a_long_stream_is_read_a_page_at_a_time_up_to_the_passs_limit(store: JobStore) -> None:
    sent: list[Notice] = []
    scanner(store, sent).scan()
    jobs = [new_job(store) for _ in range(5)]
    for job_id in jobs:
        move(store, job_id, JobState.CANCELLED)
    first = NotifyScanner(store=store, urls=(GENERIC,), enqueue=sent.append, page_limit=2, max_pages=2).scan()
    assert first.entries == 4
    NotifyScanner(store=store, urls=(GENERIC,), enqueue=sent.append, page_limit=2, max_pages=10).scan()
    assert sorted(n.job_id for n in sent) == sorted(jobs)


def test_removing_a_job_removes_its_deliveries(store: JobStore) -> None:
    sent: list[Notice] = []
    scanner(store, sent).scan()
    job_id = new_job(store)
    move(store, job_id, JobState.CANCELLED)
    scanner(store, sent).scan()
    assert store.redis.exists(store.notify_key(job_id))
    store.remove(job_id)
    assert not store.redis.exists(store.notify_key(job_id))


def test_a_delivery_whose_task_was_lost_is_enqueued_again_once_overdue_and_a_final_one_never(
        store: JobStore) -> None:
    from unittest import mock

    from config import defaults
    from worker.notify.records import DELIVERED

    job_id = new_job(store)
    sent: list[Notice] = []
    scanner(store, sent).scan()  # the first pass starts at the stream's end
    move(store, job_id, JobState.RESOLVING, JobState.AWAITING_APPROVAL)
    scanner(store, sent).scan()
    assert len(sent) == 2  # one a receiver: then both tasks are lost (a retry Redis refused to publish)
    records = DeliveryRecords(store)
    records.put(sent[1], replace(records.get(sent[1]) or pytest.fail("no record"), status=DELIVERED))
    sent.clear()
    assert scanner(store, sent).scan().notices == 0  # not overdue yet
    later = __import__("time").time() + defaults.NOTIFY_STRANDED_SECONDS + 1
    with mock.patch("time.time", lambda: later):
        report = scanner(store, sent).scan()
        assert report.notices == 1 and [n.url_index for n in sent] == [0]  # the delivered one stays delivered
        assert scanner(store, sent).scan().notices == 0  # enqueued again once, not at every pass
    store.redis.delete(store.job_key(job_id))  # retention removed the job meanwhile
    with mock.patch("time.time", lambda: later + 2 * defaults.NOTIFY_STRANDED_SECONDS):
        assert scanner(store, sent).scan().notices == 0
    assert store.redis.zcard(records.pending_key) == 0  # and its delivery is no longer pending
