"""What the intake app needs, built from settings by `worker.intake.build` (or by tests, with fakes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from config import Settings
from worker.intake.auth import Authenticator
from worker.intake.service import AlertIntake
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
    ssf: SetReceiver | None = None  # None: no Shared Signals transmitters are configured
