"""The runner with fakeredis and a fake Box: resolution, policy, batching, recording, resuming."""

from __future__ import annotations

import pytest

from tests.unit.fake_box import FakeBox, accepted, directory, make_ctx, new_job, refused, users
from worker.box.answers import (
    GROUPS_TERMINATE_ENDPOINT,
    TERMINATE_ACCEPTED_MESSAGE,
    USERS_TERMINATE_ENDPOINT,
    BoxGroup,
    BoxUser,
)
from worker.errors import BatchRetryLater, RetryLater
from worker.jobs.actions import approve
from worker.jobs.model import Approval, CallState, JobState, TargetStatus
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job, submit
from worker.run.runner import RunOutcome, give_up, run_job
from worker.run.sender import drain


def test_one_user_is_accepted_with_boxs_message_recorded(store: JobStore) -> None:
    box = FakeBox(users=[BoxUser(id="17738362", login="jdoe@example.com")])
    job_id = new_job(store, users("JDoe@Example.com"))
    assert run_job(ctx=make_ctx(store, box), job_id=job_id) is RunOutcome.SETTLED
    job = store.load(job_id)
    assert job.state is JobState.SUCCEEDED
    assert job.targets[0].status is TargetStatus.ACCEPTED and job.targets[0].user_id == "17738362"
    assert job.calls[0].message == TERMINATE_ACCEPTED_MESSAGE and job.calls[0].http_status == 202
    assert job.targets[0].call_ids == [job.calls[0].call_id]
    assert box.calls == [("/users/terminate_sessions", ["17738362"])]


def test_unknown_and_ambiguous_logins_send_nothing(store: JobStore) -> None:
    box = FakeBox(users=[BoxUser(id="1", login="casey@example.com"), BoxUser(id="2", login="Casey@Example.com")])
    job_id = new_job(store, users("nobody@example.com", "casey@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    job = store.load(job_id)
    assert [t.status for t in job.targets] == [TargetStatus.NOT_FOUND, TargetStatus.AMBIGUOUS]
    assert job.state is JobState.REFUSED and box.calls == [] and job.calls == []


def test_250_users_go_in_batches_of_100_100_50(store: JobStore) -> None:
    box = FakeBox(users=directory(250))
    job_id = new_job(store, users(*(u.login for u in box.users)))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert [len(ids) for _, ids in box.calls] == [100, 100, 50]
    assert store.load(job_id).state is JobState.SUCCEEDED


def test_duplicate_targets_share_one_id_in_a_call(store: JobStore) -> None:
    box = FakeBox(users=[BoxUser(id="7", login="a@example.com")])
    job_id = new_job(store, [{"type": "user", "login": "a@example.com"}, {"type": "user", "id": "7"}])
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert box.calls == [("/users/terminate_sessions", ["7"])]
    assert all(t.status is TargetStatus.ACCEPTED for t in store.load(job_id).targets)


def test_dry_run_resolves_but_sends_nothing(store: JobStore) -> None:
    box = FakeBox(users=directory(3))
    job_id = new_job(store, users("user00001@example.com", "ghost@example.com"), dry_run=True)
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    job = store.load(job_id)
    assert job.state is JobState.DRY_RUN and box.calls == []
    assert [t.status for t in job.targets] == [TargetStatus.WOULD_TERMINATE, TargetStatus.NOT_FOUND]


def test_global_dry_run_wins_over_the_job(store: JobStore) -> None:
    box = FakeBox(users=directory(1))
    job_id = new_job(store, users("user00001@example.com"))
    run_job(ctx=make_ctx(store, box, dry_run=True), job_id=job_id)
    assert store.load(job_id).state is JobState.DRY_RUN and box.calls == []


def test_protected_login_is_never_sent(store: JobStore) -> None:
    box = FakeBox(users=directory(3))
    job_id = new_job(store, users("user00001@example.com", "user00002@example.com"))
    run_job(ctx=make_ctx(store, box, protected=("user00002@example.com",)), job_id=job_id)
    job = store.load(job_id)
    assert [t.status for t in job.targets] == [TargetStatus.ACCEPTED, TargetStatus.PROTECTED]
    assert box.calls == [("/users/terminate_sessions", ["30000001"])]
    assert job.state is JobState.PARTIAL
    assert job.targets[1].call_ids == [] and [c.ids for c in job.calls] == [["30000001"]]  # never even planned


def test_permanent_error_fails_targets_with_boxs_code_and_request_id(store: JobStore) -> None:
    box = FakeBox(users=directory(1), answers=[refused(403, "access_denied_insufficient_permissions")])
    job_id = new_job(store, users("user00001@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    job = store.load(job_id)
    assert job.state is JobState.FAILED and len(box.calls) == 1
    assert job.targets[0].status is TargetStatus.FAILED
    assert "403 access_denied_insufficient_permissions" in (job.targets[0].detail or "")
    assert job.calls[0].error_code == "access_denied_insufficient_permissions"
    assert job.calls[0].request_id == "req-123"


def test_exhausted_retries_end_targets_dead_and_list_the_job(store: JobStore) -> None:
    box = FakeBox(users=directory(1), answers=[refused(503, "unavailable", exhausted=True, attempts=6)])
    job_id = new_job(store, users("user00001@example.com"))
    ctx = make_ctx(store, box)
    ctx.give_up_after_seconds = 0  # the time to wait Box out is up (see test_sender for the waiting)
    run_job(ctx=ctx, job_id=job_id)
    assert store.load(job_id).targets[0].status is TargetStatus.DEAD
    assert [r.job_id for r in store.list_jobs(state="dead")[0]] == [job_id]


def test_a_400_batch_is_split_to_isolate_the_bad_id(store: JobStore) -> None:
    box = FakeBox(users=directory(4), answers=[refused(400, "bad_request"), accepted(),
                                                refused(400, "bad_request"), accepted(), refused(400, "bad")])
    job_id = new_job(store, users(*(u.login for u in box.users)))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    job = store.load(job_id)
    assert [len(ids) for _, ids in box.calls] == [4, 2, 2, 1, 1]
    assert {endpoint for endpoint, _ in box.calls} == {"/users/terminate_sessions"}  # halves keep their endpoint
    assert [t.status for t in job.targets].count(TargetStatus.ACCEPTED) == 3
    assert job.state is JobState.PARTIAL


def test_retry_later_keeps_the_call_planned_and_a_rerun_sends_it_once(store: JobStore) -> None:
    box = FakeBox(users=directory(150), answers=[accepted(), RetryLater(120, "429")])
    job_id = new_job(store, users(*(u.login for u in box.users)))
    run_job(ctx=make_ctx(store, box), job_id=job_id)  # Box asks to wait: the call is held
    job = store.load(job_id)
    assert [c.state for c in job.calls] == [CallState.ANSWERED, CallState.PLANNED]
    run_job(ctx=make_ctx(store, box, later=3600), job_id=job_id)
    job = store.load(job_id)
    assert job.state is JobState.SUCCEEDED and len(job.calls) == 2
    assert [len(ids) for _, ids in box.calls] == [100, 50, 50]  # the first batch was not sent again
    assert [(c.state, c.http_status, len(c.ids)) for c in job.calls] == [(CallState.ANSWERED, 202, 100),
                                                                        (CallState.ANSWERED, 202, 50)]
    assert all(len(t.call_ids) == 1 for t in job.targets)  # each target points to the one call that carried it


def test_run_budget_hands_over_to_a_later_run(store: JobStore) -> None:
    box = FakeBox(users=directory(30))
    job_id = new_job(store, users(*(u.login for u in box.users)))
    assert run_job(ctx=make_ctx(store, box, budget=-1), job_id=job_id) is RunOutcome.CONTINUE
    assert store.load(job_id).state is JobState.RESOLVING
    assert run_job(ctx=make_ctx(store, box), job_id=job_id) is RunOutcome.SETTLED
    assert store.load(job_id).state is JobState.SUCCEEDED


def test_group_by_exact_name(store: JobStore) -> None:
    box = FakeBox(groups=[BoxGroup(id="55", name="Contractors"), BoxGroup(id="56", name="Contractors EU")])
    job_id = new_job(store, [{"type": "group", "name": "Contractors"}])
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert box.calls == [(GROUPS_TERMINATE_ENDPOINT, ["55"])]


def test_a_settled_job_is_not_run_again(store: JobStore) -> None:
    box = FakeBox(users=directory(1))
    job_id = new_job(store, users("user00001@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert len(box.calls) == 1


def test_cancelled_job_sends_nothing(store: JobStore) -> None:
    box = FakeBox(users=directory(1))
    job_id = new_job(store, users("user00001@example.com"))
    store.transition(job_id, to=JobState.CANCELLED, allowed_from=[JobState.QUEUED])
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert box.calls == [] and store.load(job_id).state is JobState.CANCELLED


def test_give_up_ends_pending_targets_dead(store: JobStore) -> None:
    job_id = new_job(store, users("user00001@example.com"))
    give_up(store=store, job_id=job_id, why="gave up after 100 task retries")
    job = store.load(job_id)
    assert job.state is JobState.FAILED and job.targets[0].status is TargetStatus.DEAD


def test_every_state_change_and_call_is_in_the_audit_stream(store: JobStore) -> None:
    box = FakeBox(users=directory(1))
    job_id = new_job(store, users("user00001@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    entries = store.audit_entries(job_id=job_id)
    states = [(e["data"]["from"], e["data"]["to"]) for e in entries if e["event"] == "state"]
    assert states == [("queued", "resolving"), ("resolving", "terminating"), ("terminating", "succeeded")]
    calls = [e["data"] for e in entries if e["event"] == "call"]
    assert calls and calls[-1]["http_status"] == 202


def test_a_lookup_box_refuses_fails_only_that_target(store: JobStore) -> None:
    from worker.errors import BoxPermanentError

    class RefusingBox(FakeBox):
        def find_users_by_login(self, login: str) -> list[BoxUser]:
            if login.startswith("secret"):
                raise BoxPermanentError(endpoint="/users", status=403, code="access_denied_insufficient_permissions",
                                        message="no", request_id="r-9")
            return super().find_users_by_login(login)

    box = RefusingBox(users=directory(1))
    job_id = new_job(store, users("secret@example.com", "user00001@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    job = store.load(job_id)
    assert [t.status for t in job.targets] == [TargetStatus.FAILED, TargetStatus.ACCEPTED]
    assert "403 access_denied_insufficient_permissions" in (job.targets[0].detail or "")
    assert "r-9" in (job.targets[0].detail or "") and job.state is JobState.PARTIAL


def test_global_dry_run_switched_on_mid_job_holds_the_calls_not_yet_sent(store: JobStore) -> None:
    box = FakeBox(users=directory(150), answers=[accepted(), RetryLater(60, "429")])
    job_id = new_job(store, users(*(u.login for u in box.users)))
    run_job(ctx=make_ctx(store, box), job_id=job_id)  # Box asks to wait: the call is held
    run_job(ctx=make_ctx(store, box, dry_run=True, later=3600), job_id=job_id)  # restarted with BOXCUT_DRY_RUN
    job = store.load(job_id)
    assert [len(ids) for _, ids in box.calls] == [100, 50]  # the held call was never sent again
    assert job.summary() == {"accepted": 100, "would_terminate": 50} and job.state is JobState.PARTIAL


def test_a_404_for_a_whole_batch_is_split_like_a_400(store: JobStore) -> None:
    box = FakeBox(users=directory(2), answers=[refused(404, "not_found"), accepted(), refused(404, "not_found")])
    job_id = new_job(store, users("user00001@example.com", "user00002@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert [len(ids) for _, ids in box.calls] == [2, 1, 1]
    assert store.load(job_id).summary() == {"accepted": 1, "failed": 1}


@pytest.mark.parametrize("protect", ["user00002@example.com", "30000002"], ids=["by login", "by id"])
def test_a_target_protected_after_its_call_was_planned_is_never_sent(store: JobStore, protect: str) -> None:
    """The protection check runs again right before each call: an operator who protects someone while their call
    waits (a 429, a worker restart) keeps that person out of it."""
    box = FakeBox(users=directory(3), answers=[RetryLater(60, "429")])
    job_id = new_job(store, users(*(u.login for u in box.users)))
    run_job(ctx=make_ctx(store, box), job_id=job_id)  # Box asks to wait: the call is held
    assert [ids for _, ids in box.calls] == [["30000001", "30000002", "30000003"]]  # planned and tried once
    run_job(ctx=make_ctx(store, box, protected=(protect,), later=3600), job_id=job_id)  # restarted, it listed
    job = store.load(job_id)
    assert [ids for _, ids in box.calls][1:] == [["30000001", "30000003"]]
    assert [t.status for t in job.targets] == [TargetStatus.ACCEPTED, TargetStatus.PROTECTED, TargetStatus.ACCEPTED]
    assert job.calls[0].ids == ["30000001", "30000003"]


def test_a_planned_call_whose_every_target_became_protected_is_not_sent(store: JobStore) -> None:
    box = FakeBox(users=directory(1), answers=[RetryLater(60, "429")])
    job_id = new_job(store, users("user00001@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)  # Box asks to wait: the call is held
    run_job(ctx=make_ctx(store, box, service_account="30000001", later=3600), job_id=job_id)
    job = store.load(job_id)
    assert len(box.calls) == 1 and job.targets[0].status is TargetStatus.PROTECTED
    message = job.calls[0].message or ""
    assert message.startswith("not sent: no target it named may be terminated now")
    assert "an earlier send" in message  # it was tried once: the record must not say Box never saw it


def test_users_and_groups_each_go_to_their_own_endpoint_with_only_their_own_ids(store: JobStore) -> None:
    box = FakeBox(users=directory(2), groups=[BoxGroup(id="55", name="Sales")], members={"55": directory(1)})
    job_id = new_job(store, [*users("user00001@example.com"), {"type": "group", "id": "55"},
                             *users("user00002@example.com")])
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert sorted(box.calls) == [(GROUPS_TERMINATE_ENDPOINT, ["55"]),
                                 ("/users/terminate_sessions", ["30000001", "30000002"])]
    assert store.load(job_id).state is JobState.SUCCEEDED


def test_a_job_waiting_for_approval_that_is_run_again_still_sends_nothing(store: JobStore) -> None:
    box = FakeBox(users=[BoxUser(id="1", login="boss@example.com", role="admin")])
    job_id = new_job(store, users("boss@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert run_job(ctx=make_ctx(store, box), job_id=job_id) is RunOutcome.SETTLED  # a redelivered task
    assert store.load(job_id).state is JobState.AWAITING_APPROVAL and box.calls == []


def test_a_protected_admin_holds_nothing_up_and_is_never_sent(store: JobStore) -> None:
    """Protection is applied before approval is weighed: a protected (or service-account) admin is simply kept,
    and the rest of the job runs without waiting for a person."""
    box = FakeBox(users=[BoxUser(id="1", login="boss@example.com", role="admin"),
                         BoxUser(id="2", login="jdoe@example.com", role="user")])
    for ctx in (make_ctx(store, box, protected=("boss@example.com",)), make_ctx(store, box, service_account="1")):
        job_id = new_job(store, users("boss@example.com", "jdoe@example.com"))
        run_job(ctx=ctx, job_id=job_id)
        job = store.load(job_id)
        assert job.state is JobState.PARTIAL, job.to_dict()
        assert [t.status for t in job.targets] == [TargetStatus.PROTECTED, TargetStatus.ACCEPTED]
        assert job.targets[0].call_ids == []
    assert box.calls == [("/users/terminate_sessions", ["2"])] * 2


def test_a_split_group_batch_stays_on_the_groups_endpoint(store: JobStore) -> None:
    groups = [BoxGroup(id="55", name="A"), BoxGroup(id="56", name="B")]
    box = FakeBox(groups=groups, members={"55": [], "56": []},
                  answers=[refused(400, "bad", endpoint=GROUPS_TERMINATE_ENDPOINT), accepted(GROUPS_TERMINATE_ENDPOINT),
                           accepted(GROUPS_TERMINATE_ENDPOINT)])
    job_id = new_job(store, [{"type": "group", "id": "55"}, {"type": "group", "id": "56"}])
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert box.calls == [(GROUPS_TERMINATE_ENDPOINT, ["55", "56"]), (GROUPS_TERMINATE_ENDPOINT, ["55"]),
                         (GROUPS_TERMINATE_ENDPOINT, ["56"])]


def test_the_brake_on_before_any_call_ends_the_job_dry_run(store: JobStore) -> None:
    box = FakeBox(users=directory(1), answers=[RetryLater(60, "429")])
    job_id = new_job(store, users("user00001@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)  # Box asks to wait: the call is held
    run_job(ctx=make_ctx(store, box, dry_run=True, later=3600), job_id=job_id)
    job = store.load(job_id)
    assert job.state is JobState.DRY_RUN and job.targets[0].status is TargetStatus.WOULD_TERMINATE


def test_give_up_keeps_what_box_accepted_and_says_why(store: JobStore) -> None:
    box = FakeBox(users=directory(150), answers=[accepted(), RetryLater(60, "429")])
    job_id = new_job(store, users(*(u.login for u in box.users)))
    run_job(ctx=make_ctx(store, box), job_id=job_id)  # Box asks to wait: the call is held
    give_up(store=store, job_id=job_id, why="gave up after 100 task retries")
    job = store.load(job_id)
    assert job.state is JobState.PARTIAL and job.summary() == {"accepted": 100, "dead": 50}
    assert store.audit_entries(job_id=job_id)[-1]["data"]["note"] == "gave up after 100 task retries"


def test_calls_of_a_batch_are_counted_across_task_runs(store: JobStore) -> None:
    """BOXCUT_MAX_CALLS_PER_BATCH bounds the calls Box sees for one batch, however many runs it takes."""
    box = FakeBox(users=directory(1), answers=[BatchRetryLater(60, "429", attempts=3)])
    job_id = new_job(store, users("user00001@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)  # Box asks to wait: the call is held
    assert store.load(job_id).calls[0].attempts == 3
    run_job(ctx=make_ctx(store, box, later=3600), job_id=job_id)  # the fake answers 202 as attempt prior + 1
    assert store.load(job_id).calls[0].attempts == 4


class _Ticking:
    """A clock that moves one second each time it is read, so a run's budget runs out part-way."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_run_whose_budget_ends_between_batches_hands_the_rest_to_a_sender(store: JobStore) -> None:
    box = FakeBox(users=directory(250))
    job_id = new_job(store, users(*(u.login for u in box.users)))
    ctx = make_ctx(store, box, budget=252)  # the clock is read once a target resolved and once a call sent
    ctx.clock = _Ticking()
    kicked: list[str] = []
    ctx.kick_sender = kicked.append
    assert run_job(ctx=ctx, job_id=job_id) is RunOutcome.SETTLED
    job = store.load(job_id)
    assert job.state is JobState.TERMINATING and job.summary().get("pending", 0) > 0
    assert 0 < len(box.calls) < 3
    assert kicked and set(kicked) == {USERS_TERMINATE_ENDPOINT}  # send tasks carry on with the rest
    assert drain(ctx, USERS_TERMINATE_ENDPOINT, deadline=float("inf"))
    job = store.load(job_id)
    assert job.state is JobState.SUCCEEDED and job.summary() == {"accepted": 250}
    assert sum(len(ids) for _, ids in box.calls) == 250


def test_attempts_of_each_run_add_up(store: JobStore) -> None:
    box = FakeBox(users=directory(1), answers=[BatchRetryLater(60, "429", attempts=3),
                                               BatchRetryLater(60, "429", attempts=2)])
    job_id = new_job(store, users("user00001@example.com"))
    for later in (0, 3600):
        run_job(ctx=make_ctx(store, box, later=later), job_id=job_id)  # Box asks to wait: the call is held
    assert store.load(job_id).calls[0].attempts == 5


def test_a_job_submitted_to_wait_for_approval_waits_though_the_policy_finds_nothing(store: JobStore) -> None:
    box = FakeBox(users=[BoxUser(id="17738362", login="jdoe@example.com")])
    request = JobRequest(targets=users("jdoe@example.com"), source="box-shield",
                         approval=Approval(required=True, reasons=["a Box Shield rule asks for approval"]))
    job_id = submit(store=store, enqueue=lambda _j: None, job=build_job(request)).job_id
    assert run_job(ctx=make_ctx(store, box), job_id=job_id) is RunOutcome.SETTLED
    job = store.load(job_id)
    assert job.state is JobState.AWAITING_APPROVAL and box.calls == []
    assert job.approval is not None and job.approval.reasons == ["a Box Shield rule asks for approval"]
    approve(store=store, enqueue=lambda _j: None, job_id=job_id, actor="cli:alice")
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert store.load(job_id).state is JobState.SUCCEEDED
    assert box.calls == [("/users/terminate_sessions", ["17738362"])]


def test_a_job_recorded_only_is_never_run(store: JobStore) -> None:
    box = FakeBox(users=[BoxUser(id="17738362", login="jdoe@example.com")])
    request = JobRequest(targets=users("jdoe@example.com"), source="box-shield", record_only="a rule records it")
    job_id = submit(store=store, enqueue=lambda _j: pytest.fail("a recorded job is not enqueued"),
                    job=build_job(request)).job_id
    assert run_job(ctx=make_ctx(store, box), job_id=job_id) is RunOutcome.SETTLED
    job = store.load(job_id)
    assert job.state is JobState.RECORDED and job.note == "a rule records it"
    assert [t.status for t in job.targets] == [TargetStatus.RECORDED] and box.calls == []
