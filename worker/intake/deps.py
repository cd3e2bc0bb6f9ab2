"""What the intake app needs, built from settings by `worker.intake.build` (or by tests, with fakes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from config import Settings
from worker.intake.auth import Authenticator
from worker.intake.service import AlertIntake
from worker.jobs.history import JobHistory
from worker.jobs.store import JobStore
from worker.ssf.receiver import SetReceiver


@dataclass
class IntakeDeps:
    """The settings, the job store, alert intake (with its enqueue and idempotency keys), auth, readiness."""

    settings: Settings
    store: JobStore
    intake: AlertIntake
    auth: Authenticator
    readiness: Callable[[], dict[str, str]]
    insecure_dev: bool = False
    history: JobHistory | None = None  # reads that reach the archive; None: Redis only (tests with fakes)
    ssf: SetReceiver | None = None  # None: no Shared Signals transmitters are configured

    @property
    def jobs(self) -> JobHistory:
        """Where job reads go: Redis, then the archive."""
        return self.history or JobHistory(self.store, None)
