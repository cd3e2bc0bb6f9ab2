"""Two `boxcut dev --demo` (two `make run`) on one Redis, as a new user would start them: each keeps to itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis
import requests

pytestmark = pytest.mark.integration


@contextmanager
def _dev(redis_url: str, folder: Path) -> Iterator[Path]:
    """`boxcut dev --demo` in `folder` (no .env, no BOXCUT_KEY_PREFIX), its output in `folder/dev.log`."""
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOX_", "BOXCUT_"))}
    log = folder / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen([sys.executable, "-m", "worker.cli", "dev", "--demo", "-c", "1"], cwd=folder,
                               env={**env, "BOXCUT_REDIS_URL": redis_url}, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        yield log
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(timeout=90)


def _wait_for(log: Path, pattern: str, timeout: float = 90) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, log.read_text(errors="replace"), re.S)
        if found:
            return found
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.3)


def test_two_dev_stacks_on_one_redis_each_run_their_own_demo_against_their_own_simulator(
        redis_url: str, tmp_path: Path) -> None:
    with ExitStack() as stacks:
        logs = []
        for name in ("first", "second"):  # one after the other, as a person opens a second terminal
            logs.append(stacks.enter_context(_dev(redis_url, tmp_path / name)))
            _wait_for(logs[-1], r"stop with Ctrl-C")
        sims = [_wait_for(log, r"boxsim at (http://\S+)/2\.0")[1] for log in logs]
        for log in logs:  # the demo's record, once final (not a worker's "Task ... succeeded" line after its id)
            _wait_for(log, r"(?m)^job j-\S+: (succeeded|failed|partial)")
        for sim in sims:  # each simulator was asked once: for its own stack's demo, with a token it issued
            log = requests.get(f"{sim}/_boxsim/requests", timeout=10).json()
            posts = [r for r in log if r["method"] == "POST" and r["path"].endswith("/users/terminate_sessions")]
            assert len(posts) == 1 and all(r["status"] != 401 for r in log), log
        prefixes = [_wait_for(log, r"keys    under (boxcut-dev-[0-9a-f]+:)", timeout=5)[1] for log in logs]
        assert len(set(prefixes)) == 2 and all(re.search(r"(?m)^job j-\S+: succeeded", log.read_text())
                                               for log in logs)
    client = redis.Redis.from_url(redis_url)
    for prefix in prefixes:  # and each left nothing behind
        assert list(client.scan_iter(match=f"{prefix}*", count=1000)) == []
