"""A worker whose Box differs from the live workers' on its queues: refused at start when it talks to another Box
API (boxsim beside the real Box), an ERROR when only the client differs, and named by `boxcut doctor`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from click.testing import CliRunner

from config import Settings, load_settings
from worker.cli.commands import main
from worker.cli.doctor import _check_worker_boxes
from worker.run.fleet import LIVE_SECONDS, Fleet, Heartbeat, Member, OtherBox, join

REAL = {"BOX_CLIENT_ID": "real-client", "BOX_CLIENT_SECRET": "real-secret", "BOX_ENTERPRISE_ID": "42",
        "BOXCUT_KEY_PREFIX": "prod:"}
SIMULATOR = {**REAL, "BOX_API_BASE_URL": "http://127.0.0.1:8765/2.0",
             "BOX_OAUTH_URL": "http://127.0.0.1:8765/oauth2/token"}
OTHER_CLIENT = {**REAL, "BOX_CLIENT_ID": "rotated-client"}


def _settings(env: dict[str, str]) -> Settings:
    return load_settings(env, env_file=None)


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[fakeredis.FakeRedis]:
    """One fake Redis that every part (the CLI's worker command, doctor) connects to."""
    client = fakeredis.FakeRedis()
    monkeypatch.setattr("worker.connections.redis_client", lambda settings: client)
    yield client


def _live_worker(redis: fakeredis.FakeRedis, env: dict[str, str], name: str = "prod-host:17") -> None:
    Fleet(redis, key_prefix="prod:").beat(Member.of(_settings(env), worker=name))


def test_a_worker_talking_to_another_box_api_is_refused(redis: fakeredis.FakeRedis) -> None:
    _live_worker(redis, REAL)
    with pytest.raises(OtherBox, match=r"http://127.0.0.1:8765/2.0.*prod-host:17 \(Box API https://api.box.com"):
        join(_settings(SIMULATOR), redis)


def test_boxcut_worker_refuses_to_start_beside_workers_on_another_box(
        redis: fakeredis.FakeRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _live_worker(redis, REAL)
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setattr("celery.Celery.worker_main", lambda *a, **k: pytest.fail("the worker started"))
    run = CliRunner().invoke(main, ["worker"], env=SIMULATOR)
    assert run.exit_code == 64, run.output
    assert "refusing to start" in run.output and "prod-host:17" in run.output


def test_another_client_on_the_same_api_is_an_error_at_start(redis: fakeredis.FakeRedis,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    _live_worker(redis, REAL)
    with caplog.at_level(logging.ERROR, logger="worker.run.fleet"):
        heartbeat = join(_settings(OTHER_CLIENT), redis)
    heartbeat.stop()
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "another Box client" in caplog.text and "prod-host:17" in caplog.text


def test_a_worker_that_appears_later_on_another_box_is_an_error(redis: fakeredis.FakeRedis,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    fleet = Fleet(redis, key_prefix="prod:")
    heartbeat = Heartbeat(fleet, Member.of(_settings(REAL), worker="me:1"))
    heartbeat.beat_once()
    _live_worker(redis, SIMULATOR, name="laptop:99")  # started at the same moment: nothing to see at its start
    with caplog.at_level(logging.ERROR, logger="worker.run.fleet"):
        heartbeat.beat_once()
        heartbeat.beat_once()  # said once, not at every beat
    assert len(caplog.records) == 1 and "laptop:99" in caplog.text and "another Box API" in caplog.text


def test_doctor_names_a_worker_on_another_box(redis: fakeredis.FakeRedis) -> None:
    _live_worker(redis, REAL)
    _live_worker(redis, SIMULATOR, name="laptop:99")
    lines: list[str] = []
    assert _check_worker_boxes(_settings(REAL), lines.append) is False
    assert lines == [f"FAIL worker box: {m.describe()} talks to another Box API than https://api.box.com/2.0"
                     for m in Fleet(redis, key_prefix="prod:").live() if m.worker == "laptop:99"]


def test_doctor_says_ok_when_every_worker_talks_to_this_box(redis: fakeredis.FakeRedis) -> None:
    _live_worker(redis, REAL)
    _live_worker(redis, REAL, name="prod-host:18")
    lines: list[str] = []
    assert _check_worker_boxes(_settings(REAL), lines.append) is True
    assert lines[0].startswith("ok   worker box: 2 live worker(s) talk to https://api.box.com/2.0")


def test_a_gone_worker_is_forgotten_and_another_prefix_is_not_compared(redis: fakeredis.FakeRedis) -> None:
    now = [1000.0]
    Fleet(redis, key_prefix="prod:", clock=lambda: now[0]).beat(Member.of(_settings(REAL), worker="old:1"))
    Fleet(redis, key_prefix="dev:").beat(Member.of(_settings(REAL), worker="other-stack:1"))
    now[0] += LIVE_SECONDS + 1
    assert Fleet(redis, key_prefix="prod:", clock=lambda: now[0]).live() == []
    join(_settings({**SIMULATOR, "BOXCUT_KEY_PREFIX": "sim:"}), redis).stop()  # dev's own prefix: nothing shared
