"""The archive (worker/archive) on SQLite in a temporary directory: migrations, writes that repeat harmlessly,
listings, the audit trail in stream order, retention in batches, and errors that hide passwords.

tests/integration/test_archive_postgres.py runs these same tests on a real PostgreSQL: a test here takes the
database through the fixtures `empty_url` (never migrated), `archive_url` (migrated, empty) and `archive`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, Text, func, select, text

from worker.archive import Archive, ArchiveError, AuditRow, CallRow, Expired, JobRow, SchemaBehind, Summary, migrate
from worker.archive.schema import archived_audit, archived_job_calls, engine_for, metadata

BASE_US = 1_733_500_000_000_000


@pytest.fixture
def empty_url(tmp_path: Path) -> str:
    """A database no migration has touched, in a directory that does not exist yet."""
    return f"sqlite:///{tmp_path}/archive/archive.db"


@pytest.fixture
def archive_url(empty_url: str) -> str:
    """A database at head, empty."""
    migrate.upgrade(empty_url)
    return empty_url


@pytest.fixture
def archive(archive_url: str) -> Iterator[Archive]:
    """The archive on a database at head."""
    opened = Archive(archive_url)
    yield opened
    opened.close()


def job(n: int, *, state: str = "succeeded", source: str = "panther", created_us: int | None = None,
        dead: bool = False, active_after: bool = False, doc: dict[str, Any] | None = None) -> JobRow:
    """Job number `n`, created `n` seconds after BASE_US unless told otherwise."""
    job_id = f"j-{n:016x}"
    return JobRow(job_id=job_id, state=state, source=source, reason=f"reason {n}",
                  created_at=f"2024-12-06T15:{n // 60:02d}:{n % 60:02d}Z", updated_at="2024-12-06T16:00:00Z",
                  created_us=BASE_US + n * 1_000_000 if created_us is None else created_us,
                  dead=dead, active_after=active_after, doc=doc if doc is not None else {"job_id": job_id, "n": n})


def call(name: str, **doc: Any) -> CallRow:
    return CallRow(call_id=name, doc={"call_id": name, **doc})


def entry(entry_id: str, job_id: str = "j-0000000000000001", event: str = "target.settled",
          data: str = '{"status":204}') -> AuditRow:
    return AuditRow(entry_id=entry_id, job_id=job_id, event=event, at="2024-12-06T15:00:00Z", data=data)


def rows_in(url: str, query: Any) -> list[Any]:
    """Rows straight from the database, past the archive's own reading."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(query).all())
    finally:
        engine.dispose()


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in entries]


# -- migrations -----------------------------------------------------------------------------------------------


def test_a_fresh_database_upgrades_from_nothing_to_head_and_a_second_upgrade_changes_nothing(empty_url: str) -> None:
    head = migrate.head()
    assert migrate.current(empty_url) is None
    assert migrate.pending(empty_url) == [head]
    assert migrate.upgrade(empty_url) == (None, head)
    assert migrate.current(empty_url) == head
    assert migrate.pending(empty_url) == []
    assert migrate.upgrade(empty_url) == (head, head)


def test_check_schema_refuses_a_database_below_head_and_says_to_migrate(empty_url: str) -> None:
    archive = Archive(empty_url)
    try:
        with pytest.raises(SchemaBehind, match="boxcut migrate"):
            archive.check_schema()
        migrate.upgrade(empty_url)
        archive.check_schema()
    finally:
        archive.close()


def test_check_schema_says_so_when_the_database_is_newer_than_this_code(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    engine = engine_for(empty_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    finally:
        engine.dispose()
    archive = Archive(empty_url)
    try:
        with pytest.raises(SchemaBehind, match="revision f00d, newer than this code knows"):
            archive.check_schema()
    finally:
        archive.close()


def _differences(url: str, target: MetaData) -> list[Any]:
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, target))
    finally:
        engine.dispose()


def test_the_migrations_build_exactly_the_schema_in_schema_py(archive_url: str) -> None:
    assert _differences(archive_url, metadata) == []


def test_the_schema_comparison_sees_a_column_the_migrations_lack(archive_url: str) -> None:
    changed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["archived_calls"].append_column(Column("extra", Text))
    assert [difference[0] for difference in _differences(archive_url, changed)] == ["add_column"]


# -- writes ---------------------------------------------------------------------------------------------------


def test_put_twice_keeps_one_row_each_and_the_second_overwrites(archive: Archive, archive_url: str) -> None:
    first = job(1, state="running", doc={"v": 1})
    archive.put([first], [call("c-1", v=1)], [(first.job_id, "c-1")])
    second = job(1, state="succeeded", doc={"v": 2})
    archive.put([second], [call("c-1", v=2)], [(first.job_id, "c-1")])
    assert archive.stats() == {"jobs": 1, "calls": 1, "audit_entries": 0}
    assert archive.job(first.job_id) == second
    assert archive.calls(["c-1"]) == {"c-1": call("c-1", v=2)}
    assert len(rows_in(archive_url, select(archived_job_calls))) == 1


def test_put_writes_a_key_repeated_in_one_call_once_the_last_winning(archive: Archive, archive_url: str) -> None:
    archive.put([job(1, doc={"v": 1}), job(1, doc={"v": 2})], [call("c-1", v=1), call("c-1", v=2)],
                [(job(1).job_id, "c-1"), (job(1).job_id, "c-1")])
    assert archive.job(job(1).job_id) == job(1, doc={"v": 2})
    assert archive.calls(["c-1"])["c-1"].doc == {"call_id": "c-1", "v": 2}
    assert len(rows_in(archive_url, select(archived_job_calls))) == 1


def test_put_is_one_transaction_a_refused_link_leaves_nothing_written(archive: Archive) -> None:
    with pytest.raises(ArchiveError):
        archive.put([job(1)], [call("c-1")], [(job(1).job_id, "c-1"), ("j-ffffffffffffffff", "c-1")])
    assert archive.stats() == {"jobs": 0, "calls": 0, "audit_entries": 0}


def test_a_document_reads_back_exactly_as_it_was_put(archive: Archive) -> None:
    doc = {"targets": [{"login": "jdöe@example.com", "status": None, "attempts": 3, "answer": {"code": 204}}],
           "reason": "Übernahme — 🚨 \"quoted\"\n\ttabbed \x00 nul", "big": 2**62, "negative": -1, "ratio": 0.25,
           "flags": [True, False, None], "empty": {}, "nested": {"a": {"b": {"c": []}}}}
    stored = job(1, doc=doc)
    archive.put([stored], [call("c-1", body=doc)], [])
    assert archive.job(stored.job_id) == stored
    assert json.dumps(archive.job(stored.job_id).doc) == json.dumps(doc)  # type: ignore[union-attr]
    assert archive.calls(["c-1"])["c-1"].doc == {"call_id": "c-1", "body": doc}


def test_a_reason_with_a_nul_is_archived_its_document_keeping_it_exactly(archive: Archive) -> None:
    stored = JobRow(**{**job(1).__dict__, "reason": "a\x00b", "doc": {"reason": "a\x00b"}})
    archive.put([stored], [], [])
    found = archive.job(stored.job_id)
    assert found is not None and found.doc == {"reason": "a\x00b"} and found.reason == "a\ufffdb"


def test_put_audit_inserts_only_new_entries_and_says_how_many(archive: Archive) -> None:
    assert archive.put_audit([entry("1-0"), entry("1-1"), entry("2-0")]) == 3
    assert archive.put_audit([entry("1-0"), entry("1-1"), entry("2-0")]) == 0
    assert archive.put_audit([entry("2-0", event="changed"), entry("3-0"), entry("3-0")]) == 1
    assert archive.put_audit([]) == 0
    assert archive.stats()["audit_entries"] == 4
    assert [item["event"] for item in archive.audit_for_job(entry("1-0").job_id)][2] == "target.settled"


def test_an_audit_entry_id_that_is_not_a_stream_id_is_refused(archive: Archive) -> None:
    for wrong in ("1733500000123", "1-2-3", "-1-0", "a-0", ""):
        with pytest.raises(ValueError, match="stream entry id"):
            archive.put_audit([entry(wrong)])
    assert archive.stats()["audit_entries"] == 0


def test_a_page_or_batch_of_nothing_is_refused_rather_than_looping(archive: Archive) -> None:
    with pytest.raises(ValueError, match="page"):
        list(archive.audit_since(page=0))
    with pytest.raises(ValueError, match="batch"):
        archive.expire(created_before_us=BASE_US, batch=0)
    with pytest.raises(ValueError, match="limit"):
        archive.list_jobs(limit=-1)
    assert archive.list_jobs(limit=0) == []


# -- reading the audit trail ----------------------------------------------------------------------------------


def test_the_audit_trail_reads_in_numeric_stream_order_as_dicts_in_a_fixed_key_order(archive: Archive) -> None:
    raw = '{"status": 204,  "message":"ok", "nested": {"b": 1, "a": 2}}'
    archive.put_audit([entry("10-0"), entry("5-10"), entry("9-0", data=raw), entry("5-2"),
                       entry("7-0", job_id="j-0000000000000002")])
    trail = archive.audit_for_job("j-0000000000000001")
    assert ids(trail) == ["5-2", "5-10", "9-0", "10-0"]
    assert list(trail[2]) == ["id", "job_id", "event", "at", "data"]
    assert trail[2] == {"id": "9-0", "job_id": "j-0000000000000001", "event": "target.settled",
                        "at": "2024-12-06T15:00:00Z", "data": {"status": 204, "message": "ok",
                                                               "nested": {"b": 1, "a": 2}}}
    assert list(trail[2]["data"]["nested"]) == ["b", "a"]
    assert archive.audit_for_job("j-ffffffffffffffff") == []


def test_audit_data_is_kept_as_the_exact_text_it_was(archive: Archive, archive_url: str) -> None:
    raw = '{"b": 1,  "a": "\\u00e9", "c": 1.50}'
    archive.put_audit([entry("1-0", data=raw)])
    assert rows_in(archive_url, select(archived_audit.c.data)) == [(raw,)]


def test_audit_since_reads_every_entry_from_a_time_on_page_by_page_in_order(archive: Archive) -> None:
    archive.put_audit([entry(f"{ms}-{seq}") for ms in (3, 10, 9, 100) for seq in (0, 10, 2)])
    everything = ["3-0", "3-2", "3-10", "9-0", "9-2", "9-10", "10-0", "10-2", "10-10", "100-0", "100-2", "100-10"]
    assert ids(list(archive.audit_since())) == everything
    for page in (1, 2, 3, 5, 12, 13):
        assert ids(list(archive.audit_since(page=page))) == everything
        assert ids(list(archive.audit_since(since_ms=9, page=page))) == everything[3:]
    assert ids(list(archive.audit_since(since_ms=101))) == []
    assert list(next(archive.audit_since())) == ["id", "job_id", "event", "at", "data"]


def test_the_last_audit_id_is_the_greatest_in_stream_order(archive: Archive) -> None:
    assert archive.last_audit_id() is None
    archive.put_audit([entry("9-5"), entry("10-0"), entry("9-10")])
    assert archive.last_audit_id() == "10-0"
    archive.put_audit([entry("10-2"), entry("10-10")])
    assert archive.last_audit_id() == "10-10"


# -- listing --------------------------------------------------------------------------------------------------


def _listed(archive: Archive, **filters: Any) -> list[str]:
    return [summary.job_id for summary in archive.list_jobs(**filters)]


def _some_jobs(archive: Archive) -> list[JobRow]:
    jobs = [job(1), job(2, state="failed"), job(3, source="okta"), job(4, dead=True, state="failed"),
            job(5, active_after=True), job(6, state="failed", source="okta", dead=True, active_after=True),
            job(7, created_us=BASE_US + 5 * 1_000_000)]
    archive.put(jobs[-1:], [], [])
    archive.put(jobs[:-1], [], [])
    return jobs


def test_a_listing_is_newest_first_ties_by_job_id_descending_and_limited(archive: Archive) -> None:
    jobs = _some_jobs(archive)
    assert _listed(archive) == [job(n).job_id for n in (6, 7, 5, 4, 3, 2, 1)]
    assert _listed(archive, limit=3) == [job(n).job_id for n in (6, 7, 5)]
    assert archive.list_jobs(limit=1) == [Summary(job_id=jobs[5].job_id, state="failed", source="okta",
                                                  created_at=jobs[5].created_at, updated_at=jobs[5].updated_at,
                                                  reason="reason 6", created_us=jobs[5].created_us)]


def test_a_listing_filters_by_state_source_dead_and_active_after(archive: Archive) -> None:
    _some_jobs(archive)
    assert _listed(archive, state="failed") == [job(n).job_id for n in (6, 4, 2)]
    assert _listed(archive, source="okta") == [job(n).job_id for n in (6, 3)]
    assert _listed(archive, state="failed", source="panther") == [job(n).job_id for n in (4, 2)]
    assert _listed(archive, state="dead") == [job(n).job_id for n in (6, 4)]
    assert _listed(archive, state="active-after") == [job(n).job_id for n in (6, 5)]
    assert _listed(archive, state="dead", source="panther") == [job(4).job_id]
    assert _listed(archive, state="cancelled") == []


def test_count_jobs_counts_what_the_same_listing_holds(archive: Archive) -> None:
    assert archive.count_jobs() == 0
    _some_jobs(archive)
    assert archive.count_jobs() == 7
    assert archive.count_jobs(state="failed") == 3
    assert archive.count_jobs(state="dead") == 2
    assert archive.count_jobs(state="active-after", source="okta") == 1
    assert archive.count_jobs(source="okta") == 2
    assert archive.count_jobs(state="succeeded", source="nobody") == 0


def test_has_jobs_says_which_are_archived_even_among_thousands(archive: Archive) -> None:
    archive.put([job(n) for n in (1, 700, 1500)], [], [])
    asked = [job(n).job_id for n in range(2000)]
    assert archive.has_jobs(asked) == {job(1).job_id, job(700).job_id, job(1500).job_id}
    assert archive.has_jobs([]) == set()


def test_calls_returns_those_found(archive: Archive) -> None:
    archive.put([], [call("c-1", status=204), call("c-2", status=429)], [])
    assert archive.calls(["c-2", "c-3", "c-2"]) == {"c-2": call("c-2", status=429)}
    assert archive.calls([]) == {}
    assert set(archive.calls([f"c-{n}" for n in range(1200)])) == {"c-1", "c-2"}


# -- retention ------------------------------------------------------------------------------------------------


def test_expire_deletes_old_jobs_their_links_orphaned_calls_and_old_audit_in_batches(
        archive: Archive, archive_url: str) -> None:
    old = [job(n) for n in range(1, 6)]
    kept = [job(n) for n in range(10, 12)]
    links = [(old[0].job_id, "c-old"), (old[1].job_id, "c-old"), (old[2].job_id, "c-shared"),
             (kept[0].job_id, "c-shared"), (kept[1].job_id, "c-new")]
    archive.put(old + kept, [call("c-old"), call("c-shared"), call("c-new"), call("c-unlinked")], links)
    cutoff_us = BASE_US + 10 * 1_000_000
    cutoff_ms = cutoff_us // 1000
    archive.put_audit([entry(f"{cutoff_ms - n}-0") for n in range(1, 6)] + [entry(f"{cutoff_ms}-0"),
                                                                            entry(f"{cutoff_ms + 1}-3")])
    gone = archive.expire(created_before_us=cutoff_us, batch=2)
    assert (gone.jobs, gone.calls, gone.audit_entries) == (5, 1, 5)
    assert archive.has_jobs([row.job_id for row in old + kept]) == {row.job_id for row in kept}
    assert set(archive.calls(["c-old", "c-shared", "c-new", "c-unlinked"])) == {"c-shared", "c-new", "c-unlinked"}
    assert sorted(rows_in(archive_url, select(archived_job_calls.c.job_id, archived_job_calls.c.call_id))) == \
        sorted((job_id, call_id) for job_id, call_id in links[3:])
    assert ids(list(archive.audit_since())) == [f"{cutoff_ms}-0", f"{cutoff_ms + 1}-3"]
    assert archive.expire(created_before_us=cutoff_us, batch=2) == Expired(jobs=0, calls=0, audit_entries=0)


def test_expire_with_nothing_old_deletes_nothing(archive: Archive, archive_url: str) -> None:
    archive.put([job(1)], [call("c-1")], [(job(1).job_id, "c-1")])
    archive.put_audit([entry("1-0")])
    gone = archive.expire(created_before_us=0)
    assert (gone.jobs, gone.calls, gone.audit_entries) == (0, 0, 0)
    assert archive.stats() == {"jobs": 1, "calls": 1, "audit_entries": 1}
    assert rows_in(archive_url, select(func.count()).select_from(archived_job_calls)) == [(1,)]


# -- where it is, and failing to reach it ---------------------------------------------------------------------


def test_where_hides_a_password_and_names_the_driver() -> None:
    archive = Archive("postgresql://boxcut:s3cret@db/boxcut")
    assert archive.where == "postgresql+psycopg://boxcut:***@db/boxcut"
    assert not archive.embedded
    assert Archive("postgres://boxcut:s3cret@db:5433/boxcut").where == "postgresql+psycopg://boxcut:***@db:5433/boxcut"
    assert Archive("postgresql://db/boxcut").where == "postgresql+psycopg://db/boxcut"


def test_an_sqlite_archive_is_embedded_in_wal_mode_its_directory_made(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "archive.db"
    url = f"sqlite:///{path}"
    archive = Archive(url)
    assert archive.embedded and archive.where == url
    migrate.upgrade(url)
    assert archive.stats() == {"jobs": 0, "calls": 0, "audit_entries": 0}
    archive.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_unreachable_postgresql_is_an_archive_error_within_seconds_without_its_password() -> None:
    archive = Archive("postgresql://boxcut:s3cret-pw@127.0.0.1:1/boxcut")
    for attempt in (archive.stats, archive.check_schema, lambda: archive.put([job(1)], [], []),
                    lambda: migrate.upgrade("postgresql://boxcut:s3cret-pw@127.0.0.1:1/boxcut")):
        started = time.monotonic()
        with pytest.raises(ArchiveError) as raised:
            attempt()
        assert time.monotonic() - started < 6
        assert type(raised.value) is ArchiveError
        assert "s3cret-pw" not in str(raised.value)
        assert "postgresql+psycopg://boxcut:***@127.0.0.1:1/boxcut" in str(raised.value)
    archive.close()


def test_a_url_no_driver_serves_is_an_archive_error_without_its_password() -> None:
    with pytest.raises(ArchiveError) as raised:
        Archive("nosuchdb://boxcut:s3cret-pw@db/boxcut")
    assert "s3cret-pw" not in str(raised.value) and "nosuchdb://boxcut:***@db/boxcut" in str(raised.value)
