"""What the console needs of the intake (`ConsoleDeps`) and where it is mounted: shared by the app that builds
the console and the routes it serves, so neither imports the other."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from config import Settings
from worker.jobs.history import JobHistory
from worker.jobs.store import JobStore

PREFIX = "/console"


@dataclass
class ConsoleDeps:
    """What the console needs of the intake: settings, the job store, reads through the archive, the queue."""

    settings: Settings
    store: JobStore
    history: JobHistory
    enqueue: Callable[[str], None]
    clock: Callable[[], float] = time.time  # sessions' ages (tests move it)
