"""Celery's own INFO lines about the periodic tasks, said at DEBUG instead: beat's "Sending due task", the
worker's "Task … received" and "Task … succeeded". Three lines a round for the sweep, the archive pass, the
event-stream reader and the rest made some 65 INFO lines a minute at idle, burying the banner and the real errors.
Job and send tasks keep theirs; a periodic task that fails is still logged by Celery at ERROR, and what a round
found is logged by the task itself (tasks/*.py)."""

from __future__ import annotations

import logging
import re

# The periodic tasks (config/celery_settings.py's beat_schedule).
PERIODIC_TASKS = ("boxcut.sweep", "boxcut.refresh_directory", "boxcut.expire", "boxcut.archive",
                  "boxcut.read_events", "boxcut.scan_notifications")
# Celery's loggers of those lines: beat, the worker's strategy (received) and the task trace (succeeded).
CELERY_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")

_NAMED = re.compile(r"(?:Task |\()(" + "|".join(re.escape(n) for n in PERIODIC_TASKS) + r")[\[)]")


class PeriodicAtDebug(logging.Filter):
    """Lowers an INFO line about a periodic task to DEBUG, and lets it through only where DEBUG is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _NAMED.search(record.getMessage()):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def quiet_periodic_tasks() -> None:
    """Install the filter on Celery's loggers (before the worker or beat starts: their forks inherit it)."""
    for name in CELERY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, PeriodicAtDebug) for f in logger.filters):
            logger.addFilter(PeriodicAtDebug())
