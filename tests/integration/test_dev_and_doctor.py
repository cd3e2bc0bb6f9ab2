"""`boxcut dev` (what `make run` starts) and `boxcut doctor`, as a person would run them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests

from config import load_settings
from tests.integration.harness import REPO, running_stack
from worker.archive.store import Archive
from worker.box.answers import TERMINATE_ACCEPTED_MESSAGE
from worker.cli import doctor

pytestmark = pytest.mark.integration


def _clean_env(redis_url: str, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOX_", "BOXCUT_"))}
    return {**env, "BOXCUT_REDIS_URL": redis_url, "BOXCUT_KEY_PREFIX": prefix}


def test_dev_stack_then_terminate_wait_ends_succeeded(redis_url: str, tmp_path: Path) -> None:
    prefix = f"boxcut-test-{uuid.uuid4().hex[:10]}:"
    env = _clean_env(redis_url, prefix)
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen([sys.executable, "-m", "worker.cli", "dev"], env=env, cwd=tmp_path, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "stop with Ctrl-C" not in log.read_text(errors="replace"):
            assert dev.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        text = log.read_text()
        assert "box     SIMULATED" in text and "try, in another shell" in text
        run = subprocess.run([sys.executable, "-m", "worker.cli", "terminate", "--user", "jdoe@example.com",
                              "--wait"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "succeeded" in run.stdout and TERMINATE_ACCEPTED_MESSAGE in run.stdout
        _post_the_printed_curl(text)
        # doctor beside the stack: without its Box settings it names the dev stack's simulator, fails nothing
        beside = subprocess.run([sys.executable, "-m", "worker.cli", "doctor"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert beside.returncode == 0, beside.stdout + beside.stderr
        assert "warn box: these settings name no Box; the dev stack on this prefix uses boxsim" in beside.stdout
        assert "warn worker box: 1 live worker(s) talk to the dev stack's boxsim" in beside.stdout
        # and with them (its env file sourced), the Box check passes and says the Box is simulated
        sourced = subprocess.run(["bash", "-c", f". ./boxcut-dev.env && {sys.executable} -m worker.cli doctor"],
                                 env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert sourced.returncode == 0, sourced.stdout + sourced.stderr
        assert "ok   box: SIMULATED: boxsim at http://127.0.0.1:" in sourced.stdout
        assert "ok   worker box: 1 live worker(s)" in sourced.stdout
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(timeout=60)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


def _post_the_printed_curl(text: str) -> None:
    """Do what the printed curl commands do, with the URL and tokens they show."""
    post = re.search(r"curl -sS -X POST (\S+) -H 'Authorization: Bearer (\S+)' .* -d '(.+)'", text)
    read = re.search(r"curl -sS (\S+)/JOB_ID -H 'Authorization: Bearer (\S+)'", text)
    assert post and read, text
    answer = requests.post(post[1], data=post[3], timeout=10,
                           headers={"Authorization": f"Bearer {post[2]}", "Content-Type": "application/json"})
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 30
    while True:
        record = requests.get(f"{read[1]}/{answer.json()['job_id']}", timeout=10,
                              headers={"Authorization": f"Bearer {read[2]}"}).json()
        if record["state"] == "succeeded":
            return
        assert time.monotonic() < deadline, record
        time.sleep(0.2)


def test_doctor_says_ok_for_a_working_stack(redis_url: str, tmp_path: Path) -> None:
    with running_stack(redis_url, tmp_path, extra_env={"BOXCUT_SWEEP_SECONDS": "1"}) as stack:
        time.sleep(2.5)  # the worker's beat runs its first sweep
        run = subprocess.run([sys.executable, "-m", "worker.cli", "doctor"], env=stack.env, cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok   redis" in run.stdout and "ok   broker" in run.stdout and "ok   box token" in run.stdout
    assert "ok   workers: 1 answered" in run.stdout and "ok   beat: the periodic sweep ran" in run.stdout
    assert "ok   redis memory: " in run.stdout and "ok   archive: embedded SQLite file sqlite:///" in run.stdout


def test_doctor_fails_when_no_worker_answers(redis_url: str, tmp_path: Path) -> None:
    with running_stack(redis_url, tmp_path, worker=False) as stack:
        run = subprocess.run([sys.executable, "-m", "worker.cli", "doctor"], env=stack.env, cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "FAIL workers: no worker answered" in run.stdout
    assert "ok   box token" in run.stdout  # the other checks still ran


def test_doctor_says_what_is_wrong_even_with_a_token_cached(redis_url: str, tmp_path: Path) -> None:
    with running_stack(redis_url, tmp_path) as stack:
        first = subprocess.run([sys.executable, "-m", "worker.cli", "doctor"], env=stack.env, cwd=REPO,
                               capture_output=True, text=True, timeout=60)
        assert first.returncode == 0  # a good token is cached in Redis now
        env = {**stack.env, "BOX_CLIENT_SECRET": "wrong-secret"}
        run = subprocess.run([sys.executable, "-m", "worker.cli", "doctor"], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "FAIL box: Box refused the token request (400 invalid_client)" in run.stdout
    assert "wrong-secret" not in run.stdout + run.stderr


def test_doctor_fails_a_postgresql_archive_until_boxcut_migrate_brings_its_schema_to_head(
        redis_url: str, postgres_databases: Callable[[], str]) -> None:
    prefix = f"boxcut-test-{uuid.uuid4().hex[:10]}:"
    url = postgres_databases()  # a fresh database, as the compose `postgres` service starts
    env = {**_clean_env(redis_url, prefix), "BOXCUT_ARCHIVE_URL": url}
    settings = load_settings(env, env_file=None)
    lines: list[str] = []
    assert not doctor._check_archive(settings, lines.append)
    assert len(lines) == 1 and lines[0].startswith(f"FAIL archive: the archive at {Archive(url).where} has no schema")
    assert "run `boxcut migrate`" in lines[0]

    migrated = subprocess.run([sys.executable, "-m", "worker.cli", "migrate"], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    lines.clear()
    assert doctor._check_archive(settings, lines.append)
    assert lines == [f"ok   archive: database {Archive(url).where}, schema at head; holds 0 jobs, 0 calls, 0 audit "
                     "entries; 0 finished jobs wait in Redis to settle"]
