"""doctor's archive check: reachable, its schema at head (`boxcut migrate` otherwise), named without its password,
the embedded SQLite file's one-host note, and the finished jobs still waiting in Redis to settle."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest

from config import Settings, load_settings
from worker.archive.migrate import upgrade
from worker.cli import doctor


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """The fake Redis every part of doctor connects to."""
    fake = fakeredis.FakeRedis()
    monkeypatch.setattr("worker.connections.redis_client", lambda _settings: fake)
    return fake


def _settings(archive_url: str) -> Settings:
    return load_settings({"BOXCUT_KEY_PREFIX": "t:", "BOXCUT_ARCHIVE_URL": archive_url}, env_file=None)


def _check(settings: Settings) -> tuple[bool, list[str]]:
    lines: list[str] = []
    return doctor._check_archive(settings, lines.append), lines


def _finished(client: fakeredis.FakeRedis, n: int, state: str = "succeeded") -> None:
    client.zadd(f"t:jobs:state:{state}", {f"j-{state}-{i}": i for i in range(n)})


def test_an_archive_at_head_is_ok_named_with_what_it_holds_and_the_jobs_waiting_to_settle(
        client: fakeredis.FakeRedis, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/archive.sqlite3"
    upgrade(url)
    _finished(client, 2)
    _finished(client, 1, "cancelled")
    _finished(client, 5, "terminating")  # still working: not waiting to settle
    ok, lines = _check(_settings(url))
    assert ok and lines == [
        f"ok   archive: embedded SQLite file {url}, schema at head; holds 0 jobs, 0 calls, 0 audit entries; "
        "3 finished jobs wait in Redis to settle",
        "note archive: an embedded SQLite file suits one host only: workers on other hosts would each archive to a "
        "file of their own; set BOXCUT_ARCHIVE_URL to a PostgreSQL database (docker-compose.yml runs one)"]


def test_an_archive_whose_schema_is_behind_fails_and_says_to_run_boxcut_migrate(
        client: fakeredis.FakeRedis, tmp_path: Path) -> None:
    (tmp_path / "archive.sqlite3").touch()  # a database with no schema: made by hand, or before `boxcut migrate`
    _finished(client, 1, "failed")
    ok, lines = _check(_settings(f"sqlite:///{tmp_path}/archive.sqlite3"))
    assert not ok and len(lines) == 1 and lines[0].startswith("FAIL archive: the archive at sqlite:///")
    assert "run `boxcut migrate`" in lines[0] and lines[0].endswith("1 finished job waits in Redis to settle")


def test_an_embedded_archive_not_made_yet_is_said_and_not_made_by_doctor(client: fakeredis.FakeRedis,
                                                                         tmp_path: Path) -> None:
    ok, lines = _check(_settings(f"sqlite:///{tmp_path}/later/archive.sqlite3"))
    assert ok and lines[0].startswith("ok   archive: embedded SQLite file sqlite:///")
    assert "not made yet: the first archive pass makes it; 0 finished jobs wait" in lines[0]
    assert lines[1].startswith("note archive: an embedded SQLite file suits one host only")
    assert not (tmp_path / "later" / "archive.sqlite3").exists()


def test_a_database_that_does_not_answer_fails_named_without_its_password(client: fakeredis.FakeRedis) -> None:
    _finished(client, 4, "partial")
    ok, lines = _check(_settings("postgresql://boxcut:pw-do-not-print@127.0.0.1:1/boxcut"))
    assert not ok and len(lines) == 1
    assert lines[0].startswith("FAIL archive: cannot read it: the archive at postgresql+psycopg://boxcut:***@127.0.0.1:1/")
    assert "pw-do-not-print" not in lines[0] and "4 finished jobs wait in Redis to settle" in lines[0]


def test_many_finished_jobs_waiting_to_settle_are_a_warning(client: fakeredis.FakeRedis, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/archive.sqlite3"
    upgrade(url)
    _finished(client, 600)
    _finished(client, 401, "dry_run")
    ok, lines = _check(_settings(url))
    assert ok and lines[-1].startswith("warn archive: 1,001 finished jobs wait in Redis to settle (more than 1,000): "
                                       "the archive pass may be behind")
