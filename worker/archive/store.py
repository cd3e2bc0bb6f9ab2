"""The archive: finished jobs, their calls and their audit trail, kept in a database (PostgreSQL or SQLite).

It knows nothing of boxcut's job model: a job is a document (a JSON-able dict) with a few columns beside it to
query by; a call is a document; an audit entry is a Redis stream entry, its JSON data kept as the text it was.
Every write is idempotent (upserts, inserts that ignore what is there), so a move from Redis cut off halfway is
simply repeated. Rows are written in key order, so two writers with overlapping rows never deadlock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Insert,
    Select,
    Table,
    and_,
    delete,
    exists,
    func,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from worker.archive import migrate
from worker.archive.schema import (
    ArchiveError,
    SchemaBehind,
    archived_audit,
    archived_calls,
    archived_job_calls,
    archived_jobs,
    engine_for,
    hidden,
    reaching,
)

__all__ = [
    "Archive",
    "ArchiveError",
    "AuditRow",
    "CallRow",
    "Expired",
    "JobLine",
    "JobRow",
    "SchemaBehind",
    "Summary",
]

_CHUNK = 500
_ENTRY_ID = re.compile(r"^(\d+)-(\d+)$")
_LISTING_FLAGS = {"dead": archived_jobs.c.dead, "active-after": archived_jobs.c.active_after}

T = TypeVar("T")


@dataclass(frozen=True)
class JobRow:
    """A finished job: its document, and the columns a listing filters and sorts by."""

    job_id: str
    state: str
    source: str
    reason: str
    created_at: str
    updated_at: str
    created_us: int
    dead: bool
    active_after: bool
    doc: dict[str, Any]


@dataclass(frozen=True)
class CallRow:
    """A Box call (shared by the jobs whose targets it carried): its document."""

    call_id: str
    doc: dict[str, Any]


@dataclass(frozen=True)
class AuditRow:
    """An audit stream entry: its stream id (`<ms>-<seq>`, unique) and its fields, `data` as the JSON text it was."""

    entry_id: str
    job_id: str
    event: str
    at: str
    data: str


@dataclass(frozen=True)
class JobLine:
    """One line of a job listing, wherever the job is kept (the working store's listing extends it too)."""

    job_id: str
    state: str
    source: str
    created_at: str
    updated_at: str
    reason: str


@dataclass(frozen=True)
class Summary(JobLine):
    """One line of a listing of archived jobs: also when the job was made, to the microsecond (the order)."""

    created_us: int


@dataclass(frozen=True)
class Expired:
    """What one retention pass deleted."""

    jobs: int
    calls: int
    audit_entries: int


class Archive:
    """The archive at a database URL: `postgresql://…` (psycopg 3) or `sqlite:///path`, through the same code."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self._url = url
        self._engine: Engine = engine_for(url, echo=echo)

    @property
    def where(self) -> str:
        """The database's URL with any password hidden, for logs and `boxcut doctor`."""
        return hidden(self._url)

    @property
    def embedded(self) -> bool:
        """Whether the archive is an SQLite file (one writer at a time) rather than a database server."""
        return self._engine.dialect.name == "sqlite"

    def check_schema(self) -> None:
        """Raise SchemaBehind unless the database's schema is at this code's head revision."""
        with reaching(self._url), self._engine.connect() as connection:
            revision = migrate.revision_on(connection)
        wanted = migrate.head()
        if revision == wanted:
            return
        if revision is not None and revision not in migrate.revisions():
            raise SchemaBehind(f"the archive at {self.where} has schema revision {revision}, newer than this "
                               f"code knows ({wanted}): run the boxcut that migrated it")
        found = "no schema" if revision is None else f"schema revision {revision}"
        raise SchemaBehind(f"the archive at {self.where} has {found}, this code needs {wanted}: run `boxcut migrate`")

    def put(self, jobs: list[JobRow], calls: list[CallRow], links: list[tuple[str, str]]) -> None:
        """Write jobs and calls (a repeat overwrites) and job->call links (a repeat is ignored), in one transaction."""
        job_rows = [_job_params(job) for job in _last_by(jobs, lambda job: job.job_id)]
        call_rows = [_call_params(call) for call in _last_by(calls, lambda call: call.call_id)]
        link_rows = [{"job_id": job_id, "call_id": call_id} for job_id, call_id in sorted(set(links))]
        with reaching(self._url), self._engine.begin() as connection:
            if job_rows:
                connection.execute(self._upsert(archived_jobs, "job_id"), job_rows)
            if call_rows:
                connection.execute(self._upsert(archived_calls, "call_id"), call_rows)
            if link_rows:
                connection.execute(self._insert_new(archived_job_calls, "job_id", "call_id"), link_rows)

    def put_audit(self, entries: list[AuditRow]) -> int:
        """Insert the entries whose id is new and ignore the rest, in one transaction; how many were new."""
        rows = [_audit_params(entry) for entry in _last_by(entries, lambda entry: entry.entry_id)]
        if not rows:
            return 0
        statement = self._insert_new(archived_audit, "entry_id").returning(archived_audit.c.entry_id)
        with reaching(self._url), self._engine.begin() as connection:
            return len(connection.execute(statement, rows).all())

    def job(self, job_id: str) -> JobRow | None:
        """The archived job, or None."""
        with reaching(self._url), self._engine.connect() as connection:
            row = connection.execute(select(archived_jobs).where(archived_jobs.c.job_id == job_id)).first()
        return None if row is None else _job_row(row)

    def calls(self, call_ids: list[str]) -> dict[str, CallRow]:
        """The archived calls among `call_ids`, by id."""
        found: dict[str, CallRow] = {}
        with reaching(self._url), self._engine.connect() as connection:
            for chunk in _chunks(sorted(set(call_ids))):
                query = select(archived_calls).where(archived_calls.c.call_id.in_(chunk))
                for row in connection.execute(query):
                    found[row.call_id] = CallRow(call_id=row.call_id, doc=json.loads(row.doc))
        return found

    def has_jobs(self, job_ids: list[str]) -> set[str]:
        """Which of `job_ids` are archived."""
        found: set[str] = set()
        with reaching(self._url), self._engine.connect() as connection:
            for chunk in _chunks(sorted(set(job_ids))):
                query = select(archived_jobs.c.job_id).where(archived_jobs.c.job_id.in_(chunk))
                found.update(connection.execute(query).scalars())
        return found

    def list_jobs(self, *, state: str | None = None, source: str | None = None, limit: int = 50) -> list[Summary]:
        """The newest archived jobs first (ties by job id, descending), filtered by listing state and source."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        query = (select(*(archived_jobs.c[name] for name in _SUMMARY_COLUMNS)).where(*_filters(state, source))
                 .order_by(archived_jobs.c.created_us.desc(), archived_jobs.c.job_id.desc()).limit(limit))
        with reaching(self._url), self._engine.connect() as connection:
            return [Summary(**row._asdict()) for row in connection.execute(query)]

    def count_jobs(self, *, state: str | None = None, source: str | None = None) -> int:
        """How many archived jobs a listing with these filters holds."""
        query = select(func.count()).select_from(archived_jobs).where(*_filters(state, source))
        with reaching(self._url), self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def audit_for_job(self, job_id: str) -> list[dict[str, Any]]:
        """The job's audit trail, oldest first (by stream id, numerically)."""
        query = _audit_query().where(archived_audit.c.job_id == job_id)
        with reaching(self._url), self._engine.connect() as connection:
            return [_audit_entry(row) for row in connection.execute(query)]

    def audit_since(self, *, since_ms: int = 0, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every audit entry from `since_ms` on, oldest first, read `page` entries at a time (no transaction is
        held between pages)."""
        _at_least_one("page", page)
        after: ColumnElement[bool] = archived_audit.c.ms >= since_ms
        while True:
            with reaching(self._url), self._engine.connect() as connection:
                rows = connection.execute(_audit_query().where(after).limit(page)).all()
            yield from (_audit_entry(row) for row in rows)
            if len(rows) < page:
                return
            after = tuple_(archived_audit.c.ms, archived_audit.c.seq) > tuple_(rows[-1].ms, rows[-1].seq)

    def last_audit_id(self) -> str | None:
        """The greatest audit entry id stored (in stream order), or None."""
        query = (select(archived_audit.c.entry_id)
                 .order_by(archived_audit.c.ms.desc(), archived_audit.c.seq.desc()).limit(1))
        with reaching(self._url), self._engine.connect() as connection:
            return connection.execute(query).scalar()

    def expire(self, *, created_before_us: int, batch: int = 1000) -> Expired:
        """Delete jobs created before `created_before_us`, their links, the calls no job links any more, and audit
        entries older than it, `batch` at a time, each batch its own transaction."""
        _at_least_one("batch", batch)
        jobs = calls = 0
        while True:
            gone_jobs, gone_calls = self._expire_jobs(created_before_us, batch)
            jobs, calls = jobs + gone_jobs, calls + gone_calls
            if gone_jobs < batch:
                break
        entries = 0
        while True:
            gone = self._expire_audit(created_before_us // 1000, batch)
            entries += gone
            if gone < batch:
                break
        return Expired(jobs=jobs, calls=calls, audit_entries=entries)

    def stats(self) -> dict[str, int]:
        """How many jobs, calls and audit entries the archive holds."""
        tables = {"jobs": archived_jobs, "calls": archived_calls, "audit_entries": archived_audit}
        with reaching(self._url), self._engine.connect() as connection:
            return {name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
                    for name, table in tables.items()}

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def _expire_jobs(self, created_before_us: int, batch: int) -> tuple[int, int]:
        """One batch of old jobs gone with their links and orphaned calls: (jobs, calls) deleted."""
        oldest = (select(archived_jobs.c.job_id).where(archived_jobs.c.created_us < created_before_us)
                  .order_by(archived_jobs.c.created_us, archived_jobs.c.job_id).limit(batch))
        with reaching(self._url), self._engine.begin() as connection:
            job_ids = list(connection.execute(oldest).scalars())
            if not job_ids:
                return 0, 0
            linked = select(archived_job_calls.c.call_id).where(archived_job_calls.c.job_id.in_(job_ids)).distinct()
            call_ids = sorted(connection.execute(linked).scalars())
            connection.execute(delete(archived_job_calls).where(archived_job_calls.c.job_id.in_(job_ids)))
            jobs = connection.execute(delete(archived_jobs).where(archived_jobs.c.job_id.in_(job_ids))).rowcount
            return jobs, sum(_delete_orphans(connection, chunk) for chunk in _chunks(call_ids))

    def _expire_audit(self, before_ms: int, batch: int) -> int:
        """One batch of audit entries older than `before_ms` gone: how many."""
        oldest = (select(archived_audit.c.entry_id).where(archived_audit.c.ms < before_ms)
                  .order_by(archived_audit.c.ms, archived_audit.c.seq).limit(batch))
        with reaching(self._url), self._engine.begin() as connection:
            return connection.execute(delete(archived_audit).where(archived_audit.c.entry_id.in_(oldest))).rowcount

    def _upsert(self, table: Table, key: str) -> Insert:
        """INSERT … ON CONFLICT (key) DO UPDATE every other column, in this database's dialect."""
        statement = self._insert(table)
        others = {column.name: statement.excluded[column.name] for column in table.columns
                  if column.name != key and column.server_default is None}
        return statement.on_conflict_do_update(index_elements=[key], set_=others)

    def _insert_new(self, table: Table, *key: str) -> Insert:
        """INSERT … ON CONFLICT (key) DO NOTHING, in this database's dialect."""
        return self._insert(table).on_conflict_do_nothing(index_elements=list(key))

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        if self._engine.dialect.name == "sqlite":
            return sqlite.insert(table)
        raise ArchiveError(f"the archive supports PostgreSQL and SQLite, not {self._engine.dialect.name}")


_SUMMARY_COLUMNS = ("job_id", "state", "source", "created_at", "updated_at", "reason", "created_us")


def _delete_orphans(connection: Connection, call_ids: list[str]) -> int:
    """Delete those of `call_ids` no job links any more; locked first, so a link committed meanwhile is seen."""
    connection.execute(select(archived_calls.c.call_id).where(archived_calls.c.call_id.in_(call_ids))
                       .order_by(archived_calls.c.call_id).with_for_update())
    still_linked = exists().where(archived_job_calls.c.call_id == archived_calls.c.call_id)
    orphans = delete(archived_calls).where(and_(archived_calls.c.call_id.in_(call_ids), ~still_linked))
    return connection.execute(orphans).rowcount


def _filters(state: str | None, source: str | None) -> list[ColumnElement[bool]]:
    """A listing's WHERE: `dead` and `active-after` are flags, any other state the state column."""
    conditions: list[ColumnElement[bool]] = []
    if state in _LISTING_FLAGS:
        conditions.append(_LISTING_FLAGS[state] == true())
    elif state is not None:
        conditions.append(archived_jobs.c.state == state)
    if source is not None:
        conditions.append(archived_jobs.c.source == source)
    return conditions


def _audit_query() -> Select[Any]:
    return select(archived_audit).order_by(archived_audit.c.ms, archived_audit.c.seq)


def _audit_entry(row: Row[Any]) -> dict[str, Any]:
    return {"id": row.entry_id, "job_id": row.job_id, "event": row.event, "at": row.at,
            "data": json.loads(row.data)}


def _job_row(row: Row[Any]) -> JobRow:
    return JobRow(job_id=row.job_id, state=row.state, source=row.source, reason=row.reason,
                  created_at=row.created_at, updated_at=row.updated_at, created_us=row.created_us,
                  dead=bool(row.dead), active_after=bool(row.active_after), doc=json.loads(row.doc))


def _job_params(job: JobRow) -> dict[str, Any]:
    return {"job_id": job.job_id, "state": _text(job.state), "source": _text(job.source),
            "reason": _text(job.reason), "created_at": _text(job.created_at), "updated_at": _text(job.updated_at),
            "created_us": job.created_us, "dead": job.dead, "active_after": job.active_after,
            "doc": _json(job.doc)}


def _call_params(call: CallRow) -> dict[str, Any]:
    return {"call_id": call.call_id, "doc": _json(call.doc)}


def _audit_params(entry: AuditRow) -> dict[str, Any]:
    ms, seq = _stream_position(entry.entry_id)
    return {"entry_id": entry.entry_id, "ms": ms, "seq": seq, "job_id": entry.job_id,
            "event": _text(entry.event), "at": _text(entry.at), "data": entry.data}


def _stream_position(entry_id: str) -> tuple[int, int]:
    """A Redis stream id's (milliseconds, sequence)."""
    match = _ENTRY_ID.match(entry_id)
    if match is None:
        raise ValueError(f"not a stream entry id (<ms>-<seq>): {entry_id!r}")
    return int(match.group(1)), int(match.group(2))


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _text(value: str) -> str:
    """A query column's text without NUL, which PostgreSQL's text refuses (the document keeps it, escaped)."""
    return value.replace("\x00", "\ufffd")


def _last_by(items: Iterable[T], key: Callable[[T], str]) -> list[T]:
    """One item per key (the last given wins), in key order: an upsert touches each row once, in one order."""
    last = {key(item): item for item in items}
    return [last[name] for name in sorted(last)]


def _at_least_one(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be positive, not {value}")


def _chunks(items: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start:start + _CHUNK])
