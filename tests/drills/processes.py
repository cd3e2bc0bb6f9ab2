"""A worker's child processes, read from /proc: its prefork pool (Celery titles them ForkPoolWorker-N) and, for a
worker that embeds beat, the beat."""

from __future__ import annotations

from pathlib import Path

POOL_TITLE = "ForkPoolWorker"


def children(parent_pid: int) -> dict[int, str]:
    """The processes whose parent is `parent_pid`, each with its command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat[1]) == parent_pid:
            found[int(entry.name)] = title
    return found


def pool_processes(worker_pid: int) -> list[int]:
    return [pid for pid, title in children(worker_pid).items() if POOL_TITLE in title]


def embedded_beats(worker_pid: int) -> list[int]:
    return [pid for pid, title in children(worker_pid).items() if POOL_TITLE not in title]
