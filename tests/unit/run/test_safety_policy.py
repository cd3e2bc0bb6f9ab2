"""The safety policy in the runner: protection, the service account, admins, blast radius, approval, retry."""

from __future__ import annotations

import pytest

from tests.unit.fake_box import FakeBox, directory, make_ctx, new_job, refused, users
from worker.box.answers import BoxGroup, BoxUser
from worker.errors import BoxAnswerMismatch, BoxPermanentError, InvalidTransition, NotEnqueued
from worker.jobs import actions as job_actions
from worker.jobs.model import JobState, TargetStatus
from worker.jobs.store import JobStore
from worker.run.context import RunContext
from worker.run.directory_cache import DirectoryCache
from worker.run.runner import refresh_directory, run_job


def engineering(n: int = 30) -> FakeBox:
    members = directory(n)
    return FakeBox(users=members, groups=[BoxGroup(id="55", name="Engineering")], members={"55": members})


def test_a_group_of_30_waits_for_approval_and_sends_nothing_until_approved(store: JobStore) -> None:
    box = engineering(30)
    job_id = new_job(store, [{"type": "group", "name": "Engineering"}])
    run_job(ctx=make_ctx(store, box, threshold=25), job_id=job_id)
    job = store.load(job_id)
    assert job.state is JobState.AWAITING_APPROVAL and box.calls == []
    assert job.blast_radius == 30 and job.approval is not None
    assert "30 users" in job.approval.reasons[0] and job.approval.approved_by is None
    run_job(ctx=make_ctx(store, box, threshold=25), job_id=job_id)  # a redelivery changes nothing
    assert box.calls == []

    enqueued: list[str] = []
    job_actions.approve(store=store, enqueue=enqueued.append, job_id=job_id, actor="cli:alice")
    assert enqueued == [job_id]
    run_job(ctx=make_ctx(store, box, threshold=25), job_id=job_id)
    job = store.load(job_id)
    assert job.state is JobState.SUCCEEDED and box.calls == [("/groups/terminate_sessions", ["55"])]
    assert job.approval is not None and job.approval.approved_by == "cli:alice" and job.approval.approved_at


def test_approving_a_job_that_does_not_wait_is_refused(store: JobStore) -> None:
    job_id = new_job(store, users("user00001@example.com"))
    with pytest.raises(InvalidTransition):
        job_actions.approve(store=store, enqueue=lambda _: None, job_id=job_id, actor="cli:alice")


def test_within_the_threshold_no_approval_is_needed(store: JobStore) -> None:
    box = engineering(25)
    job_id = new_job(store, [{"type": "group", "name": "Engineering"}])
    run_job(ctx=make_ctx(store, box, threshold=25), job_id=job_id)
    assert store.load(job_id).state is JobState.SUCCEEDED


def test_an_admin_waits_for_approval_unless_listed(store: JobStore) -> None:
    box = FakeBox(users=[BoxUser(id="1", login="boss@example.com", role="admin"), *directory(1)])
    waiting = new_job(store, users("boss@example.com"))
    run_job(ctx=make_ctx(store, box, threshold=25), job_id=waiting)
    job = store.load(waiting)
    assert job.state is JobState.AWAITING_APPROVAL and box.calls == []
    assert job.approval is not None and "boss@example.com is a Box admin" in job.approval.reasons[0]

    allowed = new_job(store, users("boss@example.com"))
    run_job(ctx=make_ctx(store, box, threshold=25, allowed_admins=("boss@example.com",)), job_id=allowed)
    assert store.load(allowed).state is JobState.SUCCEEDED


def test_the_service_account_itself_is_protected(store: JobStore) -> None:
    box = FakeBox(users=[BoxUser(id="900", login="AutomationUser_1@boxdevedition.com"), *directory(1)])
    job_id = new_job(store, [{"type": "user", "id": "900"}, *users("user00001@example.com")])
    run_job(ctx=make_ctx(store, box, service_account="900"), job_id=job_id)
    job = store.load(job_id)
    assert [t.status for t in job.targets] == [TargetStatus.PROTECTED, TargetStatus.ACCEPTED]
    assert "service account" in (job.targets[0].detail or "")
    assert box.calls == [("/users/terminate_sessions", ["30000001"])]


def test_a_pre_approved_job_runs_past_the_threshold(store: JobStore) -> None:
    from worker.jobs.submit import JobRequest, build_job, submit

    box = FakeBox(users=directory(40))
    request = JobRequest(targets=users(*(u.login for u in box.users)), source="offboarding",
                         approval=job_actions.pre_approval("cli:alice"))
    job_id = submit(store=store, enqueue=lambda _: None, job=build_job(request)).job_id
    run_job(ctx=make_ctx(store, box, threshold=25), job_id=job_id)
    assert store.load(job_id).state is JobState.SUCCEEDED


def test_dry_run_says_whether_a_real_run_would_wait(store: JobStore) -> None:
    box = engineering(30)
    job_id = new_job(store, [{"type": "group", "name": "Engineering"}], dry_run=True)
    run_job(ctx=make_ctx(store, box, threshold=25), job_id=job_id)
    job = store.load(job_id)
    assert job.state is JobState.DRY_RUN and box.calls == []
    assert job.approval is not None and job.approval.required is True


def test_expand_groups_records_member_logins(store: JobStore) -> None:
    from worker.jobs.submit import JobRequest, build_job, submit

    box = engineering(3)
    request = JobRequest(targets=[{"type": "group", "name": "Engineering"}], source="test", expand_groups=True)
    job_id = submit(store=store, enqueue=lambda _: None, job=build_job(request)).job_id
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    target = store.load(job_id).targets[0]
    assert target.members == ["user00001@example.com", "user00002@example.com", "user00003@example.com"]
    assert target.member_count == 3


def test_retry_sends_only_the_failed_targets_again(store: JobStore) -> None:
    box = FakeBox(users=directory(3), answers=[refused(503, "unavailable", exhausted=True, attempts=6)])
    job_id = new_job(store, users("user00001@example.com"))
    second = new_job(store, users("user00002@example.com", "ghost@example.com", "user00003@example.com"))
    impatient = make_ctx(store, box)
    impatient.give_up_after_seconds = 0  # no waiting Box out: the round's end is the end
    run_job(ctx=impatient, job_id=job_id)
    assert store.load(job_id).targets[0].status is TargetStatus.DEAD
    box.answers = [refused(403, "access_denied_insufficient_permissions")]
    run_job(ctx=make_ctx(store, box, batch_size=1), job_id=second)
    job = store.load(second)
    assert [t.status for t in job.targets] == [TargetStatus.FAILED, TargetStatus.NOT_FOUND, TargetStatus.ACCEPTED]
    calls_before = len(box.calls)

    assert job_actions.retry(store=store, enqueue=lambda _: None, job_id=second, actor="cli:alice").targets == 1
    run_job(ctx=make_ctx(store, box, batch_size=1), job_id=second)
    job = store.load(second)
    assert box.calls[calls_before:] == [("/users/terminate_sessions", ["30000002"])]
    assert [t.status for t in job.targets] == [TargetStatus.ACCEPTED, TargetStatus.NOT_FOUND, TargetStatus.ACCEPTED]
    assert len(job.targets[0].call_ids) == 2 and len(job.calls) == 3  # the old call stays in the record
    assert job.state is JobState.PARTIAL

    assert [r.job_id for r in store.list_jobs(state="dead")[0]] == [job_id]
    job_actions.retry(store=store, enqueue=lambda _: None, job_id=job_id, actor="cli:alice")
    assert store.list_jobs(state="dead")[0] == []


def test_a_large_job_resolves_from_the_directory_copy(store: JobStore) -> None:
    box = FakeBox(users=directory(300))
    ctx = make_ctx(store, box)
    ctx.directory = DirectoryCache(store.redis, key_prefix="t:", ttl_seconds=600)
    ctx.directory_min_targets = 200
    assert ctx.directory.ensure(box.all_users)  # a copy made a moment ago, by another job
    box.users.append(BoxUser(id="999", login="late@example.com"))  # created since: not in the copy
    job_id = new_job(store, users(*[u.login for u in box.users[:250]], "late@example.com"))
    run_job(ctx=ctx, job_id=job_id)
    job = store.load(job_id)
    assert job.state is JobState.SUCCEEDED and box.directory_reads == 1  # the copy was shared, not re-read
    assert {t.resolved_by for t in job.targets[:250]} == {"directory"}
    assert job.targets[250].resolved_by == "lookup" and job.targets[250].user_id == "999"
    assert box.lookups == 1  # only the login the copy lacked

    assert job.targets[0].directory_as_of == ctx.directory.built_at() and job.targets[250].directory_as_of is None

    small = new_job(store, users("user00001@example.com"))  # a copy in place costs nothing: even one alert uses it
    run_job(ctx=ctx, job_id=small)
    assert store.load(small).targets[0].resolved_by == "directory" and box.lookups == 1


def _copying_ctx(store: JobStore, box: FakeBox) -> RunContext:
    ctx = make_ctx(store, box)
    ctx.directory = DirectoryCache(store.redis, key_prefix="t:", ttl_seconds=600)
    return ctx


def test_without_a_copy_a_small_job_looks_up_and_a_job_larger_than_the_directory_copies_it(store: JobStore) -> None:
    box = FakeBox(users=directory(1500))  # two pages
    ctx = _copying_ctx(store, box)
    ctx.directory_min_targets = 200
    assert ctx.directory is not None
    run_job(ctx=ctx, job_id=new_job(store, users("user00001@example.com")))  # size unknown: 200 lookups decide
    assert box.directory_reads == 0 and box.lookups == 1
    ctx.directory.note_size(1500)
    run_job(ctx=ctx, job_id=new_job(store, users("user00002@example.com")))  # 1 lookup < 2 pages
    assert box.directory_reads == 0 and box.lookups == 2
    run_job(ctx=ctx, job_id=new_job(store, users("user00003@example.com", "user00004@example.com")))  # 2 >= 2
    assert box.directory_reads == 1 and box.lookups == 2


def test_lookups_other_jobs_wait_to_make_count_toward_copying(store: JobStore) -> None:
    """An alert storm: many one-person jobs waiting make the copy cheaper than a lookup each."""
    box = FakeBox(users=directory(1500))
    ctx = _copying_ctx(store, box)
    assert ctx.directory is not None
    ctx.directory.note_size(1500)
    waiting = [new_job(store, users(f"user{i:05d}@example.com")) for i in range(1, 4)]  # three queued jobs
    run_job(ctx=ctx, job_id=waiting[0])
    assert box.directory_reads == 1 and box.lookups == 0
    job = store.load(waiting[0])
    assert job.targets[0].resolved_by == "directory" and job.state is JobState.SUCCEEDED


def test_a_group_never_pays_for_a_whole_copy(store: JobStore) -> None:
    box = engineering(3)
    ctx = _copying_ctx(store, box)
    run_job(ctx=ctx, job_id=new_job(store, [{"type": "group", "name": "Engineering"}]))
    assert box.directory_reads == 0


def test_the_background_refresh_copies_a_small_directory_and_leaves_a_large_one(store: JobStore) -> None:
    box = FakeBox(users=directory(30))
    ctx = _copying_ctx(store, box)
    assert refresh_directory(ctx, max_users=100, max_age_seconds=300) == "copied"
    assert box.directory_reads == 1 and ctx.directory is not None and ctx.directory.ready()
    assert refresh_directory(ctx, max_users=100, max_age_seconds=300).endswith("s old")  # fresh: left alone
    assert refresh_directory(ctx, max_users=100, max_age_seconds=0) == "copied"  # older than asked: copied again
    assert box.directory_reads == 2
    big = _copying_ctx(store, FakeBox(users=directory(30)))
    assert big.directory is not None
    big.directory.note_size(50_000)
    assert "too many" in refresh_directory(big, max_users=20_000, max_age_seconds=300)


def test_a_group_holding_a_protected_member_is_never_terminated(store: JobStore) -> None:
    box = engineering(3)
    job_id = new_job(store, [{"type": "group", "name": "Engineering"}])
    run_job(ctx=make_ctx(store, box, protected=("user00002@example.com",)), job_id=job_id)
    job = store.load(job_id)
    assert job.targets[0].status is TargetStatus.PROTECTED and box.calls == []
    assert "user00002@example.com" in (job.targets[0].detail or "")


def test_a_group_holding_the_service_account_is_never_terminated(store: JobStore) -> None:
    box = engineering(3)
    job_id = new_job(store, [{"type": "group", "id": "55"}])
    run_job(ctx=make_ctx(store, box, service_account="30000003"), job_id=job_id)
    assert store.load(job_id).targets[0].status is TargetStatus.PROTECTED and box.calls == []


def test_a_group_holding_an_admin_waits_for_approval(store: JobStore) -> None:
    boss = BoxUser(id="1", login="boss@example.com", role="admin")
    box = FakeBox(users=[boss, *directory(2)], groups=[BoxGroup(id="55", name="Engineering")],
                  members={"55": [BoxUser(id="1", login="boss@example.com", role=None), *directory(2)]})
    job_id = new_job(store, [{"type": "group", "name": "Engineering"}])
    run_job(ctx=make_ctx(store, box), job_id=job_id)  # the membership carries no role: get_user says admin
    job = store.load(job_id)
    assert job.state is JobState.AWAITING_APPROVAL and box.calls == []
    assert job.approval is not None and "includes Box admins (boss@example.com)" in job.approval.reasons[0]


def test_a_user_whose_role_box_did_not_give_is_treated_as_an_admin(store: JobStore) -> None:
    box = FakeBox(users=[BoxUser(id="5", login="who@example.com", role=None)])
    job_id = new_job(store, users("who@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert store.load(job_id).state is JobState.AWAITING_APPROVAL and box.calls == []


def _broker_down(_job_id: str) -> None:
    raise ConnectionError("broker unreachable")


def test_approve_and_retry_are_undone_when_the_job_cannot_be_enqueued(store: JobStore) -> None:
    box = engineering(30)
    waiting = new_job(store, [{"type": "group", "name": "Engineering"}])
    run_job(ctx=make_ctx(store, box, threshold=25), job_id=waiting)
    with pytest.raises(NotEnqueued, match="broker unreachable"):
        job_actions.approve(store=store, enqueue=_broker_down, job_id=waiting, actor="cli:alice")
    job = store.load(waiting)
    assert job.state is JobState.AWAITING_APPROVAL and job.approval is not None and not job.approval.approved_by

    box = FakeBox(users=directory(1), answers=[refused(403, "access_denied_insufficient_permissions")])
    failed = new_job(store, users("user00001@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=failed)
    with pytest.raises(NotEnqueued, match="broker unreachable"):
        job_actions.retry(store=store, enqueue=_broker_down, job_id=failed, actor="cli:alice")
    job = store.load(failed)
    assert job.state is JobState.FAILED and job.targets[0].status is TargetStatus.FAILED
    assert job_actions.retry(store=store, enqueue=lambda _: None, job_id=failed, actor="cli:alice").targets == 1


class _BoxAnsweringForSomeoneElse(FakeBox):
    """Box answers a member lookup with another user (a proxy's cache, a merged account)."""

    def get_user(self, user_id: str) -> BoxUser | None:
        if user_id == "30000002":
            raise BoxAnswerMismatch(f"GET /users/{user_id}: Box answered for id '1', not {user_id!r}; not used")
        return super().get_user(user_id)


def test_a_group_whose_member_lookup_names_someone_else_fails_alone(store: JobStore) -> None:
    box = _BoxAnsweringForSomeoneElse(users=[BoxUser(id="17738362", login="jdoe@example.com", role="user")],
                                      groups=[BoxGroup(id="55", name="Engineering")],
                                      members={"55": [BoxUser(id="30000002", login="x@example.com")]})
    job_id = new_job(store, [{"type": "group", "id": "55"}, *users("jdoe@example.com")])
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    job = store.load(job_id)
    group, person = job.targets
    assert group.status is TargetStatus.FAILED and "answered for id" in (group.detail or "")
    assert person.status is TargetStatus.ACCEPTED and job.state is JobState.PARTIAL
    assert box.calls == [("/users/terminate_sessions", ["17738362"])]


def test_group_members_whose_memberships_carry_no_role_are_looked_up_not_assumed_admins(store: JobStore) -> None:
    staff = [BoxUser(id="1", login="a@example.com", role="user"), BoxUser(id="2", login="b@example.com", role="user")]
    box = FakeBox(users=staff, groups=[BoxGroup(id="55", name="Staff")],
                  members={"55": [BoxUser(id=u.id, login=u.login, role=None) for u in staff]})
    job_id = new_job(store, [{"type": "group", "id": "55"}])
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    job = store.load(job_id)
    assert job.state is JobState.SUCCEEDED and job.targets[0].admins == []
    assert box.calls == [("/groups/terminate_sessions", ["55"])]


class _MembersRefused(FakeBox):
    def group_members(self, group_id: str) -> tuple[int, list[BoxUser]]:
        raise BoxPermanentError(endpoint=f"/groups/{group_id}/memberships", status=403, code="forbidden",
                                message="no", request_id="r-7")


def test_a_group_whose_members_cannot_be_listed_fails_alone_and_is_never_sent(store: JobStore) -> None:
    box = _MembersRefused(users=[BoxUser(id="9", login="jdoe@example.com", role="user")],
                          groups=[BoxGroup(id="55", name="Staff")])
    job_id = new_job(store, [{"type": "group", "id": "55"}, *users("jdoe@example.com")])
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    job = store.load(job_id)
    assert (job.targets[0].status, job.targets[0].detail) == (
        TargetStatus.FAILED, "listing the group's members was refused: Box answered 403 forbidden")
    assert box.calls == [("/users/terminate_sessions", ["9"])] and job.state is JobState.PARTIAL


def test_retry_of_a_job_that_is_not_moving_enqueues_it_again_and_it_ends(store: JobStore) -> None:
    box = FakeBox(users=directory(1))
    job_id = new_job(store, users("user00001@example.com"))  # its task was lost: nobody runs it
    enqueued: list[str] = []
    done = job_actions.retry(store=store, enqueue=enqueued.append, job_id=job_id, actor="cli:alice")
    assert done == job_actions.Retried(targets=1, restarted=True) and enqueued == [job_id]
    assert store.audit_entries(job_id=job_id)[-1]["event"] == "requeued"
    assert "cli:alice" in store.audit_entries(job_id=job_id)[-1]["data"]["why"]
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert store.load(job_id).state is JobState.SUCCEEDED


def test_retry_of_a_job_a_worker_is_running_or_that_awaits_approval_is_refused(store: JobStore) -> None:
    job_id = new_job(store, users("user00001@example.com"))
    with store.lease(job_id, ttl_seconds=30), pytest.raises(InvalidTransition, match="a worker is running it"):
        job_actions.retry(store=store, enqueue=lambda _: None, job_id=job_id, actor="cli:alice")
    waiting = new_job(store, users(*(f"user{n:05d}@example.com" for n in range(1, 4))))
    run_job(ctx=make_ctx(store, FakeBox(users=directory(3)), threshold=2), job_id=waiting)
    assert store.load(waiting).state is JobState.AWAITING_APPROVAL
    with pytest.raises(InvalidTransition, match="approve it or cancel it"):
        job_actions.retry(store=store, enqueue=lambda _: None, job_id=waiting, actor="cli:alice")
