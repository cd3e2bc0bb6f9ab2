"""Archiving: finished jobs and the audit stream move from Redis to the archive (worker/archive), so Redis holds
what is in flight and a hot window of compact copies, however long the retention.

One pass (the periodic `boxcut.archive` task; safe on every host at once, every step idempotent):

1. **Ship the audit stream.** Entries of the main stream past the shipped position are inserted into the
   archive (an entry already there is skipped), then the position moves on; the stream is trimmed up to it, and
   never past what the notification scanner has yet to read.
2. **Settle quiet jobs.** A finished job is quiet when nothing will change it any more: no run holds it, nothing
   of it waits in the send queue, every call is answered, its watch after termination and its late-event margin
   are over, every notification about it is delivered or failed (and the scanner has read its last entry), and
   it has not changed for BOXCUT_SETTLE_SECONDS (a job holding failed or dead targets, which an operator may
   retry, for the hot window). Its audit trail, calls and record are committed to the archive first; then one
   Redis step, guarded on the job being as it was read, replaces its working keys by a packed copy (or by
   nothing, when it is older than the hot window). A pass cut off between the two leaves the job working in
   Redis and its row in the archive: the next pass writes the row again and settles it.
3. **Evict.** A packed copy older than the hot window (BOXCUT_HOT_DAYS) leaves Redis; its row was committed when
   it settled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from worker.archive.store import Archive, ArchiveError, AuditRow, CallRow, JobRow
from worker.jobs.document import call_document, job_document
from worker.jobs.model import FINAL_STATES, CallState, Job, TargetStatus
from worker.jobs.send_queue import SendQueue
from worker.jobs.store import JobStore

log = logging.getLogger(__name__)

# Per pass, at most: entries shipped, jobs settled, copies evicted. A pass every 10 s moves up to 180,000 jobs an
# hour, far above any alert rate; a backlog (the archive was down for a day) drains over a few passes.
SHIP_PAGE = 1000
SHIP_MOST = 50_000
SETTLE_MOST = 500
EVICT_MOST = 5000

DELIVERY_FINAL = frozenset({"delivered", "failed"})
RETRYABLE = frozenset({TargetStatus.FAILED, TargetStatus.DEAD})


@dataclass(frozen=True)
class Moved:
    """What one pass did."""

    shipped: int = 0
    settled: int = 0
    archived_only: int = 0
    evicted: int = 0
    waiting: int = 0  # finished jobs not quiet yet

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Archiver:
    """Moves finished jobs and the audit stream from Redis to the archive."""

    def __init__(self, store: JobStore, queue: SendQueue, archive: Archive, *, hot_seconds: float,
                 settle_seconds: float, late_events_seconds: float,
                 scanned_to: Callable[[], str | None] | None = None, clock: Callable[[], float] = time.time) -> None:
        """`scanned_to`: the notification scanner's position in the audit stream, when notifications are on (an
        entry past it may still ask for a notification, so neither its job settles nor the stream is trimmed
        past it)."""
        self.store, self.queue, self.archive = store, queue, archive
        self.hot_seconds, self.settle_seconds = hot_seconds, settle_seconds
        self.late_events_seconds = late_events_seconds
        self.scanned_to = scanned_to
        self.clock = clock

    @property
    def _shipped_key(self) -> str:
        return f"{self.store.prefix}audit:shipped"

    def run(self) -> Moved:
        """One pass: ship, settle, evict."""
        self.archive.check_schema()
        shipped = self.ship_audit()
        settled, archived_only, waiting = self.settle_jobs()
        evicted = self.evict()
        moved = Moved(shipped=shipped, settled=settled, archived_only=archived_only, evicted=evicted,
                      waiting=waiting)
        if shipped or settled or archived_only or evicted:
            log.info("archive: %d audit entries shipped, %d jobs settled (%d archived only), %d copies evicted",
                     shipped, settled, archived_only, evicted)
        return moved

    # -- the audit stream ------------------------------------------------------------------------------------

    def shipped_to(self) -> str | None:
        raw = self.store.redis.get(self._shipped_key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def ship_audit(self, *, page: int = SHIP_PAGE, most: int = SHIP_MOST) -> int:
        """Copy the main stream's new entries into the archive, then trim what is shipped and scanned."""
        position, shipped = self.shipped_to() or "0-0", 0
        while shipped < most:
            entries = self.store.redis.xrange(self.store.audit_key, min="(" + position, max="+", count=page) or []
            rows = [_audit_row(_text(entry_id), fields) for entry_id, fields in entries if fields]
            if rows:
                self.archive.put_audit(rows)
            if entries:
                position = _text(entries[-1][0])
                self.store.redis.set(self._shipped_key, position)
            shipped += len(rows)
            if len(entries) < page:
                break
        self._trim(position)
        return shipped

    def _trim(self, shipped: str) -> None:
        scanned = self.scanned_to() if self.scanned_to is not None else None
        if self.scanned_to is not None and scanned is None:
            return  # the scanner has not started: every entry may still ask for a notification
        upto = min((shipped, scanned) if scanned else (shipped,), key=_id_order)
        if upto != "0-0":
            self.store.redis.xtrim(self.store.audit_key, minid=upto, approximate=False)

    # -- settling --------------------------------------------------------------------------------------------

    def settle_jobs(self, *, most: int = SETTLE_MOST) -> tuple[int, int, int]:
        """Settle the finished jobs that are quiet: (settled with a packed copy, archived only, not quiet yet). A
        job not quiet yet is looked at again when it may be (`JobStore.defer_settle`), so however many wait (a
        week of failed jobs kept for a retry), the ones behind them are reached."""
        settled = archived_only = waiting = 0
        for job_id in self.store.settle_candidates(FINAL_STATES, now=self.clock(), limit=most):
            try:
                outcome = self.settle(job_id)
            except (ArchiveError, redis.RedisError):
                raise  # the archive or Redis is down: the pass stops, and every job waits in Redis
            except Exception:  # one job that cannot be settled (a record damaged by hand, say) stops no other
                log.exception("archive: job %s could not be settled; it stays in Redis and is looked at again "
                              "later", job_id)
                self.store.defer_settle(job_id, until=self.clock() + max(self.settle_seconds, 60.0))
                continue
            if outcome == "hot":
                settled += 1
            elif outcome == "archived":
                archived_only += 1
            elif outcome == "waits":
                waiting += 1
        return settled, archived_only, waiting

    def settle(self, job_id: str) -> str:
        """Settle one job if it is quiet: "hot" (a packed copy stays), "archived" (past the hot window: nothing
        stays), "waits" (not quiet yet) or "moved" (it changed while being archived: the next pass tries again)."""
        if not self.store.live(job_id):
            return "moved"
        job, now = self.store.load(job_id), self.clock()
        trail = self.store.audit_trail_raw(job_id)
        last_audit_id = trail[-1][0] if trail else ""
        quiet_at = self._quiet_at(job, last_audit_id, now)
        if quiet_at > now:
            self.store.defer_settle(job_id, until=quiet_at)
            return "waits"
        created_us = self.store.created_us(job_id)
        calls = [call_document(c, requests_sent=self.store.attempts_sent(c.call_id)) for c in job.calls]
        self.archive.put_audit([_audit_row(entry_id, fields) for entry_id, fields in trail])
        self.archive.put([_job_row(job, created_us)], [CallRow(call_id=c["call_id"], doc=c) for c in calls],
                         [(job.job_id, c["call_id"]) for c in calls])
        # A call folds into the copy when it carried this job's targets only, and always did (a call resent
        # without some targets lists fewer jobs than those whose records name it).
        folded = [doc for doc, call in zip(calls, job.calls, strict=True)
                  if set(call.carried()) <= {job_id} and not call.earlier_ids]
        keep_hot = now - created_us / 1_000_000 < self.hot_seconds
        if not self.store.settle(job, created_us=created_us, trail=trail, folded_calls=folded, keep_hot=keep_hot):
            return "moved"
        self.queue.forget_job(job_id)
        if not keep_hot:
            shared = [c.call_id for c in job.calls if c.call_id not in {d["call_id"] for d in folded}]
            self.store.drop_orphan_calls(shared, leaving=job_id)
        return "hot" if keep_hot else "archived"

    def _quiet_at(self, job: Job, last_audit_id: str, now: float) -> float:
        """When nothing will change the finished job any more, as far as can be told now (`now` or earlier: it is
        quiet); what may still move it is looked at again after BOXCUT_SETTLE_SECONDS."""
        soon = now + max(self.settle_seconds, 1.0)
        if job.state not in FINAL_STATES or self.store.leased(job.job_id) or self.queue.open_targets(job.job_id):
            return soon
        if any(c.state is not CallState.ANSWERED for c in job.calls):
            return soon
        if any(n.get("status") not in DELIVERY_FINAL for n in job.notifications):
            return soon
        if self.scanned_to is not None and last_audit_id:
            scanned = self.scanned_to()
            if scanned is None or _id_order(scanned) < _id_order(last_audit_id):
                return soon
        calm = self.hot_seconds if any(t.status in RETRYABLE for t in job.targets) else self.settle_seconds
        watched = _epoch(job.watch_until) + self.late_events_seconds if job.watch_until else 0.0
        return max(_epoch(job.updated_at) + calm, watched)

    # -- the hot window --------------------------------------------------------------------------------------

    def evict(self, *, most: int = EVICT_MOST) -> int:
        """Let packed copies older than the hot window go (their rows are in the archive)."""
        horizon_us = int((self.clock() - self.hot_seconds) * 1_000_000)
        due = self.store.settled_before(horizon_us, limit=most)
        archived = self.archive.has_jobs(due) if due else set()
        for job_id in due:
            if job_id not in archived:  # the archive lost it (restored from an older backup?): the copy stays
                log.error("archive: job %s is due to leave Redis but its archive row is missing; its packed "
                          "copy stays in Redis", job_id)
                continue
            self.store.evict(job_id)
        return len(archived)


def _job_row(job: Job, created_us: int) -> JobRow:
    return JobRow(job_id=job.job_id, state=job.state.value, source=job.source, reason=job.reason,
                  created_at=job.created_at, updated_at=job.updated_at, created_us=created_us,
                  dead=any(t.status is TargetStatus.DEAD for t in job.targets), active_after=job.active_after,
                  doc=job_document(job, created_us=created_us))


def _audit_row(entry_id: str, fields: Mapping[Any, Any]) -> AuditRow:
    text = {_text(k): _text(v) for k, v in fields.items()}
    return AuditRow(entry_id=entry_id, job_id=text.get("job_id", ""), event=text.get("event", ""),
                    at=text.get("at", ""), data=text.get("data", "{}"))


def _id_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
