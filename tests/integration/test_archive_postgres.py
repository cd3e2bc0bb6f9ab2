"""The archive's tests of tests/unit/test_archive.py on a real PostgreSQL (psycopg 3), in a database of this module's
own; and what only a server shows: writers racing on the same rows, and a backlog retention works through."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from sqlalchemy import text

from tests.unit.test_archive import (
    BASE_US,
    call,
    entry,
    job,
    test_a_document_reads_back_exactly_as_it_was_put,
    test_a_fresh_database_upgrades_from_nothing_to_head_and_a_second_upgrade_changes_nothing,
    test_a_listing_filters_by_state_source_dead_and_active_after,
    test_a_listing_is_newest_first_ties_by_job_id_descending_and_limited,
    test_a_reason_with_a_nul_is_archived_its_document_keeping_it_exactly,
    test_an_audit_entry_id_that_is_not_a_stream_id_is_refused,
    test_audit_data_is_kept_as_the_exact_text_it_was,
    test_audit_since_reads_every_entry_from_a_time_on_page_by_page_in_order,
    test_calls_returns_those_found,
    test_check_schema_refuses_a_database_below_head_and_says_to_migrate,
    test_check_schema_says_so_when_the_database_is_newer_than_this_code,
    test_count_jobs_counts_what_the_same_listing_holds,
    test_expire_deletes_old_jobs_their_links_orphaned_calls_and_old_audit_in_batches,
    test_expire_with_nothing_old_deletes_nothing,
    test_has_jobs_says_which_are_archived_even_among_thousands,
    test_put_audit_inserts_only_new_entries_and_says_how_many,
    test_put_is_one_transaction_a_refused_link_leaves_nothing_written,
    test_put_twice_keeps_one_row_each_and_the_second_overwrites,
    test_put_writes_a_key_repeated_in_one_call_once_the_last_winning,
    test_the_audit_trail_reads_in_numeric_stream_order_as_dicts_in_a_fixed_key_order,
    test_the_last_audit_id_is_the_greatest_in_stream_order,
    test_the_migrations_build_exactly_the_schema_in_schema_py,
    test_the_schema_comparison_sees_a_column_the_migrations_lack,
)
from worker.archive import Archive, AuditRow, migrate
from worker.archive.schema import engine_for, metadata

pytestmark = pytest.mark.integration

__all__ = [
    "test_a_document_reads_back_exactly_as_it_was_put",
    "test_a_fresh_database_upgrades_from_nothing_to_head_and_a_second_upgrade_changes_nothing",
    "test_a_listing_filters_by_state_source_dead_and_active_after",
    "test_a_listing_is_newest_first_ties_by_job_id_descending_and_limited",
    "test_a_reason_with_a_nul_is_archived_its_document_keeping_it_exactly",
    "test_an_audit_entry_id_that_is_not_a_stream_id_is_refused",
    "test_audit_data_is_kept_as_the_exact_text_it_was",
    "test_audit_since_reads_every_entry_from_a_time_on_page_by_page_in_order",
    "test_calls_returns_those_found",
    "test_check_schema_refuses_a_database_below_head_and_says_to_migrate",
    "test_check_schema_says_so_when_the_database_is_newer_than_this_code",
    "test_count_jobs_counts_what_the_same_listing_holds",
    "test_expire_deletes_old_jobs_their_links_orphaned_calls_and_old_audit_in_batches",
    "test_expire_with_nothing_old_deletes_nothing",
    "test_has_jobs_says_which_are_archived_even_among_thousands",
    "test_put_audit_inserts_only_new_entries_and_says_how_many",
    "test_put_is_one_transaction_a_refused_link_leaves_nothing_written",
    "test_put_twice_keeps_one_row_each_and_the_second_overwrites",
    "test_put_writes_a_key_repeated_in_one_call_once_the_last_winning",
    "test_the_audit_trail_reads_in_numeric_stream_order_as_dicts_in_a_fixed_key_order",
    "test_the_last_audit_id_is_the_greatest_in_stream_order",
    "test_the_migrations_build_exactly_the_schema_in_schema_py",
    "test_the_schema_comparison_sees_a_column_the_migrations_lack",
]


@pytest.fixture
def empty_url(postgres_databases: Callable[[], str]) -> str:
    """A fresh database no migration has touched."""
    return postgres_databases()


@pytest.fixture(scope="module")
def migrated_url(postgres_url: str) -> str:
    """This module's database, at head."""
    migrate.upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def archive_url(migrated_url: str) -> Iterator[str]:
    """This module's database at head, emptied after each test."""
    yield migrated_url
    engine = engine_for(migrated_url)
    try:
        with engine.begin() as connection:
            names = ", ".join(table.name for table in metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names}"))
    finally:
        engine.dispose()


@pytest.fixture
def archive(archive_url: str) -> Iterator[Archive]:
    opened = Archive(archive_url)
    yield opened
    opened.close()


def _race(*work: Callable[[], object]) -> list[BaseException]:
    """Run each callable in a thread of its own, all released at once; the exceptions they raised."""
    start = threading.Barrier(len(work))
    failures: list[BaseException] = []

    def run(task: Callable[[], object]) -> None:
        start.wait()
        try:
            task()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(task,)) for task in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return failures


def test_two_writers_putting_overlapping_rows_at_once_both_succeed(archive_url: str) -> None:
    first, second = Archive(archive_url), Archive(archive_url)
    try:
        for round_ in range(10):
            ns = range(round_ * 100, round_ * 100 + 300)
            jobs = [job(n, doc={"round": round_, "n": n}) for n in ns]
            calls = [call(f"c-{n}") for n in ns]
            links = [(row.job_id, f"c-{n}") for row, n in zip(jobs, ns, strict=True)]
            failures = _race(partial(first.put, jobs[:200], calls[:200], links[:200]),
                             partial(second.put, jobs[100:][::-1], calls[100:][::-1], links[100:][::-1]))
            assert failures == []
        assert first.stats() == {"jobs": 1200, "calls": 1200, "audit_entries": 0}
        found = first.job(job(1150).job_id)
        assert found is not None and found.doc == {"round": 9, "n": 1150}
    finally:
        first.close()
        second.close()


def _count_new(archive: Archive, entries: list[AuditRow], counted: list[int]) -> None:
    counted.append(archive.put_audit(entries))


def test_two_writers_putting_overlapping_audit_entries_count_each_new_entry_once(archive_url: str) -> None:
    first, second = Archive(archive_url), Archive(archive_url)
    counted: list[int] = []
    try:
        for round_ in range(10):
            batch = [entry(f"{BASE_US // 1000 + round_}-{seq}") for seq in range(300)]
            failures = _race(partial(_count_new, first, batch[:200], counted),
                             partial(_count_new, second, batch[100:][::-1], counted))
            assert failures == []
        assert sum(counted) == 3000
        assert first.stats()["audit_entries"] == 3000
    finally:
        first.close()
        second.close()


def test_a_backlog_expires_batch_by_batch_a_call_linked_across_two_batches_going_with_the_second(
        archive: Archive) -> None:
    jobs = [job(n) for n in range(2500)]
    archive.put(jobs, [call(f"c-{n}") for n in range(2500)],
                [(row.job_id, f"c-{n // 2}") for n, row in enumerate(jobs)])
    archive.put_audit([entry(f"{BASE_US // 1000 + n * 1000}-0") for n in range(2500)])
    gone = archive.expire(created_before_us=BASE_US + 2000 * 1_000_000, batch=299)
    assert (gone.jobs, gone.calls, gone.audit_entries) == (2000, 1000, 2000)
    assert archive.stats() == {"jobs": 500, "calls": 1500, "audit_entries": 500}
    assert set(archive.calls(["c-149", "c-999", "c-1000", "c-2499"])) == {"c-1000", "c-2499"}
