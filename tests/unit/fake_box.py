"""An in-memory stand-in for the Box client at the runner's seam (the BoxCalls protocol), and helpers that run
jobs against it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from worker.box.answers import (
    GROUPS_TERMINATE_ENDPOINT,
    TERMINATE_ACCEPTED_MESSAGE,
    USERS_TERMINATE_ENDPOINT,
    BoxGroup,
    BoxUser,
    CallResult,
)
from worker.errors import RetryLater
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job, submit
from worker.run.context import RunContext
from worker.run.policy import Policy


@dataclass
class FakeBox:
    """Users, groups and scripted terminate answers; records every terminate call."""

    users: list[BoxUser] = field(default_factory=list)
    groups: list[BoxGroup] = field(default_factory=list)
    answers: list[CallResult | RetryLater] = field(default_factory=list)
    calls: list[tuple[str, list[str]]] = field(default_factory=list)
    lookups: int = 0
    members: dict[str, list[BoxUser]] = field(default_factory=dict)
    directory_reads: int = 0

    def all_users(self) -> Iterator[BoxUser]:
        self.directory_reads += 1
        yield from self.users

    def count_users(self) -> int:
        self.lookups += 1
        return len(self.users)

    def group_members(self, group_id: str) -> tuple[int, list[BoxUser]]:
        self.lookups += 1
        found = self.members.get(group_id, [])
        return len(found), list(found)

    def find_users_by_login(self, login: str) -> list[BoxUser]:
        self.lookups += 1
        return [u for u in self.users if u.login.lower() == login.lower()]

    def get_user(self, user_id: str) -> BoxUser | None:
        self.lookups += 1
        return next((u for u in self.users if u.id == user_id), None)

    def find_groups_by_name(self, name: str) -> list[BoxGroup]:
        self.lookups += 1
        return [g for g in self.groups if g.name.lower() == name.lower()]

    def get_group(self, group_id: str) -> BoxGroup | None:
        self.lookups += 1
        return next((g for g in self.groups if g.id == group_id), None)

    def terminate_users(self, user_ids: Sequence[str], *, prior_attempts: int = 0,
                        before_send: Callable[[], object] | None = None, slot_taken: bool = False) -> CallResult:
        return self._answer(USERS_TERMINATE_ENDPOINT, user_ids, prior_attempts, before_send)

    def terminate_groups(self, group_ids: Sequence[str], *, prior_attempts: int = 0,
                         before_send: Callable[[], object] | None = None, slot_taken: bool = False) -> CallResult:
        return self._answer(GROUPS_TERMINATE_ENDPOINT, group_ids, prior_attempts, before_send)

    def _answer(self, endpoint: str, ids: Sequence[str], prior_attempts: int,
                before_send: Callable[[], object] | None) -> CallResult:
        if before_send is not None:
            before_send()  # one request per call here
        self.calls.append((endpoint, list(ids)))
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, RetryLater):
                raise answer
            return answer
        return accepted(endpoint, attempts=prior_attempts + 1)


def accepted(endpoint: str = USERS_TERMINATE_ENDPOINT, attempts: int = 1) -> CallResult:
    return CallResult(endpoint=endpoint, http_status=202, message=TERMINATE_ACCEPTED_MESSAGE, error_code=None,
                      request_id=None, attempts=attempts, started_at="t0", finished_at="t1")


def refused(status: int, code: str, *, endpoint: str = USERS_TERMINATE_ENDPOINT, exhausted: bool = False,
            attempts: int = 1) -> CallResult:
    return CallResult(endpoint=endpoint, http_status=status, message=f"Box says {code}", error_code=code,
                      request_id="req-123", attempts=attempts, started_at="t0", finished_at="t1",
                      exhausted=exhausted)


def directory(n_users: int) -> list[BoxUser]:
    """`n_users` users: user00001@example.com ... with ids 30000001 ..."""
    return [BoxUser(id=str(30000000 + i), login=f"user{i:05d}@example.com") for i in range(1, n_users + 1)]


# -- the runner's seam, for tests that run jobs -------------------------------------------------------------


def make_ctx(store: JobStore, box: FakeBox, *, protected: tuple[str, ...] = (), dry_run: bool = False,
             batch_size: int = 100, budget: float = 60, threshold: int = 10_000,
             allowed_admins: tuple[str, ...] = (), service_account: str | None = None,
             later: float = 0.0) -> RunContext:
    """A context whose approval threshold is out of the way unless a test sets it; `later` moves its wall clock
    that many seconds ahead (a run after a wait Box asked for, or after a dead sender's claim ran out)."""
    policy = Policy(protected_users=frozenset(protected), protected_groups=frozenset(), dry_run=dry_run,
                    approval_threshold=threshold, allowed_admins=frozenset(allowed_admins))
    return RunContext(store=store, box=box, policy=policy, batch_size=batch_size, run_budget_seconds=budget,
                      service_account_id=lambda: service_account, wall_clock=lambda: time.time() + later)


def new_job(store: JobStore, targets: list[dict[str, str]], *, dry_run: bool = False) -> str:
    request = JobRequest(targets=targets, source="test", reason="unit", requested_by="pytest", dry_run=dry_run)
    return submit(store=store, enqueue=lambda _job_id: None, job=build_job(request)).job_id


def users(*logins: str) -> list[dict[str, str]]:
    return [{"type": "user", "login": login} for login in logins]
