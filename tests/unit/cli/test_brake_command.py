"""`boxcut brake`, `boxcut brake release SOURCE` and doctor's brake line, on a store where the brake holds jobs."""

from __future__ import annotations

import json

import fakeredis
import pytest
from click.testing import CliRunner, Result

from config import load_settings
from tests.unit.fake_box import FakeBox, directory
from tests.unit.run.test_brake_sending import _ctx, _job, _run_all
from worker.cli import commands, doctor
from worker.jobs.model import JobState
from worker.jobs.store import JobStore

ENV = {"BOXCUT_BRAKE_USERS": "2", "BOXCUT_KEY_PREFIX": "t:"}


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> tuple[JobStore, list[str], list[str]]:
    """A store where source okta:token#1 sent 5 one-user jobs: 2 went, 3 wait for the brake."""
    client = fakeredis.FakeRedis()
    store = JobStore(client, key_prefix="t:")
    box = FakeBox(users=directory(5))
    job_ids = [_job(store, u.login) for u in box.users]
    _run_all(_ctx(store, box, per_source=2), job_ids)
    enqueued: list[str] = []
    monkeypatch.setattr(commands, "_store", lambda _settings: store)
    monkeypatch.setattr(commands, "enqueuer", lambda _app: enqueued.append)
    monkeypatch.setattr(commands, "celery_app", lambda _settings: None)
    monkeypatch.setattr("worker.connections.redis_client", lambda _settings: client)
    return store, job_ids, enqueued


def run(*args: str) -> Result:
    return CliRunner().invoke(commands.main, list(args), env=ENV)


def test_brake_shows_the_engaged_source_its_count_and_its_held_jobs(held: tuple[JobStore, list[str], list[str]]
                                                                    ) -> None:
    result = run("brake")
    assert result.exit_code == 0, result.output
    assert "okta:token#1: 2 users (limit 2), ENGAGED, 3 jobs held" in result.output
    shown = json.loads(run("brake", "--json").output)
    [source] = shown["sources"]
    assert source["engaged"] and len(source["held_jobs"]) == 3 and shown["limits"]["users_per_source"] == 2


def test_release_approves_every_held_job_of_the_source_by_whoever_ran_it(
        held: tuple[JobStore, list[str], list[str]]) -> None:
    store, job_ids, enqueued = held
    waiting = [j for j in job_ids if store.state(j) is JobState.AWAITING_APPROVAL]
    result = run("brake", "release", "okta:token#1")
    assert result.exit_code == 0, result.output
    assert "3 held jobs approved" in result.output and sorted(enqueued) == sorted(waiting)
    for job_id in waiting:
        job = store.load(job_id)
        assert job.state is JobState.RESOLVING and (job.approval.approved_by or "").startswith("cli:")  # type: ignore[union-attr]
    assert "released for" in run("brake").output


def test_release_of_a_blank_source_is_refused_as_usage(held: tuple[JobStore, list[str], list[str]]) -> None:
    result = run("brake", "release", " ")
    assert result.exit_code == 64 and "name the source" in result.output


def test_doctor_warns_while_the_brake_holds_a_source(held: tuple[JobStore, list[str], list[str]]) -> None:
    lines: list[str] = []
    doctor._check_brake(load_settings(ENV, env_file=None), lines.append)
    assert lines == [lines[0]] and lines[0].startswith("warn brake: ENGAGED for source okta:token#1: 2 users")
    assert "3 jobs held" in lines[0] and "boxcut brake release okta:token#1" in lines[0]


def test_doctor_says_when_the_brake_is_off() -> None:
    lines: list[str] = []
    doctor._check_brake(load_settings({"BOXCUT_BRAKE_USERS": "0", "BOXCUT_BRAKE_TOTAL_USERS": "0"},
                                      env_file=None), lines.append)
    assert lines[0].startswith("warn brake: off")


def test_release_of_a_source_the_brake_does_not_know_is_refused_and_approves_nothing(
        held: tuple[JobStore, list[str], list[str]]) -> None:
    store, job_ids, enqueued = held
    result = run("brake", "release", "okta:token#2")  # a typo, or a source pasted wrong
    assert result.exit_code == 64 and "knows no source 'okta:token#2'" in result.output and enqueued == []
    assert sum(store.state(j) is JobState.AWAITING_APPROVAL for j in job_ids) == 3


def test_doctor_still_warns_of_held_jobs_once_the_engagement_has_lapsed(
        held: tuple[JobStore, list[str], list[str]]) -> None:
    store = held[0]
    store.redis.delete("t:brake:engaged:okta:token#1")  # a whole window without a hold
    lines: list[str] = []
    doctor._check_brake(load_settings(ENV, env_file=None), lines.append)
    assert lines == ["warn brake: 3 jobs of source okta:token#1 still wait for a person; approve them, or release "
                     "with: boxcut brake release okta:token#1"]
