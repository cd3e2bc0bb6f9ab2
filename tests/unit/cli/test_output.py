"""The progress bar: done of total, counts, rate and time left."""

from __future__ import annotations

from worker.cli.output import Progress


def test_the_bar_shows_rate_and_time_left_once_targets_finish() -> None:
    progress = Progress(started=100.0)
    first = progress.line((0, 0, 0, "resolving"), 1000, 101.0, width=10)
    assert first == "[----------] 0/1,000 targets  accepted 0  failed 0  1 s  resolving"
    progress.line((100, 100, 0, "terminating"), 1000, 102.0, width=10)  # the first targets finish here
    later = progress.line((500, 490, 10, "terminating"), 1000, 104.0, width=10)
    assert later == "[#####-----] 500/1,000 targets  accepted 490  failed 10  200/s ~2 s left 4 s  terminating"
    done = progress.line((1000, 990, 10, "partial"), 1000, 106.0, width=10)
    assert done.endswith("225/s 6 s  partial")
