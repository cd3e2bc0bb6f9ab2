"""The stack the storm drills share: boxsim with one user per job, and three worker processes of one pool
process each (the first runs beat), on a drill's private Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from boxsim import SimConfig
from tests.integration.harness import ChildProcess, Stack, running_stack

# Approval out of the way, the sweep every second, and small batches so a storm makes many calls.
STORM_ENV = {"BOXCUT_APPROVAL_THRESHOLD": "1000", "BOXCUT_SWEEP_SECONDS": "1", "BOXCUT_BATCH_SIZE": "5"}


@contextmanager
def three_workers(redis_url: str, tmp_path: Path, *, users: int) -> Iterator[tuple[Stack, list[ChildProcess]]]:
    with running_stack(redis_url, tmp_path, sim_config=SimConfig(port=0, generate_users=users),
                       extra_env=STORM_ENV, worker=False) as stack:
        yield stack, [stack.start_worker(concurrency=1, beat=n == 0) for n in range(3)]


def submit_one_job_per_user(stack: Stack, users: int) -> list[str]:
    return [stack.submit([{"type": "user", "login": f"user{n:05d}@example.com"}]) for n in range(1, users + 1)]
