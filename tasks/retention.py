"""The periodic expiry: finished jobs older than BOXCUT_RETENTION_DAYS leave Redis (worker/jobs/retention.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery

from worker.jobs.retention import expire
from worker.run.runner import RunContext

log = logging.getLogger(__name__)

EXPIRE = "boxcut.expire"


def register(app: Celery, *, context: Callable[[], RunContext], retention_days: int) -> Any:
    """Define the expiry task on `app`."""

    @app.task(name=EXPIRE, acks_late=True)  # type: ignore[untyped-decorator]
    def expire_task() -> dict[str, int]:
        ctx = context()
        return expire(ctx.store, ctx.queue, retention_days=retention_days).to_dict()

    return expire_task
