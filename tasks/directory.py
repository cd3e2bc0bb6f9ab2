"""The periodic directory refresh: keeps the shared copy of a small enterprise's directory fresh, so alerts
resolve without a lookup each (worker.run.runner.refresh_directory decides whether it is cheap enough)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from config import Settings
from tasks.jobs import TRANSIENT_FAULTS
from worker.errors import BoxAuthError
from worker.run.context import RunContext
from worker.run.runner import refresh_directory

log = logging.getLogger(__name__)

REFRESH_DIRECTORY = "boxcut.refresh_directory"


def register(app: Celery, *, context: Callable[[], RunContext], settings: Settings, queue: str) -> Any:
    """Define the refresh task on `app`, and ask for a first refresh as a worker starts (beat's first round
    comes only after a whole interval)."""

    @app.task(name=REFRESH_DIRECTORY, acks_late=True)  # type: ignore[untyped-decorator]
    def refresh_task() -> str:
        try:
            done = refresh_directory(context(), max_users=settings.directory_background_max_users,
                                     max_age_seconds=settings.directory_refresh_seconds * 0.9)
        except (*TRANSIENT_FAULTS, BoxAuthError) as fault:  # the next round tries again; lookups serve meanwhile
            done = f"not refreshed: {fault}"
        # A copy made is logged by the cache itself; a round with nothing to do is DEBUG, one that failed a WARNING;
        # an enterprise too large to copy in the background is worth saying (once a round, every few minutes).
        level = logging.WARNING if done.startswith("not refreshed") else (
            logging.INFO if "too many" in done else logging.DEBUG)
        log.log(level, "directory copy: %s", done)
        return done

    def first_refresh(**_: Any) -> None:
        app.send_task(REFRESH_DIRECTORY, queue=queue, expires=settings.directory_refresh_seconds)

    worker_ready.connect(first_refresh, weak=False)
    return refresh_task
