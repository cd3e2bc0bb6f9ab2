"""Where a job's record is read from, whatever became of it: Redis while it works, its packed copy while it is
hot, the archive after (worker/jobs/archiving.py). Every reader of a job that may have finished (status, the
listing, the audit trail, the evidence report, the API) reads through here, and is told where the answer came
from: `redis`, `hot` or `archive`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import Settings
from worker.archive.store import Archive, ArchiveError
from worker.errors import JobNotFound
from worker.jobs.document import call_from_document, job_from_document
from worker.jobs.model import Job
from worker.jobs.store import JobStore, JobSummary

WORKING, HOT, ARCHIVE = "redis", "hot", "archive"


@dataclass(frozen=True)
class Found:
    """A job's record and where it was read."""

    job: Job
    stored: str


@dataclass(frozen=True)
class Evidence:
    """What an evidence report is made of: the record, its audit trail, the requests sent for each call."""

    job: Job
    audit: list[dict[str, Any]]
    requests_sent: dict[str, int]
    stored: str


@dataclass(frozen=True)
class Listed:
    """One line of a listing, and where the job is."""

    summary: JobSummary
    stored: str

    def to_dict(self) -> dict[str, str]:
        return {**self.summary.to_dict(), "stored": self.stored}


class JobHistory:
    """Reads jobs from Redis or, once they have left it, from the archive."""

    def __init__(self, store: JobStore, archive: Archive | None, *,
                 archive_made: Callable[[], bool] = lambda: True) -> None:
        """`archive_made`: whether the archive exists yet (an embedded SQLite file is made by the first archive
        pass; until then nothing is archived, and reads do not make an empty one)."""
        self.store, self.archive = store, archive
        self._archive_made = archive_made

    @property
    def readable_archive(self) -> Archive | None:
        """The archive, once there is one to read (an embedded file is made by the first archive pass)."""
        return self.archive if self.archive is not None and self._archive_made() else None

    @property
    def _archive(self) -> Archive | None:
        return self.readable_archive

    def find(self, job_id: str) -> Found:
        """The job's record (JobNotFound when neither Redis nor the archive has it)."""
        try:
            return Found(self.store.load(job_id), self._where(job_id))
        except JobNotFound:
            return Found(self._archived(job_id)[0], ARCHIVE)

    def audit(self, job_id: str) -> list[dict[str, Any]]:
        """The job's whole audit trail, oldest first."""
        return self.evidence(job_id).audit

    def evidence(self, job_id: str) -> Evidence:
        """The record, the audit trail and the requests sent, read from one place: read again when the job moved
        (settled, or evicted) between the reads, so a report never mixes two forms."""
        for _ in range(3):
            before = self._form(job_id)
            try:
                job = self.store.load(job_id)
            except JobNotFound:
                job, sent = self._archived(job_id)
                assert self.archive is not None  # _archived found it there
                return Evidence(job, self.archive.audit_for_job(job_id), sent, ARCHIVE)
            read = Evidence(job, self.store.audit_entries(job_id=job_id), self.store.requests_sent(job),
                            self._where(job_id))
            if self._form(job_id) == before == read.stored:
                return read
        raise JobNotFound(job_id)

    def _form(self, job_id: str) -> str | None:
        """Where the job is in Redis now: working, hot, or neither (None)."""
        if self.store.live(job_id):
            return WORKING
        return HOT if self.store.which_exist([job_id], settled=True) else None

    def _where(self, job_id: str) -> str:
        return WORKING if self.store.live(job_id) else HOT

    def _archived(self, job_id: str) -> tuple[Job, dict[str, int]]:
        archive = self._archive
        row = archive.job(job_id) if archive is not None and self.store.is_job_id(job_id) else None
        if row is None or archive is None:
            raise JobNotFound(job_id)
        calls = [call_from_document(c.doc) for c in archive.calls(list(row.doc["call_ids"])).values()]
        return job_from_document(row.doc, [c for c, _ in calls]), {c.call_id: sent for c, sent in calls}

    def list_jobs(self, *, state: str | None = None, source: str | None = None, limit: int = 50,
                  cursor: int = 0) -> tuple[list[Listed], int | None]:
        """Jobs newest first, in Redis and in the archive (a job in both is listed once, as Redis has it); and
        the cursor of the next page (None on the last)."""
        wanted = cursor + limit
        working, _ = self.store.list_jobs(state=state, source=source, limit=wanted + 1)
        rows = [Listed(s, WORKING) for s in working]
        if self._archive is not None:
            seen = {s.job_id for s in working}
            archived = [a for a in self._archive.list_jobs(state=state, source=source, limit=wanted + 1)
                        if a.job_id not in seen]
            live, hot = self._live([a.job_id for a in archived]), self._hot([a.job_id for a in archived])
            rows += [Listed(JobSummary(a.job_id, a.state, a.source, a.created_at, a.updated_at, a.reason),
                            HOT if a.job_id in hot else ARCHIVE) for a in archived if a.job_id not in live]
        rows.sort(key=lambda r: (r.summary.created_at, r.summary.job_id), reverse=True)
        return rows[cursor:wanted], (wanted if len(rows) > wanted else None)

    def _live(self, job_ids: list[str]) -> set[str]:
        """Which of these archived jobs are working in Redis again (retried since): Redis's record wins."""
        return self.store.which_exist(job_ids, settled=False)

    def _hot(self, job_ids: list[str]) -> set[str]:
        return self.store.which_exist(job_ids, settled=True)

    def audit_since(self, *, since_ms: int = 0) -> Iterator[dict[str, Any]]:
        """Every audit entry from `since_ms` (epoch ms) on, oldest first: the archive's, then the stream's newer
        ones (an entry in both is given once)."""
        last = (0, -1)
        if self._archive is not None:
            for entry in self._archive.audit_since(since_ms=since_ms):
                last = _order(entry["id"])
                yield entry
        for entry in self.store.audit_since(since_ms=since_ms):
            if _order(entry["id"]) > last:
                yield entry


def history_of(settings: Settings, store: JobStore) -> JobHistory:
    """Reads through `store` and the archive the settings name (BOXCUT_ARCHIVE_URL, or the embedded SQLite
    file), made known to `store` so that a claim naming an archived job counts as a repeat. No connection is made
    until the archive is first used."""
    archive = Archive(settings.archive_location)
    location = settings.archive_location
    sqlite_file = Path(location.removeprefix("sqlite:///")) if location.startswith("sqlite:///") else None

    schema_seen = False

    def made() -> bool:
        """Whether the archive holds a schema to read: a database server's always counts (a missing schema is an
        error to report); an embedded file only once the first archive pass has made it and its tables (it may
        be mid-way through making them)."""
        nonlocal schema_seen
        if sqlite_file is None or schema_seen:
            return True
        if not sqlite_file.exists():
            return False
        try:
            archive.check_schema()
        except ArchiveError:
            return False
        schema_seen = True
        return True

    def archived(job_id: str) -> bool:
        if not made():
            return False
        try:
            return job_id in archive.has_jobs([job_id])
        except ArchiveError:
            return False  # unknown: a repeat is then taken as new and acted on, rather than dropped

    store.archived = archived
    return JobHistory(store, archive, archive_made=made)


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
