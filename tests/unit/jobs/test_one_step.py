"""A submission in one step (a broker on the store's Redis): the claim, the record and the task's message are one Lua
step, applied whole or not at all; repeats, orphaned claims and stranded jobs behave as on the two-step path."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from worker.errors import NotEnqueued
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.model import JobState
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, Submitted, build_job, submit

QUEUE, EVENTS = "t:boxcut", "t:/0.celeryev/task.sent"


def publish(job_id: str) -> list[tuple[str, ...]]:
    """What `tasks.publishing` hands back: the task's LPUSH and its task-sent event's PUBLISH."""
    return [("LPUSH", QUEUE, f"message of {job_id}"), ("PUBLISH", EVENTS, f"event of {job_id}")]


def request(login: str = "jdoe@example.com", **extra: object) -> JobRequest:
    return JobRequest(targets=[{"type": "user", "login": login}], source="generic", requested_by="generic:hmac#1",
                      **extra)  # type: ignore[arg-type]


@pytest.fixture
def keys(store: JobStore) -> IdempotencyKeys:
    return IdempotencyKeys(store.redis, key_prefix="t:", ttl_seconds=600)


def never(_job_id: str) -> None:
    raise AssertionError("the one-step path enqueues through its own step")


def test_a_new_job_is_claimed_recorded_published_and_marked_enqueued_together(store: JobStore,
                                                                              keys: IdempotencyKeys) -> None:
    job = build_job(request())
    made = submit(store=store, enqueue=never, job=job, keys=keys, key="evt-1", task_writes=publish)
    assert made == Submitted(job.job_id, False)
    record = store.load(job.job_id)
    assert record.state is JobState.QUEUED and record.targets[0].login == "jdoe@example.com"
    assert record.requested_by == "generic:hmac#1" and not store.stranded(job.job_id)
    assert store.redis.lrange(QUEUE, 0, -1) == [f"message of {job.job_id}".encode()]
    assert keys.holder(source="generic", event_key="evt-1") == job.job_id
    assert [job.job_id] == [j.job_id for j in store.list_jobs(state="queued")[0]]
    assert [e["event"] for e in store.audit_entries(job_id=job.job_id)] == ["created"]
    assert store.audit_entries()[-1]["data"] == {"source": "generic", "targets": 1, "dry_run": False,
                                                 "requested_by": "generic:hmac#1"}


def test_the_record_is_the_one_the_two_step_path_writes(store: JobStore, keys: IdempotencyKeys) -> None:
    one = build_job(request(dry_run=True, severity="high"))
    two = build_job(request(dry_run=True, severity="high"))
    submit(store=store, enqueue=never, job=one, keys=keys, key="a", task_writes=publish)
    submit(store=store, enqueue=lambda _: None, job=two, keys=keys, key="b")

    def fields(job_id: str) -> dict[bytes, bytes]:
        varying = {b"job_id", b"created_at", b"updated_at", b"created_us", b"enqueued_at"}
        return {k: v for k, v in store.redis.hgetall(store.job_key(job_id)).items() if k not in varying}

    assert fields(one.job_id) == fields(two.job_id) and store.redis.hexists(store.job_key(one.job_id), "enqueued_at")
    assert store.load(one.job_id).targets == store.load(two.job_id).targets
    assert store.redis.zscore("t:jobs:source:generic", one.job_id) is not None


def test_a_repeat_gets_the_first_job_and_writes_nothing(store: JobStore, keys: IdempotencyKeys) -> None:
    first = submit(store=store, enqueue=never, job=build_job(request()), keys=keys, key="evt-1", task_writes=publish)
    again = build_job(request())
    assert submit(store=store, enqueue=never, job=again, keys=keys, key="evt-1",
                  task_writes=publish) == Submitted(first.job_id, True)
    assert not store.exists(again.job_id) and store.redis.llen(QUEUE) == 1


def test_a_job_without_a_key_is_written_in_one_step_too(store: JobStore) -> None:
    made = submit(store=store, enqueue=never, job=build_job(request()), task_writes=publish)
    assert store.redis.lrange(QUEUE, 0, -1) == [f"message of {made.job_id}".encode()]
    assert not store.stranded(made.job_id)


def test_a_claim_whose_job_was_never_created_is_taken_over(store: JobStore, keys: IdempotencyKeys,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    keys.claim(source="generic", event_key="evt-1", job_id="j-0000000000000000")  # its submitter died here
    monkeypatch.setattr("worker.jobs.submit._orphaned", lambda store, job_id: not store.exists(job_id))
    job = build_job(request())
    made = submit(store=store, enqueue=never, job=job, keys=keys, key="evt-1", task_writes=publish)
    assert made == Submitted(job.job_id, False) and keys.holder(source="generic", event_key="evt-1") == job.job_id
    assert store.redis.lrange(QUEUE, 0, -1) == [f"message of {job.job_id}".encode()]


def test_a_stranded_first_job_is_enqueued_for_its_repeat(store: JobStore, keys: IdempotencyKeys) -> None:
    """A first submission on the two-step path whose enqueue and undo both failed (Redis went away): its repeat
    on the one-step path enqueues that job, through the enqueue seam, once."""
    stranded = build_job(request())
    keys.claim(source="generic", event_key="evt-1", job_id=stranded.job_id)
    store.create(stranded)
    sent: list[str] = []
    for _ in range(2):
        again = submit(store=store, enqueue=sent.append, job=build_job(request()), keys=keys, key="evt-1",
                       task_writes=publish)
        assert again == Submitted(stranded.job_id, True)
    assert sent == [stranded.job_id] and store.redis.llen(QUEUE) == 0


def test_a_task_that_cannot_be_built_writes_nothing(store: JobStore, keys: IdempotencyKeys) -> None:
    def refused(_job_id: str) -> list[tuple[str, ...]]:
        raise ConnectionError("broker unreachable")

    job = build_job(request())
    with pytest.raises(NotEnqueued, match="broker unreachable"):
        submit(store=store, enqueue=never, job=job, keys=keys, key="evt-1", task_writes=refused)
    assert store.redis.keys("*") == []
    made = submit(store=store, enqueue=never, job=build_job(request()), keys=keys, key="evt-1", task_writes=publish)
    assert not made.duplicate  # the sender's retry makes the job


def test_redis_refusing_the_step_leaves_nothing_and_the_retry_makes_the_job() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    store, keys = JobStore(client, key_prefix="t:"), IdempotencyKeys(client, key_prefix="t:", ttl_seconds=600)
    server.connected = False
    with pytest.raises(redis.ConnectionError):
        submit(store=store, enqueue=never, job=build_job(request()), keys=keys, key="evt-1", task_writes=publish)
    server.connected = True
    assert client.keys("*") == []
    made = submit(store=store, enqueue=never, job=build_job(request()), keys=keys, key="evt-1", task_writes=publish)
    assert not made.duplicate and client.llen(QUEUE) == 1


def test_a_step_redis_fails_halfway_leaves_a_stranded_job_that_the_retry_enqueues(store: JobStore,
                                                                                   keys: IdempotencyKeys) -> None:
    """Redis refuses a full Redis's writes at a script's first write, so a step is whole or nothing; a command
    failing later (here a queue key of the wrong type, which boxcut never makes) leaves what came before it. The
    mark that the job was enqueued is the step's last write, so that job is stranded, never lost: the sender's
    retry (or the sweep) enqueues it."""
    store.redis.set(QUEUE, "not a list")
    job = build_job(request())
    with pytest.raises(redis.ResponseError):
        submit(store=store, enqueue=never, job=job, keys=keys, key="evt-1", task_writes=publish)
    assert store.stranded(job.job_id)
    store.redis.delete(QUEUE)
    sent: list[str] = []
    assert submit(store=store, enqueue=sent.append, job=build_job(request()), keys=keys, key="evt-1",
                  task_writes=publish) == Submitted(job.job_id, True)
    assert sent == [job.job_id]


def test_a_job_recorded_only_is_kept_and_never_published(store: JobStore, keys: IdempotencyKeys) -> None:
    job = build_job(request(record_only="a Box Shield rule records it"))
    made = submit(store=store, enqueue=never, job=job, keys=keys, key="evt-1", task_writes=never)  # type: ignore[arg-type]
    assert made == Submitted(job.job_id, False) and store.load(job.job_id).state is JobState.RECORDED
    assert store.redis.hexists(store.job_key(job.job_id), "kept_at") and store.redis.llen(QUEUE) == 0


def test_a_job_with_thousands_of_targets_is_written_whole(store: JobStore) -> None:
    logins = [f"user{n:05d}@example.com" for n in range(2500)]
    job = build_job(JobRequest(targets=[{"type": "user", "login": x} for x in logins], source="generic"))
    submit(store=store, enqueue=never, job=job, task_writes=publish)
    assert [t.login for t in store.load(job.job_id).targets] == logins


def test_a_step_applied_by_an_attempt_whose_answer_was_lost_is_the_new_job_not_a_repeat(
        store: JobStore, keys: IdempotencyKeys) -> None:
    """redis-py sends a command again after a timeout: the step it sent first may have been applied. The claim it
    then meets names this very job, which is new (202), not a duplicate of itself."""
    job = build_job(request())
    submit(store=store, enqueue=never, job=job, keys=keys, key="evt-1", task_writes=publish)
    assert submit(store=store, enqueue=never, job=job, keys=keys, key="evt-1",
                  task_writes=publish) == Submitted(job.job_id, False)
