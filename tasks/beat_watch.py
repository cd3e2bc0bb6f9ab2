"""A worker's embedded beat, started again when it dies.

`boxcut worker` runs Celery beat inside itself unless told `--no-beat`; Celery runs it as a child process and, unlike
its pool processes, never replaces it. A beat killed on its own (the OOM killer, an operator's `kill` aimed at a pool
process) left the worker alive and answering while nothing periodic ran any more: no sweep, no notification scan,
no event-stream pass, so work that lost its task stayed stranded. A soak found it: after a SIGKILL to the worker's
children, jobs stayed `terminating` and no notice went out.

This step looks at the embedded beat every few seconds from the worker's timer, and starts a new one in its place
when it has died, saying so in the log. The new one is handed to Celery's Beat step, so the worker's shutdown stops
it as it would have stopped the first.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.beat import EmbeddedService
from celery.worker import state

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0
BEAT_STEP = "celery.worker.components.Beat"


class BeatWatch(bootsteps.StartStopStep):  # type: ignore[misc]
    """Starts the worker's embedded beat again when its process has died."""

    label = "BeatWatch"
    requires = (BEAT_STEP, "celery.worker.components.Timer")

    def __init__(self, w: Any, **kwargs: Any) -> None:
        super().__init__(w, **kwargs)
        self._timer: Any = None

    def start(self, w: Any) -> None:
        if w.beat is not None:
            self._timer = w.timer.call_repeatedly(CHECK_SECONDS, self.check, (w,), priority=10)

    def stop(self, w: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def check(self, w: Any) -> None:
        """Start a new embedded beat when the current one's process has died (not while the worker stops)."""
        beat = w.beat
        if beat is None or self._timer is None or _alive(beat) or state.should_stop or state.should_terminate:
            return  # alive, or the worker is stopping (a signal to the whole group stops the beat first)
        log.error("the embedded beat (pid %s) died with exit code %s: starting it again", beat.pid, beat.exitcode)
        w.beat = EmbeddedService(w.app, schedule_filename=w.schedule_filename, scheduler_cls=w.scheduler)
        w.beat.start()
        step = w.blueprint.steps.get(BEAT_STEP)
        if step is not None:
            step.obj = w.beat  # what the worker's shutdown stops


def _alive(beat: Any) -> bool:
    """Whether the beat still runs: a process that has not exited (a threaded one counts as alive)."""
    is_alive = getattr(beat, "is_alive", None)
    return True if is_alive is None else bool(is_alive())
