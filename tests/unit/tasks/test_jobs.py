"""The Celery task around the runner: waits become retries, long jobs hand over, surprises end the job."""

from __future__ import annotations

from celery import Celery

from tasks import jobs
from tests.unit.fake_box import FakeBox, directory, make_ctx, new_job, users
from worker.box.answers import BoxUser
from worker.errors import BoxAuthError
from worker.jobs.model import JobState, TargetStatus
from worker.jobs.store import JobStore
from worker.run.context import RunContext


class BrokenBox(FakeBox):
    def find_users_by_login(self, login: str) -> list[BoxUser]:
        raise ValueError("a bug somewhere")


def task_for(ctx: RunContext) -> tuple[Celery, object]:
    app = Celery("test", set_as_current=False)
    app.conf.update(task_always_eager=True, task_eager_propagates=False, broker_url="memory://")
    return app, jobs.register(app, context=lambda: ctx, max_countdown=600)


def test_an_unexpected_error_ends_the_pending_targets_dead_instead_of_leaving_the_job_stuck(store: JobStore) -> None:
    job_id = new_job(store, users("user00001@example.com"))
    _, task = task_for(make_ctx(store, BrokenBox(users=directory(1))))
    result = task.apply(args=[job_id])  # type: ignore[attr-defined]
    assert isinstance(result.result, ValueError)
    job = store.load(job_id)
    assert job.state is JobState.FAILED and job.targets[0].status is TargetStatus.DEAD
    assert "unexpected ValueError: a bug somewhere" in (job.targets[0].detail or "")
    assert [r.job_id for r in store.list_jobs(state="dead")[0]] == [job_id]


def test_a_missing_job_is_dropped(store: JobStore) -> None:
    _, task = task_for(make_ctx(store, FakeBox()))
    assert task.apply(args=["j-0123456789abcdef"]).result == "missing"  # type: ignore[attr-defined]


def test_a_settled_run_returns_its_outcome(store: JobStore) -> None:
    job_id = new_job(store, users("user00001@example.com"))
    _, task = task_for(make_ctx(store, FakeBox(users=directory(1))))
    assert task.apply(args=[job_id]).result == "settled"  # type: ignore[attr-defined]
    assert store.load(job_id).state is JobState.SUCCEEDED


def test_fault_back_off_grows_and_is_capped() -> None:
    assert [jobs.fault_countdown(n) for n in (0, 1, 2, 10)] == [5.0, 10.0, 20.0, 300.0]


class RefusedCredentials(FakeBox):
    def find_users_by_login(self, login: str) -> list[BoxUser]:
        raise BoxAuthError("Box refused the token request (400 invalid_client): The client credentials are invalid")


def test_refused_credentials_end_the_pending_targets_failed_at_once_with_box_words(store: JobStore) -> None:
    job_id = new_job(store, users("user00001@example.com", "user00002@example.com"))
    _, task = task_for(make_ctx(store, RefusedCredentials(users=directory(2))))
    assert task.apply(args=[job_id]).result == "settled"  # type: ignore[attr-defined]  # not a retry for hours
    job = store.load(job_id)
    assert job.state is JobState.FAILED
    assert {t.status for t in job.targets} == {TargetStatus.FAILED}
    detail = job.targets[0].detail or ""
    assert "invalid_client" in detail and "boxcut retry" in detail
    assert store.list_jobs(state="dead")[0] == []  # failed, not dead: nothing ran out, it was refused


def test_a_task_whose_pool_process_died_runs_again_within_seconds_not_celerys_three_minutes(store: JobStore) -> None:
    _, task = task_for(make_ctx(store, FakeBox()))
    assert task.default_retry_delay == jobs.WORKER_LOST_RETRY_SECONDS <= 5  # type: ignore[attr-defined]
    app = Celery("test", set_as_current=False)
    from tasks import sending

    send_task, _ = sending.register(app, context=lambda: make_ctx(store, FakeBox()), kick=lambda _e: None,
                                    enqueue=lambda _j: None, stale_job_seconds=120, max_countdown=600)
    assert send_task.default_retry_delay == jobs.WORKER_LOST_RETRY_SECONDS
