"""BOXCUT_LOG_LEVEL reaches the loggers of a real worker's pool processes, without a --loglevel flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import running_stack
from worker.jobs.model import JobState

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("level", "shown", "hidden"), [
    ("DEBUG", " DEBUG worker.box.client: POST /users/terminate_sessions answered 202", None),
    ("INFO", " INFO worker.", " DEBUG worker."),
])
def test_the_setting_sets_the_level_of_boxcuts_own_loggers(redis_url: str, tmp_path: Path, level: str,
                                                          shown: str | None, hidden: str | None) -> None:
    with running_stack(redis_url, tmp_path, worker=False) as stack:
        stack.start_worker(loglevel=None, extra_env={"BOXCUT_LOG_LEVEL": level, "BOXCUT_LOG_FORMAT": "text"})
        job = stack.wait(stack.submit([{"type": "user", "login": "jdoe@example.com"}]))
        assert job.state is JobState.SUCCEEDED
        logs = stack.worker_logs()
        assert shown is None or shown in logs, logs[-3000:]
        assert hidden is None or hidden not in logs, logs[-3000:]
