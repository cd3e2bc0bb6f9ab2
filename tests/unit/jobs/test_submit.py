"""One submit path: every submission and operator action fails the same way when the broker refuses the job."""

from __future__ import annotations

import pytest
import redis
from click.testing import CliRunner

from tests.unit.fake_box import FakeBox, directory, make_ctx, refused
from tests.unit.intake_fixtures import make_intake
from worker.cli import commands
from worker.errors import NotEnqueued
from worker.jobs import actions
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.model import JobState, TargetStatus
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, Submitted, build_job, submit
from worker.run.runner import run_job

REFUSAL = "could not be enqueued: the broker refused it (ConnectionError: broker unreachable)"


def broker_down(_job_id: str) -> None:
    raise ConnectionError("broker unreachable")


def request(*logins: str) -> JobRequest:
    return JobRequest(targets=[{"type": "user", "login": x} for x in logins], source="cli", requested_by="cli:a")


def test_a_new_job_the_broker_refuses_ends_cancelled_saying_why_and_its_key_is_free(store: JobStore) -> None:
    keys = IdempotencyKeys(store.redis, key_prefix="t:", ttl_seconds=60)
    job = build_job(request("jdoe@example.com"))
    with pytest.raises(NotEnqueued, match="broker unreachable"):
        submit(store=store, enqueue=broker_down, job=job, keys=keys, key="evt-1")
    record = store.load(job.job_id)
    assert record.state is JobState.CANCELLED and (record.note or "").startswith(REFUSAL)
    assert store.audit_entries(job_id=job.job_id)[-1]["data"]["note"].startswith(REFUSAL)
    again = submit(store=store, enqueue=lambda _: None, job=build_job(request("jdoe@example.com")), keys=keys,
                   key="evt-1")
    assert not again.duplicate and again.job_id != job.job_id


def test_a_job_without_a_key_fails_the_same_way(store: JobStore) -> None:
    job = build_job(request("jdoe@example.com"))
    with pytest.raises(NotEnqueued):
        submit(store=store, enqueue=broker_down, job=job)
    assert store.load(job.job_id).state is JobState.CANCELLED  # not `queued` forever, waiting for no task


def test_approve_and_retry_are_undone_saying_why_and_a_later_success_clears_it(store: JobStore) -> None:
    box = FakeBox(users=directory(30))
    waiting = submit(store=store, enqueue=lambda _: None,
                     job=build_job(request(*(u.login for u in box.users)))).job_id
    run_job(ctx=make_ctx(store, box, threshold=25), job_id=waiting)
    with pytest.raises(NotEnqueued):
        actions.approve(store=store, enqueue=broker_down, job_id=waiting, actor="cli:alice")
    record = store.load(waiting)
    assert record.state is JobState.AWAITING_APPROVAL and record.note == f"approval undone: {REFUSAL}; nothing was " \
                                                                         "sent to Box"
    actions.approve(store=store, enqueue=lambda _: None, job_id=waiting, actor="cli:alice")
    assert store.load(waiting).note is None

    box = FakeBox(users=directory(1), answers=[refused(403, "access_denied_insufficient_permissions")])
    failed = submit(store=store, enqueue=lambda _: None, job=build_job(request("user00001@example.com"))).job_id
    run_job(ctx=make_ctx(store, box), job_id=failed)
    with pytest.raises(NotEnqueued):
        actions.retry(store=store, enqueue=broker_down, job_id=failed, actor="cli:alice")
    record = store.load(failed)
    assert record.state is JobState.FAILED and record.targets[0].status is TargetStatus.FAILED
    assert (record.note or "").startswith(f"retry undone: {REFUSAL}")


def test_the_intake_answers_503_with_retry_after_and_the_senders_retry_makes_the_job() -> None:
    intake = make_intake(refused_enqueues={0})
    alert = {"id": "evt-42", "targets": [{"type": "user", "login": "jdoe@example.com"}]}
    first = intake.post("/v1/alerts", alert)
    assert first.status_code == 503 and first.headers["retry-after"] == "5"
    error = first.json()["error"]
    assert error["code"] == "unavailable" and "could not be enqueued" in error["message"]
    again = intake.post("/v1/alerts", alert)
    assert again.status_code == 202 and again.json()["duplicate"] is False
    assert intake.enqueued == [again.json()["job_id"]]
    metrics = intake.client.get("/metrics").text
    assert 'boxcut_intake_requests_total{outcome="unavailable",source="generic"} 1.0' in metrics


def test_the_cli_says_so_in_one_line_and_exits_1(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "_store", lambda _settings: store)
    monkeypatch.setattr(commands, "enqueuer", lambda _app: broker_down)
    monkeypatch.setattr(commands, "celery_app", lambda _settings: None)
    run = CliRunner().invoke(commands.main, ["terminate", "--user", "jdoe@example.com"], env={})
    assert run.exit_code == 1, run.output
    assert "could not be enqueued: the broker refused it" in run.output and "Traceback" not in run.output
    jobs, _ = store.list_jobs()
    assert [j.state for j in jobs] == ["cancelled"]


def test_when_redis_fails_with_the_broker_the_senders_retry_enqueues_the_job(store: JobStore,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker is the same Redis: when it goes, the undo cannot be written either. The record then stays
    `queued` with its key claimed, and the sender's retry (a duplicate) must enqueue that job, once."""
    keys = IdempotencyKeys(store.redis, key_prefix="t:", ttl_seconds=60)
    down = {"redis": False}
    transition = store.transition

    def failing_transition(*args: object, **kwargs: object) -> object:
        if down["redis"]:
            raise redis.ConnectionError("Connection refused")
        return transition(*args, **kwargs)  # type: ignore[arg-type]

    def broker_and_redis_down(_job_id: str) -> None:
        down["redis"] = True
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(store, "transition", failing_transition)
    job = build_job(request("jdoe@example.com"))
    with pytest.raises(NotEnqueued):
        submit(store=store, enqueue=broker_and_redis_down, job=job, keys=keys, key="evt-7")
    assert store.load(job.job_id).state is JobState.QUEUED and store.stranded(job.job_id)

    down["redis"] = False
    sent: list[str] = []
    for _ in range(2):
        again = submit(store=store, enqueue=sent.append, job=build_job(request("jdoe@example.com")), keys=keys,
                       key="evt-7")
        assert again == Submitted(job.job_id, True)
    assert sent == [job.job_id] and not store.stranded(job.job_id)


def test_a_submitted_job_is_marked_enqueued_and_a_repeat_does_not_enqueue_it_again(store: JobStore) -> None:
    keys = IdempotencyKeys(store.redis, key_prefix="t:", ttl_seconds=60)
    sent: list[str] = []
    first = submit(store=store, enqueue=sent.append, job=build_job(request("a@example.com")), keys=keys, key="k")
    again = submit(store=store, enqueue=sent.append, job=build_job(request("a@example.com")), keys=keys, key="k")
    assert again == Submitted(first.job_id, True) and sent == [first.job_id]
    assert not store.stranded(first.job_id)
