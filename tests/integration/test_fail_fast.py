"""Issue 25, failing fast and naming the real cause, where a user meets it: the real intake over HTTP, real
`boxcut worker` processes, boxsim.

1. A sender whose body is over the limit reads its 413, never a broken pipe (its retry logic would take that for
   a transient fault), whether it declares the length or sends it chunked.
2. A worker without Box credentials, or with ones Box refuses, refuses to start (exit 64, one line naming what to
   set or Box's answer, never the secret); a Box that does not answer at start is no refusal: it starts.
3. A worker whose Redis does not answer exits 69 after its stated, bounded wait, naming the URL without password.
4. An idle worker (with its beat) logs next to nothing at INFO: the periodic tasks' rounds that find nothing are
   DEBUG, Celery's own lines about them too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests

from tests.integration.harness import REPO, Stack, free_port, running_stack

pytestmark = pytest.mark.integration

TOKEN = "fail-fast-intake-token"
# Over the intake's 1 MiB limit by far: the sender is still writing when the limit is met.
BIG_BODY = b'{"id": "big", "reason": "' + b"x" * (2_600_000) + b'", "targets": []}'


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_url, tmp_path_factory.mktemp("failfast"), worker=False,
                       extra_env={"BOXCUT_INTAKE_TOKENS": TOKEN}) as running:
        yield running


@pytest.fixture(scope="module")
def intake(stack: Stack) -> str:
    return stack.start_intake()


@pytest.mark.parametrize("sent", ["with Content-Length", "chunked"])
def test_a_sender_of_a_body_over_the_limit_reads_its_413_every_time(intake: str, sent: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    for attempt in range(10):
        body = BIG_BODY if sent == "with Content-Length" else iter(
            BIG_BODY[i:i + 65536] for i in range(0, len(BIG_BODY), 65536))
        try:
            answer = requests.post(f"{intake}/v1/alerts", data=body, headers=headers, timeout=30)
        except requests.ConnectionError as broken:
            pytest.fail(f"attempt {attempt + 1}: the sender met {broken!r} instead of its 413")
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "payload_too_large"


def run_worker(stack: Stack, env: Mapping[str, str | None], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`boxcut worker` with the stack's settings changed by `env` (None removes one), until it exits."""
    changed = dict(stack.env)
    for name, value in env.items():
        if value is None:
            changed.pop(name, None)
        else:
            changed[name] = value
    return subprocess.run([sys.executable, "-m", "worker.cli", "worker", "--concurrency", "1"], env=changed,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_a_worker_without_box_credentials_refuses_to_start_naming_what_to_set(stack: Stack) -> None:
    done = run_worker(stack, {"BOX_CLIENT_ID": None, "BOX_CLIENT_SECRET": None, "BOX_ENTERPRISE_ID": None})
    assert done.returncode == 64, done.stderr[-2000:]
    said = done.stderr.strip().splitlines()[-1]
    assert said.startswith("boxcut: refusing to start: no Box credentials: set BOX_CLIENT_ID"), said
    assert "Traceback" not in done.stderr


def test_a_worker_whose_credentials_box_refuses_refuses_to_start_with_boxs_answer(stack: Stack) -> None:
    secret = "not-the-secret-4f1d"
    done = run_worker(stack, {"BOX_CLIENT_SECRET": secret})
    assert done.returncode == 64, done.stderr[-2000:]
    said = done.stderr.strip().splitlines()[-1]
    assert said.startswith("boxcut: refusing to start: Box refused the token request (") and "invalid_client" in said
    assert secret not in done.stderr + done.stdout


def test_boxcut_dev_whose_worker_refuses_to_start_says_so_and_stops(stack: Stack, tmp_path: Path) -> None:
    env = {**stack.env, "BOX_CLIENT_SECRET": "not-the-secret-77aa"}  # Box credentials of one's own, refused
    done = subprocess.run([sys.executable, "-m", "worker.cli", "dev"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 69, done.stdout[-2000:] + done.stderr[-2000:]
    assert "boxcut: refusing to start: Box refused the token request" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("boxcut: boxcut dev: the worker did not start (exit 64)")
    assert "boxcut dev is up" not in done.stdout and not (tmp_path / "boxcut-dev.env").exists()


def test_a_worker_starts_while_box_does_not_answer_saying_so(stack: Stack) -> None:
    worker = stack.start_worker(extra_env={"BOX_OAUTH_URL": f"http://127.0.0.1:{free_port()}/oauth2/token"})
    try:
        log = worker.log_path.read_text()
        assert "no answer from Box's token endpoint" in log and "starting anyway; jobs wait for Box" in log
    finally:
        worker.stop()
        stack.workers.remove(worker)


def test_a_worker_whose_redis_does_not_answer_exits_69_after_a_bounded_wait(stack: Stack) -> None:
    started = time.monotonic()
    done = run_worker(stack, {"BOXCUT_REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0"})
    took = time.monotonic() - started
    assert done.returncode == 69, done.stderr[-2000:]
    said = done.stderr.strip().splitlines()[-1]
    assert said.startswith("boxcut: refusing to start: Redis at redis://127.0.0.1:") and "tried for 10 s" in said
    assert "hunter2" not in done.stderr
    assert 9 < took < 30


def test_a_worker_whose_redis_refuses_its_credentials_exits_64_at_once(stack: Stack) -> None:
    redis_url = stack.env["BOXCUT_REDIS_URL"].replace("redis://", "redis://someone:wrong-77aa@", 1)
    started = time.monotonic()
    done = run_worker(stack, {"BOXCUT_REDIS_URL": redis_url})
    assert done.returncode == 64, done.stderr[-2000:]
    said = done.stderr.strip().splitlines()[-1]
    assert said.startswith("boxcut: refusing to start: Redis at redis://") and "refused the credentials" in said
    assert "wrong-77aa" not in done.stderr and time.monotonic() - started < 9  # no 10 s wait for a wrong password


# Every periodic task each second (the event stream read from boxsim too), so a few idle seconds hold many rounds.
BUSY_BEAT = {"BOXCUT_LOG_FORMAT": "json", "BOXCUT_SWEEP_SECONDS": "1", "BOXCUT_ARCHIVE_EVERY_SECONDS": "1",
             "BOXCUT_EVENTS_POLL_SECONDS": "1", "BOXCUT_NOTIFY_POLL_SECONDS": "1"}


def test_an_idle_worker_says_next_to_nothing_at_info(stack: Stack) -> None:
    worker = stack.start_worker(loglevel="INFO", extra_env=BUSY_BEAT)
    try:
        time.sleep(2)  # the start's own lines (the banner, the first directory copy) are not idle ones
        before = len(worker.log_path.read_text().splitlines())
        time.sleep(8)  # the sweep, the archive pass, the event-stream read and the notification scan: 8 rounds each
        lines = worker.log_path.read_text().splitlines()[before:]
    finally:
        worker.stop()
        stack.workers.remove(worker)
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    info = [entry for entry in logged if entry.get("level") == "INFO"]
    assert sum(1 for entry in logged if "boxcut.sweep" in entry.get("message", "")) == 0  # not even at DEBUG here
    assert len(info) <= 2, "\n".join(map(str, info))  # three Celery lines a round of each, before
