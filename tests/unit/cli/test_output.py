"""The progress bar: done of total, counts, rate and time left."""

from __future__ import annotations

from typing import Any

from worker.cli.output import Progress
from worker.jobs.store import JobStore


def test_the_bar_shows_rate_and_time_left_once_targets_finish() -> None:
    progress = Progress(started=100.0)
    first = progress.line((0, 0, 0, "resolving"), 1000, 101.0, width=10)
    assert first == "[----------] 0/1,000 targets  accepted 0  failed 0  1 s  resolving"
    progress.line((100, 100, 0, "terminating"), 1000, 102.0, width=10)  # the first targets finish here
    later = progress.line((500, 490, 10, "terminating"), 1000, 104.0, width=10)
    assert later == "[#####-----] 500/1,000 targets  accepted 490  failed 10  200/s ~2 s left 4 s  terminating"
    done = progress.line((1000, 990, 10, "partial"), 1000, 106.0, width=10)
    assert done.endswith("225/s 6 s  partial")


def test_wait_says_when_no_worker_picks_the_job_up_and_what_a_job_waits_for(store: JobStore) -> None:
    import io

    from tests.unit.fake_box import new_job, users
    from worker.cli.output import UNPICKED_WARNING_SECONDS, counts, wait_for_job
    from worker.jobs.model import JobState

    job_id = new_job(store, users("a@example.com"))
    ticks = iter(range(1000))

    class Cancelling:
        """The store, with the job cancelled once the wait has gone on past the warning."""

        def __init__(self) -> None:
            self.loads = 0

        def audit_entries(self, *, job_id: str) -> list[dict[str, Any]]:
            return store.audit_entries(job_id=job_id)

        def load(self, wanted: str) -> Any:
            self.loads += 1
            if self.loads == int(UNPICKED_WARNING_SECONDS) + 3:
                store.transition(wanted, to=JobState.CANCELLED, allowed_from=[JobState.QUEUED])
            return store.load(wanted)

    out = io.StringIO()
    job = wait_for_job(Cancelling(), job_id, out=out, poll_seconds=0, clock=lambda: float(next(ticks)))  # type: ignore[arg-type]
    assert job.state is JobState.CANCELLED
    assert out.getvalue().count("no worker has picked it up") == 1
    waiting = store.load(job_id)
    waiting.waiting = {"reason": "Box answered 503", "next_attempt_at": "2026-12-02T01:00:00.000Z"}
    assert "waiting: Box answered 503; next attempt 2026-12-02T01:00:00.000Z" in counts(waiting)[3]


def test_wait_says_a_job_picked_up_and_failing_with_the_last_fault_recorded(store: JobStore) -> None:
    import io

    from tests.unit.fake_box import new_job, users
    from worker.cli.output import UNPICKED_WARNING_SECONDS, wait_for_job
    from worker.jobs.model import JobState

    job_id = new_job(store, users("a@example.com"))
    store.transition(job_id, to=JobState.RESOLVING, allowed_from=[JobState.QUEUED])  # a worker took it
    ticks = iter(range(1000))

    class Failing:
        """The store, with the runs' faults recorded as a worker records them (tasks/jobs.py), then cancelled."""

        def __init__(self) -> None:
            self.loads = 0

        def audit_entries(self, *, job_id: str) -> list[dict[str, Any]]:
            return store.audit_entries(job_id=job_id)

        def load(self, wanted: str) -> Any:
            self.loads += 1
            if self.loads == 2:
                store.note(wanted, "fault", {"error": "BoxTransportError: no answer from Box's token endpoint"})
            if self.loads == int(UNPICKED_WARNING_SECONDS) + 3:
                store.note(wanted, "fault", {"error": "BoxRetryableError: Box answered 503"})
            if self.loads == int(UNPICKED_WARNING_SECONDS) + 6:
                store.transition(wanted, to=JobState.CANCELLED, allowed_from=[JobState.RESOLVING])
            return store.load(wanted)

    out = io.StringIO()
    wait_for_job(Failing(), job_id, out=out, poll_seconds=0, clock=lambda: float(next(ticks)))  # type: ignore[arg-type]
    said = out.getvalue()
    assert "no worker has picked it up" not in said
    assert said.count(f"job {job_id} was picked up and is failing: BoxTransportError: no answer from Box's token "
                      "endpoint") == 1
    assert said.count("picked up and is failing: BoxRetryableError: Box answered 503") == 1


def test_a_transient_fault_of_a_run_is_recorded_in_the_jobs_trail(store: JobStore) -> None:
    from tasks.jobs import FAULT_EVENT, _note_fault
    from tests.unit.fake_box import new_job, users
    from worker.cli.output import FAULT_EVENT as SHOWN
    from worker.cli.output import last_fault
    from worker.errors import BoxTransportError

    assert FAULT_EVENT == SHOWN
    job_id = new_job(store, users("a@example.com"))
    assert last_fault(store, job_id) is None

    class Context:
        pass

    ctx = Context()
    ctx.store = store  # type: ignore[attr-defined]
    _note_fault(ctx, job_id, BoxTransportError("no answer from Box"))  # type: ignore[arg-type]
    assert last_fault(store, job_id) == "BoxTransportError: no answer from Box"
