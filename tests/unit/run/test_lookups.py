"""Shared lookups: one Box lookup per login, however many jobs name it at once."""

from __future__ import annotations

import json

import pytest

from tests.unit.fake_box import FakeBox, directory, make_ctx, new_job, users
from worker.jobs.model import JobState
from worker.jobs.store import JobStore
from worker.locks import RedisLock
from worker.run import lookups as lookups_module
from worker.run.lookups import SharedLookups
from worker.run.runner import run_job


def test_five_jobs_naming_one_login_look_it_up_once(store: JobStore) -> None:
    box = FakeBox(users=directory(2))
    ctx = make_ctx(store, box)
    job_ids = [new_job(store, users(login)) for login in ["user00001@example.com", "USER00001@example.com ",
                                                            "user00001@example.com", "user00001@EXAMPLE.com",
                                                            "user00001@example.com"]]
    for job_id in job_ids:
        run_job(ctx=ctx, job_id=job_id)
    assert box.lookups == 1
    assert {store.load(j).state for j in job_ids} == {JobState.SUCCEEDED}


def test_a_job_waits_for_the_lookup_another_worker_is_making(store: JobStore) -> None:
    box = FakeBox(users=directory(1))
    held = RedisLock(store.redis, "t:lookup:login:user00001@example.com:lock", ttl_ms=5000)
    assert held.acquire()  # another worker is asking Box right now

    def meanwhile(_seconds: float) -> None:  # ... and its answer arrives while this one waits
        store.redis.set("t:lookup:login:user00001@example.com",
                        json.dumps([{"id": "30000001", "login": "user00001@example.com", "name": "", "role": "user"}]))

    shared = SharedLookups(box, store.redis, key_prefix="t:", sleep=meanwhile)
    assert [u.id for u in shared.find_users_by_login("user00001@example.com")] == ["30000001"]
    assert box.lookups == 0


def test_a_lookup_whose_asker_vanished_is_made_after_the_wait(store: JobStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lookups_module, "WAIT_SECONDS", 0.05)
    box = FakeBox(users=directory(1))
    assert RedisLock(store.redis, "t:lookup:login:user00001@example.com:lock", ttl_ms=60_000).acquire()
    shared = SharedLookups(box, store.redis, key_prefix="t:")
    assert [u.id for u in shared.find_users_by_login("user00001@example.com")] == ["30000001"]
    assert box.lookups == 1


def test_an_ambiguous_or_absent_login_is_shared_as_it_is(store: JobStore) -> None:
    box = FakeBox(users=[*directory(1), *directory(1)])  # two users with one login
    shared = SharedLookups(box, store.redis, key_prefix="t:")
    assert len(shared.find_users_by_login("user00001@example.com")) == 2
    assert len(shared.find_users_by_login("user00001@example.com")) == 2
    assert shared.find_users_by_login("nobody@example.com") == []
    assert shared.find_users_by_login("nobody@example.com") == []
    assert box.lookups == 2
