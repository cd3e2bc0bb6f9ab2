"""What the benchmarks share: a real worker in a session of its own, and cleaning up their Redis keys."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]


def start_worker(env: dict[str, str], log: Path, *, concurrency: int = 2) -> subprocess.Popen[bytes]:
    """A `boxcut worker` (prefork) with `env`, once it says it is ready.

    A SIGTERM to the benchmark (`timeout`, Ctrl-C's cousin) becomes a normal exit, so its `finally` stops the
    worker and deletes its keys instead of leaving them behind.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "-c", str(concurrency)], env=env,
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while "ready." not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise SystemExit(f"worker did not start; see {log}")
        time.sleep(0.1)
    return proc


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key the benchmark wrote under its own prefix."""
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
