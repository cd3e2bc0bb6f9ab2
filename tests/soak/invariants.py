"""The invariants a soak checks afterwards, from what boxsim saw, the job records and their audit trails.

Each check is a plain function of recorded facts, so a unit test can hand it a world with one planted fault and
see it named. A violation names the job (or the request) and the invariant it breaks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.jobs.model import CallState, Job, JobState, TargetStatus

TERMINATE_PATHS = {"/2.0/users/terminate_sessions": "user_ids", "/2.0/groups/terminate_sessions": "group_ids"}


@dataclass(frozen=True)
class Violation:
    """One invariant that does not hold: which, about what, and the facts that show it."""

    invariant: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.subject}: {self.detail}"


@dataclass(frozen=True)
class World:
    """What a soak recorded: the job ids its 202s named, every job record, each job's audit trail, and
    boxsim's request log."""

    answered: list[str]
    jobs: Mapping[str, Job]
    trails: Mapping[str, list[dict[str, Any]]]
    requests: list[dict[str, Any]]
    # Logins BOXCUT_PROTECTED_USERS lists, each with since when (ISO; "" from the start): no call that started
    # after that may carry them to Box.
    protected: Mapping[str, str] = field(default_factory=dict)


def check(world: World) -> list[Violation]:
    """Every invariant, in order; an empty list when all hold."""
    return [*answered_jobs_settle(world), *nothing_sent_that_was_held(world), *accepted_ids_were_allowed(world),
            *requests_are_counted(world), *state_changes_are_audited(world)]


def answered_jobs_settle(world: World) -> Iterable[Violation]:
    """Every alert answered 202 has a job that reached a final state, or waits for approval with a reason."""
    for job_id in sorted(set(world.answered)):
        job = world.jobs.get(job_id)
        if job is None:
            yield Violation("answered-has-job", job_id, "answered 202, but no job record exists")
        elif job.state is JobState.AWAITING_APPROVAL:
            if not (job.approval and job.approval.reasons):
                yield Violation("waits-with-reason", job_id, "awaiting_approval with no approval reason")
        elif not job.state.is_final:
            yield Violation("job-settles", job_id, f"still {job.state.value} after the faults stopped and the drain")


def nothing_sent_that_was_held(world: World) -> Iterable[Violation]:
    """No target was sent (a call recorded for it that Box accepted) that was protected, or whose job was
    cancelled before that call started."""
    for job_id, job in sorted(world.jobs.items()):
        calls = {c.call_id: c for c in job.calls}
        cancelled_at = _cancelled_at(world.trails.get(job_id, []))
        for index, target in enumerate(job.targets):
            accepted = [calls[c] for c in target.call_ids if c in calls and calls[c].http_status == 202]
            since = world.protected.get((target.login or "").lower())
            listed = [c for c in accepted if since is not None and (c.started_at or "") > since]
            if (target.status is TargetStatus.PROTECTED and accepted) or listed:
                call = (listed or accepted)[0]
                yield Violation("protected-never-sent", f"{job_id}:{index}",
                                f"{target.login} is protected, but call {call.call_id} (started {call.started_at}) "
                                "carried it to Box")
            late = [c for c in accepted if cancelled_at and c.started_at and c.started_at > cancelled_at]
            if late:
                yield Violation("cancelled-never-sent", f"{job_id}:{index}",
                                f"call {late[0].call_id} started {late[0].started_at}, after the cancel at "
                                f"{cancelled_at}")


def accepted_ids_were_allowed(world: World) -> Iterable[Violation]:
    """Every id Box accepted was named by a job target that ends accepted (a job that allowed it)."""
    allowed = {t.box_id for job in world.jobs.values() for t in job.targets if t.status is TargetStatus.ACCEPTED}
    for request in _terminate_requests(world.requests):
        if request.get("status") != 202:
            continue
        for box_id in _ids(request):
            if box_id not in allowed:
                yield Violation("accepted-id-allowed", f"request at {request.get('time')}",
                                f"Box accepted id {box_id}, which no job's accepted target names")


def requests_are_counted(world: World) -> Iterable[Violation]:
    """Every terminate request boxsim saw is counted in a call record (attempts count each request written down
    before it is sent) whose ids, with those an earlier round named, cover the request's; and every accepted target
    points to an accepted call."""
    calls = {c.call_id: c for job in world.jobs.values() for c in job.calls}
    seen = Counter(_request_key(r) for r in _terminate_requests(world.requests))
    for (endpoint, ids), requests in sorted(seen.items()):
        covering = [c for c in calls.values() if c.endpoint == endpoint and set(ids) <= {*c.ids, *c.earlier_ids}]
        counted = sum(c.attempts for c in covering)
        if counted < requests:
            shown = "; ".join(f"{c.call_id} {c.state.value} HTTP {c.http_status} attempts {c.attempts}: {c.message}"
                              for c in covering)
            yield Violation("requests-counted", f"{endpoint} {','.join(ids)[:80]}",
                            f"boxsim saw {requests} requests, call records count {counted} ({shown or 'no call'})")
    for job_id, job in sorted(world.jobs.items()):
        for index, target in enumerate(job.targets):
            if target.status is not TargetStatus.ACCEPTED:
                continue
            last = calls.get(target.call_ids[-1]) if target.call_ids else None
            if last is None or last.state is not CallState.ANSWERED or last.http_status != 202:
                yield Violation("accepted-points-to-accepted-call", f"{job_id}:{index}",
                                f"accepted, but its last call is {last.call_id if last else 'missing'}"
                                f"{f' (HTTP {last.http_status})' if last else ''}")


def state_changes_are_audited(world: World) -> Iterable[Violation]:
    """A job's audit trail ends in the state its record shows: every change of state has its entry."""
    for job_id, job in sorted(world.jobs.items()):
        moves = [e for e in world.trails.get(job_id, []) if e.get("event") == "state"]
        created = [e for e in world.trails.get(job_id, []) if e.get("event") == "created"]
        if not created:
            yield Violation("state-audited", job_id, "its trail has no `created` entry")
            continue
        last = moves[-1]["data"].get("to") if moves else JobState.QUEUED.value
        if last != job.state.value and not (not moves and job.state is JobState.RECORDED):
            yield Violation("state-audited", job_id, f"record says {job.state.value}, its trail's last move is to "
                            f"{last}")


def _cancelled_at(trail: list[dict[str, Any]]) -> str | None:
    for entry in trail:
        if entry.get("event") == "state" and entry["data"].get("to") == JobState.CANCELLED.value:
            return str(entry.get("at"))
    return None


def _terminate_requests(requests: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if r.get("method") == "POST" and r.get("path") in TERMINATE_PATHS]


def _ids(request: dict[str, Any]) -> list[str]:
    body = request.get("body") or {}
    return [str(i) for i in body.get(TERMINATE_PATHS[request["path"]], [])] if isinstance(body, dict) else []


def _request_key(request: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    endpoint = str(request["path"]).removeprefix("/2.0")
    return endpoint, tuple(sorted(_ids(request)))
