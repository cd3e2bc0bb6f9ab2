"""The progress bar: done of total, counts, rate and time left."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from worker.cli.output import Progress
from worker.jobs.store import JobStore


class Scripted:
    """The store as `wait_for_job` reads it, doing `steps[n]` to the job at its n-th load (a worker's doing)."""

    def __init__(self, store: JobStore, steps: dict[int, Callable[[str], object]]) -> None:
        self.store, self.steps, self.loads = store, steps, 0

    def audit_since(self, **query: Any) -> Any:
        return self.store.audit_since(**query)

    def job_audit_key(self, job_id: str) -> str:
        return self.store.job_audit_key(job_id)

    def load(self, wanted: str) -> Any:
        self.loads += 1
        if self.loads in self.steps:
            self.steps[self.loads](wanted)
        return self.store.load(wanted)


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

    cancel_late = {int(UNPICKED_WARNING_SECONDS) + 3: lambda wanted: store.transition(
        wanted, to=JobState.CANCELLED, allowed_from=[JobState.QUEUED])}

    out = io.StringIO()
    job = wait_for_job(Scripted(store, cancel_late), job_id, out=out, poll_seconds=0, clock=lambda: float(next(ticks)))  # type: ignore[arg-type]
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

    faults = {  # the runs' faults recorded as a worker records them (tasks/jobs.py), then the job cancelled
        2: lambda wanted: store.note(wanted, "fault",
                                     {"error": "BoxTransportError: no answer from Box's token endpoint"}),
        int(UNPICKED_WARNING_SECONDS) + 3: lambda wanted: store.note(
            wanted, "fault", {"error": "BoxRetryableError: Box answered 503"}),
        int(UNPICKED_WARNING_SECONDS) + 6: lambda wanted: store.transition(
            wanted, to=JobState.CANCELLED, allowed_from=[JobState.RESOLVING]),
    }

    out = io.StringIO()
    wait_for_job(Scripted(store, faults), job_id, out=out, poll_seconds=0, clock=lambda: float(next(ticks)))  # type: ignore[arg-type]
    said = out.getvalue()
    assert "no worker has picked it up" not in said
    assert said.count(f"job {job_id} was picked up and is failing: BoxTransportError: no answer from Box's token "
                      "endpoint") == 1
    assert said.count("picked up and is failing: BoxRetryableError: Box answered 503") == 1


def test_a_transient_fault_of_a_run_is_recorded_in_the_jobs_trail_a_few_times_however_long_it_lasts(
        store: JobStore) -> None:
    from tasks.jobs import _note_fault
    from tests.unit.fake_box import new_job, users
    from worker.cli.output import FaultWatch
    from worker.errors import BoxTransportError

    job_id = new_job(store, users("a@example.com"))
    watch = FaultWatch(store, job_id, since_ms=0)
    assert watch.last() is None

    class Context:
        pass

    ctx = Context()
    ctx.store = store  # type: ignore[attr-defined]
    for retries in range(100):
        _note_fault(ctx, job_id, BoxTransportError(f"no answer from Box ({retries})"),  # type: ignore[arg-type]
                    retries=retries)
    noted = [e["data"]["error"] for e in store.audit_entries(job_id=job_id) if e["event"] == "fault"]
    assert noted == [f"BoxTransportError: no answer from Box ({n})" for n in (0, 1, 2, 4, 8, 16, 32, 64)]
    assert watch.last() == "BoxTransportError: no answer from Box (64)"


def test_a_fault_recorded_before_the_wait_began_says_nothing_of_now(store: JobStore) -> None:
    from tests.unit.fake_box import new_job, users
    from worker.cli.output import FaultWatch

    job_id = new_job(store, users("a@example.com"))
    store.note(job_id, "fault", {"error": "BoxTransportError: an outage of an hour ago"})
    watch = FaultWatch(store, job_id, since_ms=int(time.time() * 1000) + 1)
    assert watch.last() is None
    time.sleep(0.002)
    store.note(job_id, "fault", {"error": "BoxRetryableError: Box answered 503"})
    assert watch.last() == "BoxRetryableError: Box answered 503"
