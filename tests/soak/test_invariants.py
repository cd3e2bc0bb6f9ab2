"""The soak's invariants: a world where everything held passes, and each planted fault is named by its
invariant and its job."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from tests.soak.invariants import Notifying, World, check
from worker.jobs.model import Approval, Call, CallState, Job, JobState, Target, TargetStatus, TargetType

T0, T1, T2 = "2026-12-06T08:00:00.000Z", "2026-12-06T08:00:01.000Z", "2026-12-06T08:00:02.000Z"


def _job(job_id: str, state: JobState, *targets: Target, calls: tuple[Call, ...] = (),
         approval: Approval | None = None) -> Job:
    return Job(job_id=job_id, state=state, source="generic", reason="soak", requested_by="generic:a",
               dry_run=False, created_at=T0, updated_at=T2, targets=list(targets), calls=list(calls),
               approval=approval)


def _target(user_id: str, status: TargetStatus, *call_ids: str) -> Target:
    return Target(input={"type": "user", "id": user_id}, type=TargetType.USER, user_id=user_id, status=status,
                  call_ids=list(call_ids))


def _call(call_id: str, ids: list[str], *, status: int = 202, attempts: int = 1, started: str = T1) -> Call:
    return Call(call_id=call_id, endpoint="/users/terminate_sessions", ids=ids, state=CallState.ANSWERED,
                http_status=status, attempts=attempts, started_at=started, finished_at=T2)


def _request(*ids: str, status: int = 202, at: float = 0.5) -> dict[str, Any]:
    """A request boxsim saw, `at` seconds after T1 (within call c-1's rounds)."""
    return {"method": "POST", "path": "/2.0/users/terminate_sessions", "body": {"user_ids": list(ids)},
            "status": status, "time": _epoch(T1) + at}


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _trail(*moves: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = [{"event": "created", "at": T0, "data": {}}]
    before = "queued"
    for at, to in zip([T0, T1, T2, T2], moves, strict=False):
        entries.append({"event": "state", "at": at, "data": {"from": before, "to": to}})
        before = to
    return entries


def _good() -> World:
    call = _call("c-1", ["11", "12"])
    a = _job("j-a", JobState.SUCCEEDED, _target("11", TargetStatus.ACCEPTED, "c-1"), calls=(call,))
    b = _job("j-b", JobState.SUCCEEDED, _target("12", TargetStatus.ACCEPTED, "c-1"), calls=(call,))
    waiting = _job("j-w", JobState.AWAITING_APPROVAL, _target("13", TargetStatus.PENDING),
                   approval=Approval.needed(["brake: source generic:a had 25 users"]))
    trails = {"j-a": _trail("resolving", "terminating", "succeeded"),
              "j-b": _trail("resolving", "terminating", "succeeded"), "j-w": _trail("resolving", "awaiting_approval")}
    return World(answered=["j-a", "j-b", "j-w"], jobs={"j-a": a, "j-b": b, "j-w": waiting}, trails=trails,
                 requests=[_request("11", "12")], leftovers={"celery:boxcut": 0, "send:users:waiting": 0})


def _named(world: World) -> set[tuple[str, str]]:
    return {(v.invariant, v.subject.split(":")[0]) for v in check(world)}


def test_a_world_where_everything_held_has_no_violation() -> None:
    assert check(_good()) == []


def test_a_job_answered_202_and_left_resolving_or_missing_is_named() -> None:
    world = _good()
    stuck = {**world.jobs, "j-b": replace(world.jobs["j-b"], state=JobState.RESOLVING)}
    assert ("job-settles", "j-b") in _named(replace(world, jobs=stuck))
    assert ("answered-has-job", "j-gone") in _named(replace(world, answered=[*world.answered, "j-gone"]))
    bare = {**world.jobs, "j-w": replace(world.jobs["j-w"], approval=None)}
    assert ("waits-with-reason", "j-w") in _named(replace(world, jobs=bare))


def test_a_protected_target_that_rode_an_accepted_call_is_named() -> None:
    world = _good()
    job = world.jobs["j-a"]
    protected = replace(job, targets=[replace(job.targets[0], status=TargetStatus.PROTECTED)])
    assert ("protected-never-sent", "j-a") in _named(replace(world, jobs={**world.jobs, "j-a": protected}))


def test_a_listed_login_accepted_as_if_unprotected_is_named() -> None:
    world = _good()
    job = world.jobs["j-a"]
    unmarked = replace(job, targets=[replace(job.targets[0], login="ceo@example.com")])
    listed = replace(world, jobs={**world.jobs, "j-a": unmarked}, protected={"ceo@example.com": ""})
    assert [v.invariant for v in check(listed)] == ["protected-never-sent"] and "ceo@example.com" in str(
        check(listed)[0])
    # Protected only after Box accepted its request (the list grew mid-run): that request was allowed.
    assert check(replace(listed, protected={"ceo@example.com": T2})) == []
    # Protected before the request Box accepted, though after the call's first round: named (a call sent again
    # keeps its start).
    assert [v.invariant for v in check(replace(listed, protected={"ceo@example.com": T1}))] == [
        "protected-never-sent"]


def test_a_call_started_after_its_job_was_cancelled_is_named() -> None:
    world = _good()
    cancelled = replace(world.jobs["j-a"], state=JobState.CANCELLED)
    cancel = {"event": "state", "at": T0, "data": {"from": "terminating", "to": "cancelled"}}  # before call c-1
    trails = {**world.trails, "j-a": [*_trail("resolving", "terminating"), cancel]}
    found = _named(replace(world, jobs={**world.jobs, "j-a": cancelled}, trails=trails))
    assert ("cancelled-never-sent", "j-a") in found


def test_an_id_box_accepted_that_no_job_allowed_is_named() -> None:
    world = _good()
    violations = check(replace(world, requests=[*world.requests, _request("99")]))
    assert [v.invariant for v in violations].count("accepted-id-allowed") == 1 and "99" in str(violations)


def test_a_request_box_saw_that_no_call_record_counts_is_named() -> None:
    world = _good()
    twice = replace(world, requests=[_request("11", "12", status=503), _request("11", "12")])
    assert "requests-counted" in {v.invariant for v in check(twice)}


def test_an_accepted_target_whose_last_call_was_refused_is_named() -> None:
    world = _good()
    job = world.jobs["j-a"]
    refused = _call("c-2", ["11"], status=400)
    changed = replace(job, targets=[replace(job.targets[0], call_ids=["c-1", "c-2"])], calls=[*job.calls, refused])
    found = _named(replace(world, jobs={**world.jobs, "j-a": changed}, requests=[*world.requests,
                                                                                  _request("11", status=400)]))
    assert ("accepted-points-to-accepted-call", "j-a") in found


def test_a_state_change_without_its_audit_entry_is_named() -> None:
    world = _good()
    trails = {**world.trails, "j-a": _trail("resolving", "terminating")}
    assert ("state-audited", "j-a") in _named(replace(world, trails=trails))
    assert ("state-audited", "j-a") in _named(replace(world, trails={**world.trails, "j-a": []}))


RECEIVER = "http://127.0.0.1:9/notify"


def _notice(job_id: str, kind: str, state: str, audit_id: str, *, status: int = 200,
            signed: bool = True) -> dict[str, Any]:
    body = {"type": f"boxcut.job.{kind}", "id": f"{job_id}/{audit_id}", "job_id": job_id, "state": state}
    return {"receiver": RECEIVER, "at": 1.0, "status": status, "signed": signed, "body": body}


def _notified() -> World:
    """The good world, notifying one receiver (3 attempts allowed): j-a and j-b ended, j-w waits, each told once."""
    notices = [_notice("j-a", "finished", "succeeded", "1-0"), _notice("j-b", "finished", "succeeded", "2-0"),
               _notice("j-w", "awaiting_approval", "awaiting_approval", "3-0")]
    return replace(_good(), notify=Notifying(receivers=(RECEIVER,), attempts=3), notices=notices)


def _notified_named(world: World) -> set[tuple[str, str]]:
    return {found for found in _named(world) if found[0].startswith("notified")}


def test_a_world_where_every_job_was_notified_has_no_notification_violation() -> None:
    assert check(_notified()) == []
    world = _notified()
    # Refused twice and then delivered, and delivered twice (a worker killed after the answer): within 3 attempts.
    refused = [_notice("j-a", "finished", "succeeded", "1-0", status=500)] * 2
    again = [*refused, *world.notices, _notice("j-b", "finished", "succeeded", "2-0")]
    assert _notified_named(replace(world, notices=again)) == set()
    # Notifications not checked (no settings), or none owed before `since`: nothing is missing.
    assert _notified_named(replace(world, notify=None, notices=[])) == set()
    assert _notified_named(replace(world, notify=Notifying(receivers=(RECEIVER,), since="2027"), notices=[])) == set()


def test_a_job_whose_notice_never_arrived_is_named() -> None:
    world = _notified()
    missing = [n for n in world.notices if n["body"]["job_id"] != "j-w"]
    assert _notified_named(replace(world, notices=missing)) == {("notified", "j-w")}
    # Refused every time, unsigned, or told of the wrong state: not a notice of that move.
    for wrong in (_notice("j-a", "finished", "succeeded", "1-0", status=500),
                  _notice("j-a", "finished", "succeeded", "1-0", signed=False),
                  _notice("j-a", "finished", "failed", "1-0")):
        others = [n for n in world.notices if n["body"]["job_id"] != "j-a"]
        assert ("notified", "j-a") in _named(replace(world, notices=[*others, wrong]))
    # A second receiver that got nothing is owed every notice.
    two = replace(world, notify=Notifying(receivers=(RECEIVER, "http://127.0.0.1:10/notify"), attempts=3))
    assert _notified_named(two) == {("notified", "j-a"), ("notified", "j-b"), ("notified", "j-w")}


def test_a_job_that_waited_again_is_owed_a_second_notice() -> None:
    world = _notified()
    trails = {**world.trails, "j-w": _trail("resolving", "awaiting_approval", "queued", "awaiting_approval")}
    waited_twice = replace(world, trails=trails)
    assert _notified_named(waited_twice) == {("notified", "j-w")}
    # Told again under the same id (a retry of the first) is still one notice; a new id is the second.
    retried = [*world.notices, _notice("j-w", "awaiting_approval", "awaiting_approval", "3-0")]
    assert _notified_named(replace(waited_twice, notices=retried)) == {("notified", "j-w")}
    second = [*world.notices, _notice("j-w", "awaiting_approval", "awaiting_approval", "4-0")]
    assert _notified_named(replace(waited_twice, notices=second)) == set()


def test_a_notice_received_more_often_than_its_attempts_is_named() -> None:
    world = _notified()
    four = [*world.notices, *[_notice("j-b", "finished", "succeeded", "2-0", status=500)] * 3]
    assert _notified_named(replace(world, notices=four)) == {("notified-once", "j-b")}
    three = [*world.notices, *[_notice("j-b", "finished", "succeeded", "2-0")] * 2]
    assert _notified_named(replace(world, notices=three)) == set()


def test_jobs_of_no_notifying_kind_need_no_notice() -> None:
    world = _notified()
    recorded = _job("j-r", JobState.RECORDED, _target("14", TargetStatus.PENDING))
    running = _job("j-q", JobState.RESOLVING, _target("15", TargetStatus.PENDING))
    held = [*_trail("resolving"), {"event": "state", "at": T1,
                                   "data": {"from": "resolving", "to": "awaiting_approval", "actor": "brake"}}]
    by_brake = _job("j-h", JobState.AWAITING_APPROVAL, _target("16", TargetStatus.PENDING),
                    approval=Approval.needed(["brake: source generic:a had 25 users"]))
    quiet = replace(world, jobs={**world.jobs, "j-r": recorded, "j-q": running, "j-h": by_brake},
                    trails={**world.trails, "j-r": _trail(), "j-q": _trail("resolving"), "j-h": held})
    assert _notified_named(quiet) == set()
    # The brake's engagement is told once, on the job whose hold engaged it.
    engaged = {"event": "brake_engaged", "at": T1, "data": {"source": "generic:a"}}
    told = replace(quiet, trails={**quiet.trails, "j-h": [*held, engaged]})
    assert _notified_named(told) == {("notified", "j-h")}
    notice = _notice("j-h", "brake_engaged", "awaiting_approval", "5-0")
    assert _notified_named(replace(told, notices=[*told.notices, notice])) == set()


def test_a_queue_left_with_work_after_the_faults_is_named() -> None:
    world = replace(_good(), leftovers={"celery:boxcut": 0, "send:users:waiting": 2})
    assert _named(world) == {("queue-drained", "send")}


def test_a_job_nobody_was_answered_for_left_resolving_is_named() -> None:
    """An intake killed after writing the record: no 202 arrived, the job must settle all the same."""
    world = _good()
    lost = _job("j-lost", JobState.RESOLVING)
    found = _named(replace(world, jobs={**world.jobs, "j-lost": lost}, trails={**world.trails, "j-lost": _trail()}))
    assert ("job-settles", "j-lost") in found


def test_a_target_accepted_while_its_job_waited_for_approval_is_named() -> None:
    world = _good()
    wait = {"event": "state", "at": T0, "data": {"from": "resolving", "to": "awaiting_approval"}}
    trail = [*_trail("resolving"), wait,
             {"event": "state", "at": T2, "data": {"from": "awaiting_approval", "to": "succeeded"}}]
    assert ("held-never-sent", "j-a") in _named(replace(world, trails={**world.trails, "j-a": trail}))
    approved = [*_trail("resolving"), wait,
                {"event": "state", "at": T1, "data": {"from": "awaiting_approval", "to": "terminating"}},
                {"event": "state", "at": T2, "data": {"from": "terminating", "to": "succeeded"}}]
    assert check(replace(world, trails={**world.trails, "j-a": approved})) == []


def test_an_id_box_accepted_whose_target_did_not_end_accepted_is_named() -> None:
    world = _good()
    job = world.jobs["j-b"]
    failed = replace(job, targets=[replace(job.targets[0], status=TargetStatus.FAILED)])
    found = check(replace(world, jobs={**world.jobs, "j-b": failed}))
    assert "accepted-id-allowed" in {v.invariant for v in found} and "12" in str(found)


def test_more_requests_than_the_calls_count_is_named_even_when_each_is_covered() -> None:
    world = _good()
    thrice = replace(world, requests=[_request("11", "12"), _request("11", "12", at=0.6)])
    assert "requests-counted" in {v.invariant for v in check(thrice)}


def test_a_move_missing_from_the_middle_of_a_trail_is_named() -> None:
    world = _good()
    gap = [{"event": "created", "at": T0, "data": {}},
           {"event": "state", "at": T0, "data": {"from": "queued", "to": "resolving"}},
           {"event": "state", "at": T2, "data": {"from": "terminating", "to": "succeeded"}}]
    assert ("state-audited", "j-a") in _named(replace(world, trails={**world.trails, "j-a": gap}))


def test_an_event_whose_answers_named_two_jobs_is_named() -> None:
    world = replace(_good(), event_jobs={"siem-a:e-1": {"j-a"}, "siem-a:e-2": {"j-a", "j-b"}})
    assert _named(world) == {("one-job-per-event", "siem-a")}
