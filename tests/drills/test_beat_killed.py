"""Drill: the beat a worker embeds is SIGKILLed on its own (the worker's main process and pool live). The worker
starts a new beat within seconds, the periodic sweep runs again, and the worker's shutdown stops the new one too.

Before tasks/beat_watch.py, Celery left the worker alive with no beat: nothing periodic ran again (a soak found
jobs stranded `terminating` and notices never sent)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.drills.private_redis import PrivateRedis
from tests.drills.processes import embedded_beats
from tests.integration.harness import running_stack, until

pytestmark = pytest.mark.drill


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z"


def test_an_embedded_beat_killed_alone_is_started_again_and_the_sweep_runs_on(private_redis: PrivateRedis,
                                                                             tmp_path: Path) -> None:
    with running_stack(private_redis.url, tmp_path, extra_env={"BOXCUT_SWEEP_SECONDS": "1"}, worker=False) as stack:
        worker = stack.start_worker(concurrency=1, beat=True)
        store = stack.store()
        until(lambda: store.last_sweep() is not None and len(embedded_beats(worker.proc.pid)) == 1,
              "the first sweep and the embedded beat", timeout=30)
        (first,) = embedded_beats(worker.proc.pid)
        os.kill(first, signal.SIGKILL)
        killed_at = time.time()
        until(lambda: [b for b in embedded_beats(worker.proc.pid) if b != first], "a new embedded beat", timeout=20)
        (second,) = [b for b in embedded_beats(worker.proc.pid) if b != first]
        until(lambda: (store.last_sweep() or 0) > killed_at + 1, "a sweep after the kill", timeout=20)
        swept_after = (store.last_sweep() or 0) - killed_at
        logs = stack.worker_logs()
        main_alive = worker.proc.poll() is None
    print(f"beat {first} killed; beat {second} started; a sweep {swept_after:.1f} s after the kill")
    assert main_alive
    assert "the embedded beat" in logs and "starting it again" in logs
    deadline = time.monotonic() + 10
    while _alive(second) and time.monotonic() < deadline:  # the worker's shutdown stops the new beat too
        time.sleep(0.1)
    assert not _alive(second)
