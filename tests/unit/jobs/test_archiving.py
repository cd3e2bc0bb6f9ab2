"""Settling finished jobs into the archive: only quiet jobs, guarded, crash-safe, each once; and every read the
same from the working record, the packed copy and the archive (the evidence report byte for byte)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.unit.fake_box import FakeBox, accepted, make_ctx, new_job, refused, users
from worker.archive.migrate import upgrade
from worker.archive.store import Archive
from worker.box.answers import BoxUser
from worker.errors import JobNotFound
from worker.jobs import evidence_signing as signing
from worker.jobs.archiving import Archiver
from worker.jobs.document import PACKED_V1, Settled, UnreadablePacked, job_document, job_from_document, pack, unpack
from worker.jobs.history import ARCHIVE, HOT, WORKING, JobHistory
from worker.jobs.model import Approval, JobState
from worker.jobs.report import build_report
from worker.jobs.send_queue import SendQueue
from worker.jobs.store import JobStore
from worker.run.runner import run_job

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
DAY = 86400.0


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    url = f"sqlite:///{tmp_path}/archive.sqlite3"
    upgrade(url)
    archive = Archive(url)
    yield archive
    archive.close()


def archiver(store: JobStore, archive: Archive, *, hot_seconds: float = DAY, settle_seconds: float = 0.0,
             scanned_to: Any = None, clock: Any = time.time) -> Archiver:
    return Archiver(store, SendQueue(store.redis, key_prefix=store.prefix), archive, hot_seconds=hot_seconds,
                    settle_seconds=settle_seconds, late_events_seconds=600, scanned_to=scanned_to, clock=clock)


def finished_job(store: JobStore, *logins: str, answers: list[Any] | None = None) -> str:
    box = FakeBox(users=[BoxUser(id=str(10 + i), login=login) for i, login in enumerate(logins)],
                  answers=answers or [accepted()])
    job_id = new_job(store, users(*logins))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert store.state(job_id).is_final
    return job_id


def report_bytes(history: JobHistory, job_id: str) -> bytes:
    built = build_report(history, job_id, now=lambda: "2026-12-06T12:00:00.000Z")
    return signing.render(signing.sign(built, KEY)).encode()


def keys_of(store: JobStore, job_id: str) -> list[str]:
    return sorted(k.decode() for k in store.redis.scan_iter(match=f"*{job_id}*"))


def test_a_finished_job_reads_the_same_working_hot_and_archived(store: JobStore, archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com", "b@example.com")
    history = JobHistory(store, archive)
    before = history.find(job_id)
    report = report_bytes(history, job_id)
    audit = history.audit(job_id)
    assert before.stored == WORKING

    assert archiver(store, archive).settle(job_id) == "hot"
    hot = history.find(job_id)
    assert hot.stored == HOT and hot.job == before.job
    assert report_bytes(history, job_id) == report and history.audit(job_id) == audit
    assert keys_of(store, job_id) == [f"t:settled:{job_id}"]

    assert archiver(store, archive, hot_seconds=0).evict() == 1
    gone = history.find(job_id)
    assert gone.stored == ARCHIVE and gone.job == before.job
    assert report_bytes(history, job_id) == report and history.audit(job_id) == audit
    assert keys_of(store, job_id) == []
    assert signing.verify(report, trusted=KEY.public_key())


def test_a_job_past_the_hot_window_goes_straight_to_the_archive(store: JobStore, archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com")
    assert archiver(store, archive, clock=lambda: time.time() + 2 * DAY).settle(job_id) == "archived"
    assert keys_of(store, job_id) == []
    assert JobHistory(store, archive).find(job_id).stored == ARCHIVE


def test_a_job_still_moving_is_never_a_candidate(store: JobStore, archive: Archive) -> None:
    job_id = new_job(store, users("a@example.com"))
    moved = archiver(store, archive).run()
    assert moved.settled == 0 and store.live(job_id) and archive.job(job_id) is None


@pytest.mark.parametrize("why", ["lease", "open", "recent", "watch", "notification", "unscanned"])
def test_a_finished_job_that_may_still_change_waits(store: JobStore, archive: Archive, why: str) -> None:
    job_id = finished_job(store, "a@example.com")
    clock, scanned = time.time, None
    if why == "lease":
        store.redis.set(f"t:job:{job_id}:lease", "someone")
    elif why == "open":
        store.redis.hset("t:send:open", job_id, 1)
    elif why == "recent":
        clock = time.time  # settle_seconds below is a minute
    elif why == "watch":
        store.redis.hset(f"t:job:{job_id}", "watch_until", "2999-01-01T00:00:00.000Z")
    elif why == "notification":
        store.redis.hset(f"t:job:{job_id}:notify", "1-0#0", '{"status": "retrying", "first_at": "x"}')
    elif why == "unscanned":
        scanned = "0-1"
    worker = archiver(store, archive, settle_seconds=60 if why == "recent" else 0, clock=clock,
                      scanned_to=(lambda: scanned) if why == "unscanned" else None)
    assert worker.settle(job_id) == "waits"
    assert store.live(job_id) and archive.job(job_id) is None


def test_a_job_not_quiet_is_looked_at_again_when_it_may_be_and_those_behind_it_are_reached(
        store: JobStore, archive: Archive) -> None:
    waiting = [finished_job(store, f"w{i}@example.com", answers=[refused(400, "bad_request")]) for i in range(3)]
    quiet = finished_job(store, "q@example.com")
    store.redis.hset(f"t:job:{quiet}", "state", "failed")  # the same index as the waiting ones, behind them
    store.redis.zrem("t:jobs:state:succeeded", quiet)
    store.redis.zadd("t:jobs:state:failed", {quiet: store.created_us(quiet)})
    worker = archiver(store, archive)
    assert worker.settle_jobs(most=2) == (0, 0, 2)
    assert worker.settle_jobs(most=2) == (1, 0, 1)  # the first two are deferred: the third and the quiet one
    assert store.settle_candidates([JobState.FAILED], now=time.time(), limit=10) == []
    due = time.time() + DAY + 1
    assert store.settle_candidates([JobState.FAILED], now=due, limit=10) == waiting
    assert archiver(store, archive, clock=lambda: due).settle_jobs() == (0, 3, 0)


def test_a_job_holding_failed_targets_stays_working_for_the_hot_window_so_it_can_be_retried(
        store: JobStore, archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com", answers=[refused(400, "bad_request")])
    assert store.state(job_id) is JobState.FAILED
    assert archiver(store, archive).settle(job_id) == "waits"
    later = archiver(store, archive, clock=lambda: time.time() + DAY + 1)
    assert later.settle(job_id) == "archived"


def test_a_job_changed_between_read_and_settle_is_left_working(store: JobStore, archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com")
    job = store.load(job_id)
    store.note(job_id, "late", {"why": "a note after the read"})
    trail = store.audit_trail_raw(job_id)
    assert not store.settle(job, created_us=store.created_us(job_id), trail=trail[:-1],  # read before the note
                            folded_calls=[], keep_hot=True)
    store.redis.hset(f"t:job:{job_id}", "updated_at", "2000-01-01T00:00:00.000Z")
    assert not store.settle(job, created_us=store.created_us(job_id), trail=trail,
                            folded_calls=[], keep_hot=True)
    assert store.live(job_id) and not store.redis.exists(f"t:settled:{job_id}")


def test_a_pass_cut_off_after_the_archive_commit_repeats_harmlessly(
        store: JobStore, archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = finished_job(store, "a@example.com")

    def killed(*_args: Any, **_kwargs: Any) -> bool:
        raise SystemExit("worker killed between the archive's commit and Redis's step")

    with monkeypatch.context() as patch:
        patch.setattr(store, "settle", killed)
        with pytest.raises(SystemExit):
            archiver(store, archive).settle(job_id)
    assert archive.job(job_id) is not None and store.live(job_id)
    assert archiver(store, archive).settle(job_id) == "hot"
    assert archive.stats()["jobs"] == 1
    assert len(archive.audit_for_job(job_id)) == len(JobHistory(store, archive).audit(job_id))


def test_the_audit_stream_ships_once_and_is_trimmed_no_further_than_the_scanner_read(
        store: JobStore, archive: Archive) -> None:
    finished_job(store, "a@example.com")
    entries = store.audit_entries(count=1000)
    scanned = entries[2]["id"]
    worker = archiver(store, archive, scanned_to=lambda: scanned)
    assert worker.ship_audit() == len(entries)
    assert store.audit_entries(count=1000)[0]["id"] == scanned  # trimmed up to the scanner
    store.redis.delete("t:audit:shipped")  # the position lost (a Redis restart): shipped again, stored once
    worker.ship_audit()
    assert archive.stats()["audit_entries"] == len(entries)
    assert [e["id"] for e in JobHistory(store, archive).audit_since()] == [e["id"] for e in entries]


def test_the_stream_is_not_trimmed_before_the_scanner_has_started(store: JobStore, archive: Archive) -> None:
    finished_job(store, "a@example.com")
    count = len(store.audit_entries(count=1000))
    archiver(store, archive, scanned_to=lambda: None).ship_audit()
    assert len(store.audit_entries(count=1000)) == count


def share_first_call(store: JobStore, first: str, second: str) -> str:
    """Make the first job's call carry the second job's target too (as the send queue does when both wait)."""
    import json
    [call] = store.load(first).calls
    call.targets.append(f"{second}:0")
    store.redis.set(f"t:call:{call.call_id}", json.dumps(call.to_dict()))
    [own] = store.load(second).calls
    store.redis.delete(f"t:call:{own.call_id}", f"t:job:{second}:calls")
    store.redis.rpush(f"t:job:{second}:calls", call.call_id)
    target = json.loads(store.redis.hget(f"t:job:{second}:targets", "0") or "{}")
    store.redis.hset(f"t:job:{second}:targets", "0", json.dumps({**target, "call_ids": [call.call_id]}))
    return call.call_id


def test_a_shared_call_outlives_each_job_but_the_last(store: JobStore, archive: Archive) -> None:
    first, second = finished_job(store, "a@example.com"), finished_job(store, "b@example.com")
    call_id = share_first_call(store, first, second)
    worker = archiver(store, archive)
    assert worker.settle(first) == "hot" and worker.settle(second) == "hot"
    assert store.redis.exists(f"t:call:{call_id}")
    assert store.evict(first) == 0 and store.redis.exists(f"t:call:{call_id}")
    assert store.evict(second) == 1 and not store.redis.exists(f"t:call:{call_id}")
    assert [c.call_id for c in JobHistory(store, archive).find(first).job.calls] == [call_id]
    assert [c.call_id for c in JobHistory(store, archive).find(second).job.calls] == [call_id]


def test_a_lone_call_folds_into_its_job_and_keeps_its_request_count(store: JobStore, archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com")
    [call] = store.load(job_id).calls
    sent = store.attempts_sent(call.call_id)
    archiver(store, archive).settle(job_id)
    assert not store.redis.exists(f"t:call:{call.call_id}", f"t:call:{call.call_id}:sent")
    assert JobHistory(store, archive).evidence(job_id).requests_sent == {call.call_id: sent}


def test_listing_merges_redis_and_the_archive_newest_first_once_each(store: JobStore, archive: Archive) -> None:
    jobs = [finished_job(store, f"u{i}@example.com") for i in range(4)]
    working = new_job(store, users("w@example.com"))
    worker = archiver(store, archive)
    for job_id in jobs[:3]:
        worker.settle(job_id)
    store.evict(jobs[0])
    history = JobHistory(store, archive)
    rows, following = history.list_jobs(limit=10)
    assert [r.summary.job_id for r in rows] == [working, *reversed(jobs)] and following is None
    assert [r.stored for r in rows] == [WORKING, WORKING, HOT, HOT, ARCHIVE]
    page, following = history.list_jobs(limit=2)
    assert [r.summary.job_id for r in page] == [working, jobs[3]] and following == 2
    assert [r.summary.job_id for r in history.list_jobs(state="succeeded", limit=10)[0]] == list(reversed(jobs))


def test_a_job_known_nowhere_is_not_found(store: JobStore, archive: Archive) -> None:
    with pytest.raises(JobNotFound):
        JobHistory(store, archive).find("j-0123456789abcdef")
    with pytest.raises(JobNotFound):
        JobHistory(store, archive).find("not-a-job-id")


def test_a_job_in_the_archive_only_still_counts_as_existing(store: JobStore, archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com")
    archiver(store, archive, hot_seconds=0).settle(job_id)
    assert not store.exists(job_id)
    store.archived = lambda j: j in archive.has_jobs([j])
    assert store.exists(job_id) and not store.exists("j-0123456789abcdef")


def test_the_document_holds_every_field_of_the_record() -> None:
    store = JobStore(fakeredis.FakeRedis(), key_prefix="t:")
    job_id = finished_job(store, "a@example.com")
    job = store.load(job_id)
    job.approval = Approval(required=True, reasons=["admin"], approved_by="op", approved_at="t", at_submission=True)
    job.activity_after = {0: [{"event_id": "e1", "created_at": "t"}]}
    job.notifications = [{"audit_id": "1-0", "status": "delivered"}]
    job.waiting, job.brake, job.note, job.blast_radius = {"why": "x"}, {"source": "s"}, "n\u00e9", 3
    assert job_from_document(job_document(job, created_us=1), job.calls) == job


def test_a_packed_copy_round_trips_and_refuses_what_it_cannot_read() -> None:
    settled = Settled(document={"job_id": "j-0123456789abcdef", "n": "\u00e9"}, calls=[{"call_id": "c"}],
                      audit=[["1-0", "created", "t", {"k": [1, None]}]])
    packed = pack(settled)
    assert packed[0] == PACKED_V1 and unpack(packed) == settled
    with pytest.raises(UnreadablePacked):
        unpack(bytes([99]) + packed[1:])
    with pytest.raises(UnreadablePacked):
        unpack(packed[:-5])


# -- found by review: one id per entry, no writes after settling, no mixed reads -------------------------------


def test_an_entry_has_the_same_id_in_the_main_stream_and_in_its_jobs_own(store: JobStore) -> None:
    # Another entry in the main stream a minute ahead: '*' ids of the two streams can no longer coincide.
    ahead = int(time.time() * 1000) + 60_000
    store.redis.xadd("t:audit", {"job_id": "j-00000000000000aa", "event": "x", "at": "t", "data": "{}"},
                     id=f"{ahead}-0")
    job_id = finished_job(store, "a@example.com", "b@example.com")
    store.note(job_id, "late", {"why": "a note"})
    own = [e["id"] for e in store.audit_entries(job_id=job_id)]
    main = [e["id"] for e in store.audit_entries(count=1000) if e["job_id"] == job_id]
    assert own == main and len(own) >= 8


def test_the_stream_shipped_before_a_job_settles_stores_each_entry_once(store: JobStore, archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com")
    history = JobHistory(store, archive)
    trail, report = history.audit(job_id), report_bytes(history, job_id)
    worker = archiver(store, archive, hot_seconds=0)
    worker.ship_audit()
    assert worker.settle(job_id) == "archived"
    assert archive.audit_for_job(job_id) == trail and report_bytes(history, job_id) == report


def test_writes_after_a_job_settled_leave_nothing_behind(store: JobStore, archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com")
    archiver(store, archive).settle(job_id)
    store.note_requeued(job_id, why="a rescue that found an old run entry", at=time.time())
    store.note(job_id, "notified", {"event": "late"})
    with pytest.raises(JobNotFound):
        store.set_fields(job_id, {"note": "late"}, event="late")
    with pytest.raises(JobNotFound):
        store.save_targets(job_id, {0: store.load(job_id).targets[0]}, event="retry")
    assert keys_of(store, job_id) == [f"t:settled:{job_id}"]
    assert JobHistory(store, archive).find(job_id).stored == HOT


def test_a_record_a_late_write_left_without_its_identity_is_no_working_record(store: JobStore,
                                                                              archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com")
    archiver(store, archive).settle(job_id)
    store.redis.hset(f"t:job:{job_id}", "requeued_at", "x")  # as an unguarded writer of old would have
    assert JobHistory(store, archive).find(job_id).job.state is JobState.SUCCEEDED


def test_settling_drops_the_run_listing_a_dead_worker_left(store: JobStore, archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com")
    store.redis.zadd("t:jobs:running", {job_id: 1})  # its run's worker died before letting go
    archiver(store, archive).settle(job_id)
    assert store.died_runs(now_ms=int(time.time() * 1000), limit=10) == []


def test_a_shared_call_goes_when_its_last_job_leaves_straight_for_the_archive(store: JobStore,
                                                                             archive: Archive) -> None:
    first, second = finished_job(store, "a@example.com"), finished_job(store, "b@example.com")
    call_id = share_first_call(store, first, second)
    assert archiver(store, archive).settle(first) == "hot" and store.evict(first) == 0
    assert archiver(store, archive, hot_seconds=0).settle(second) == "archived"
    assert not store.redis.exists(f"t:call:{call_id}", f"t:call:{call_id}:sent")
    assert [c.call_id for c in JobHistory(store, archive).find(second).job.calls] == [call_id]


def test_a_call_resent_without_some_targets_is_not_folded_into_one_job(store: JobStore, archive: Archive) -> None:
    import json
    job_id = finished_job(store, "a@example.com")
    [call] = store.load(job_id).calls
    store.redis.set(f"t:call:{call.call_id}", json.dumps({**call.to_dict(), "earlier_ids": ["99"]}))
    archiver(store, archive).settle(job_id)
    assert store.redis.exists(f"t:call:{call.call_id}")  # another job's record may still name it


def test_a_copy_whose_archive_row_is_missing_stays_in_redis(store: JobStore, archive: Archive,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = finished_job(store, "a@example.com")
    archiver(store, archive).settle(job_id)
    monkeypatch.setattr(archive, "has_jobs", lambda _ids: set())  # the archive restored from an older backup
    assert archiver(store, archive, hot_seconds=0).evict() == 0
    assert store.redis.exists(f"t:settled:{job_id}")


def test_a_job_that_cannot_be_settled_stops_no_other(store: JobStore, archive: Archive) -> None:
    broken, fine = finished_job(store, "a@example.com"), finished_job(store, "b@example.com")
    store.redis.hset(f"t:job:{broken}", "updated_at", "not a time")
    assert archiver(store, archive).settle_jobs() == (1, 0, 0)
    assert store.live(broken) and not store.live(fine)


@pytest.mark.parametrize("why", ["call in flight", "late events"])
def test_a_finished_job_waits_for_its_calls_and_the_late_events_margin(store: JobStore, archive: Archive,
                                                                      why: str) -> None:
    import json
    job_id = finished_job(store, "a@example.com")
    if why == "call in flight":
        [call] = store.load(job_id).calls
        store.redis.set(f"t:call:{call.call_id}", json.dumps({**call.to_dict(), "state": "planned"}))
    else:
        just_over = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60))
        store.redis.hset(f"t:job:{job_id}", "watch_until", just_over)  # the watch over; its late margin is not
    assert archiver(store, archive).settle(job_id) == "waits"


def test_settling_forgets_the_jobs_open_count(store: JobStore, archive: Archive) -> None:
    job_id = finished_job(store, "a@example.com")
    store.redis.hset("t:send:open", job_id, 0)
    archiver(store, archive).settle(job_id)
    assert not store.redis.hexists("t:send:open", job_id)


def test_the_stream_is_trimmed_no_further_than_what_is_shipped(store: JobStore, archive: Archive) -> None:
    finished_job(store, "a@example.com")
    entries = store.audit_entries(count=1000)
    worker = archiver(store, archive, scanned_to=lambda: entries[-1]["id"])  # the scanner has read them all
    assert worker.ship_audit(page=2, most=2) == 2  # a pass that ships only the first two
    assert [e["id"] for e in store.audit_entries(count=1000)] == [e["id"] for e in entries[1:]]
    assert archive.stats()["audit_entries"] == 2
