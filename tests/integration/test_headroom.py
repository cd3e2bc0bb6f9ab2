"""Redis's headroom (worker/jobs/headroom.py) on a real redis-server of the test's own (fakeredis has neither
INFO nor MEMORY USAGE): what a settled job costs, jobs a day, whether the hot window fits; and how `boxcut
doctor` and the worker's /metrics say it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config import Settings, load_settings
from tests.drills.private_redis import PrivateRedis
from tests.unit.fake_box import FakeBox, directory, make_ctx
from worker.archive.migrate import upgrade
from worker.archive.store import Archive
from worker.cli import doctor, worker_metrics
from worker.jobs.archiving import Archiver
from worker.jobs.headroom import FALLBACK_BYTES_PER_JOB, Headroom, measure, waiting_to_settle
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.send_queue import SendQueue
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job, submit
from worker.run.runner import run_job

pytestmark = pytest.mark.integration

PREFIX = "boxcut:"
DAY_US = 86_400_000_000
NOW = 1_750_000_000.0  # a fixed moment for the tests that seed the indexes with scores of their own
NOW_US = int(NOW * 1_000_000)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (no AOF), with no maxmemory until a test sets one."""
    private = PrivateRedis(tmp_path / "redis", aof=False)
    private.start()
    yield private
    private.shutdown()


@pytest.fixture
def store(server: PrivateRedis) -> JobStore:
    return JobStore(server.client(), key_prefix=PREFIX)


def _settings(server: PrivateRedis, tmp_path: Path, **env: str) -> Settings:
    return load_settings({"BOXCUT_REDIS_URL": server.url, "BOXCUT_KEY_PREFIX": PREFIX,
                          "BOXCUT_ARCHIVE_URL": f"sqlite:///{tmp_path}/archive.sqlite3", **env}, env_file=None)


def _settled(store: JobStore, tmp_path: Path, n: int, *, idempotent: bool = True) -> list[str]:
    """`n` one-user alerts (each with an idempotency key unless not `idempotent`), run against a fake Box and
    settled into an SQLite archive: what a quiet day leaves in Redis."""
    box = FakeBox(users=directory(n))
    keys = IdempotencyKeys(store.redis, key_prefix=PREFIX, ttl_seconds=86400)
    job_ids = []
    for i, user in enumerate(box.users):
        request = JobRequest(targets=[{"type": "user", "login": user.login}], source="panther",
                             reason="Impossible travel", requested_by="intake:panther")
        job_ids.append(submit(store=store, enqueue=lambda _job_id: None, job=build_job(request),
                              keys=keys if idempotent else None, key=f"event-{i}" if idempotent else None).job_id)
    ctx = make_ctx(store, box)
    for job_id in job_ids:
        run_job(ctx=ctx, job_id=job_id)
    url = f"sqlite:///{tmp_path}/archive.sqlite3"
    upgrade(url)
    moved = Archiver(store, SendQueue(store.redis, key_prefix=PREFIX), Archive(url), hot_seconds=7 * 86400,
                     settle_seconds=0, late_events_seconds=0).run()
    assert moved.settled == n
    return job_ids


def _seed(client: redis.Redis, key: str, ages_hours: list[float], *, tag: str = "j") -> None:
    """Index entries (no records behind them: the rate reads only the scores) created `ages_hours` before NOW."""
    client.zadd(key, {f"{tag}-{i:06d}": NOW_US - int(age * 3600 * 1_000_000) for i, age in enumerate(ages_hours)})


def _lines(check: object, settings: Settings, **kwargs: object) -> list[str]:
    lines: list[str] = []
    check(settings, lines.append, **kwargs)  # type: ignore[operator]
    return lines


# -- measure ---------------------------------------------------------------------------------------------------


def test_an_empty_redis_has_no_rate_no_days_left_and_the_assumed_size_of_a_job(store: JobStore) -> None:
    room = measure(store, hot_days=7)
    assert (room.jobs_working, room.jobs_hot, room.jobs_per_day, room.days_left) == (0, 0, 0.0, None)
    assert room.bytes_per_job == FALLBACK_BYTES_PER_JOB and room.sampled == 0 and room.hot_window_bytes == 0
    assert room.max_bytes == 0 and room.fits and room.used_bytes > 0 and room.policy == "noeviction"
    assert "assumed: none settled yet" in room.describe() and "(no maxmemory)" in room.describe()


def test_a_settled_job_costs_its_packed_copy_its_index_share_and_its_share_of_an_idempotency_key(
        store: JobStore, tmp_path: Path) -> None:
    job_ids = _settled(store, tmp_path, 12)
    client = store.redis
    copies = [client.memory_usage(f"{PREFIX}settled:{j}") for j in job_ids]
    idems = [client.memory_usage(k) for k in client.scan_iter(match=f"{PREFIX}idem:*")]
    assert len(idems) == 12 and all(copies)
    index_share = client.memory_usage(f"{PREFIX}jobs:settled") / 12
    expected = sum(copies) / 12 + index_share + sum(idems) / 12 * 86400 / (7 * 86400)

    room = measure(store, hot_days=7, idempotency_ttl_seconds=86400)

    assert room.sampled == 12 and room.jobs_hot == 12 and room.jobs_working == 0
    assert room.bytes_per_job == pytest.approx(expected)
    assert 300 < room.bytes_per_job < FALLBACK_BYTES_PER_JOB  # the assumed size errs high
    # Made a moment ago: the rate is taken over the shortest span, an hour (12 jobs an hour: 288 a day).
    assert room.rate_basis_hours == pytest.approx(1.0) and room.jobs_per_day == pytest.approx(288)
    assert room.hot_window_bytes == pytest.approx(room.bytes_per_job * 288 * 7)
    # 12 of 2,016 hot so far: nearly the whole window is still to come.
    assert room.hot_window_growth == pytest.approx(room.bytes_per_job * (288 * 7 - 12))


def test_without_idempotency_keys_a_settled_job_costs_less_and_a_smaller_sample_still_measures(
        store: JobStore, tmp_path: Path) -> None:
    _settled(store, tmp_path, 8, idempotent=False)
    whole, sampled = measure(store, hot_days=7), measure(store, hot_days=7, sample=3)
    client = store.redis
    assert not list(client.scan_iter(match=f"{PREFIX}idem:*")) and sampled.sampled == 3 and whole.sampled == 8
    newest = [client.memory_usage(f"{PREFIX}settled:{j.decode()}")
              for j in client.zrange(f"{PREFIX}jobs:settled", -3, -1)]
    assert sampled.bytes_per_job == pytest.approx(sum(newest) / 3 + client.memory_usage(f"{PREFIX}jobs:settled") / 8)


def test_the_rate_counts_the_last_day_of_both_indexes(store: JobStore) -> None:
    client = store.redis
    _seed(client, f"{PREFIX}jobs", [0.5, 2, 30, 47], tag="w")  # two in the last day, two before
    _seed(client, f"{PREFIX}jobs:settled", [1, 3, 5, 23.9, 25, 100], tag="s")  # four in the last day
    room = measure(store, hot_days=7, now=NOW)
    assert room.rate_basis_hours == 24 and room.jobs_per_day == 6
    assert (room.jobs_working, room.jobs_hot) == (4, 6)
    assert "6 jobs a day (last 24 h)" in room.describe()


def test_a_redis_younger_than_a_day_has_its_rate_scaled_up_from_the_span_it_holds(store: JobStore) -> None:
    _seed(store.redis, f"{PREFIX}jobs:settled", [i * 0.1 for i in range(60)])  # 60 jobs in the last 6 hours
    room = measure(store, hot_days=7, now=NOW)
    assert room.rate_basis_hours == pytest.approx(5.9) and room.jobs_per_day == pytest.approx(60 * 24 / 5.9)
    assert "scaled up from the last 5.9 h" in room.describe()


def test_another_prefix_is_not_counted(store: JobStore, server: PrivateRedis, tmp_path: Path) -> None:
    other = JobStore(server.client(), key_prefix="other:")
    _settled(other, tmp_path, 3)
    _seed(server.client(), "other:jobs", [1, 2])
    room = measure(store, hot_days=7)
    assert (room.jobs_working, room.jobs_hot, room.sampled, room.jobs_per_day) == (0, 0, 0, 0.0)


def test_the_hot_window_fits_and_days_left_follow_from_maxmemory(store: JobStore, server: PrivateRedis) -> None:
    _seed(store.redis, f"{PREFIX}jobs", [*(i * 24 / 1000 for i in range(1000)), 30])  # 1,000 jobs a day
    used = int(server.client().info("memory")["used_memory"])
    server.client().config_set("maxmemory", used + 100 * 1024 * 1024)
    room = measure(store, hot_days=7, now=NOW)
    need = FALLBACK_BYTES_PER_JOB * 1000 * 7  # nothing settled: the assumed size
    assert room.hot_window_bytes == pytest.approx(need) and room.fits
    assert room.days_left == pytest.approx((room.max_bytes - room.used_bytes) / (FALLBACK_BYTES_PER_JOB * 1000))

    server.client().config_set("maxmemory", used + need)  # room for the window, not for the margin
    tight = measure(store, hot_days=7, now=NOW)
    assert not tight.fits and tight.used_bytes + tight.hot_window_growth > 0.9 * tight.max_bytes


def test_the_jobs_waiting_to_settle_are_the_finished_ones_still_working(store: JobStore, tmp_path: Path) -> None:
    _settled(store, tmp_path, 2)
    client = store.redis
    client.zadd(f"{PREFIX}jobs:state:succeeded", {"j-a": 1, "j-b": 2})
    client.zadd(f"{PREFIX}jobs:state:dry_run", {"j-c": 3})
    client.zadd(f"{PREFIX}jobs:state:recorded", {"j-d": 4})
    client.zadd(f"{PREFIX}jobs:state:terminating", {"j-e": 5})  # not finished
    assert waiting_to_settle(store) == 4


# -- boxcut doctor ---------------------------------------------------------------------------------------------


def test_doctor_prints_the_headroom_of_a_redis_with_settled_jobs(store: JobStore, server: PrivateRedis,
                                                                 tmp_path: Path) -> None:
    _settled(store, tmp_path, 10)
    server.client().config_set("maxmemory", 1 << 30)
    lines = _lines(doctor._check_headroom, _settings(server, tmp_path))
    assert len(lines) == 1 and lines[0].startswith("ok   redis memory: ") and "of 1.0 GiB maxmemory" in lines[0]
    assert "10 hot" in lines[0] and "mean of 10 settled" in lines[0] and "240 jobs a day" in lines[0]
    assert "the 7-day hot window needs ~" in lines[0] and "days of jobs fit in what is free" in lines[0]


def test_doctor_warns_when_the_hot_window_will_not_fit(store: JobStore, server: PrivateRedis,
                                                       tmp_path: Path) -> None:
    _seed(store.redis, f"{PREFIX}jobs", [*(i * 24 / 5000 for i in range(5000)), 30])  # 5,000 a day
    used = int(server.client().info("memory")["used_memory"])
    server.client().config_set("maxmemory", used + 8 * 1024 * 1024)  # 8 MiB free; a 7-day window needs ~43
    settings = _settings(server, tmp_path, BOXCUT_HOT_DAYS="7")
    lines = _lines(doctor._check_headroom, settings, now=NOW)
    assert lines[0].startswith("ok   redis memory: ")
    assert lines[1].startswith("warn redis memory: the 7-day hot window will not fit: at 5,000 jobs a day it grows "
                               "by ~43.4 MiB more, past 90% of maxmemory")
    assert "Redis will refuse writes and containment stops" in lines[1] and "BOXCUT_HOT_DAYS" in lines[1]
    assert lines[2].startswith("warn redis memory: the 8.0 MiB free holds only 1.3 days of jobs at 5,000 a day "
                               "(under 14)") and len(lines) == 3
    # A shorter hot window fits; the free memory still holds under 14 days of jobs.
    shorter = _lines(doctor._check_headroom, _settings(server, tmp_path, BOXCUT_HOT_DAYS="0.5"), now=NOW)
    assert [line.split(":")[0] for line in shorter] == ["ok   redis memory", "warn redis memory"]
    assert "holds only " in shorter[1] and "Redis will refuse writes and containment stops" in shorter[1]


def test_doctor_warns_of_a_redis_without_maxmemory(server: PrivateRedis, tmp_path: Path) -> None:
    lines = _lines(doctor._check_headroom, _settings(server, tmp_path))
    assert lines[1].startswith("warn redis memory: no maxmemory: Redis grows until the host runs out of memory")
    assert len(lines) == 2


def test_doctor_names_a_redis_that_cannot_be_measured(tmp_path: Path) -> None:
    gone = load_settings({"BOXCUT_REDIS_URL": "redis://127.0.0.1:1/0"}, env_file=None)
    lines = _lines(doctor._check_headroom, gone)
    assert len(lines) == 1 and lines[0].startswith("warn redis memory: cannot measure: ")


# -- the worker's /metrics -------------------------------------------------------------------------------------


def _gauges(settings: Settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    state = worker_metrics._SharedState(settings)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in state._headroom_gauges() for s in family.samples}


def test_the_metrics_give_the_headroom_and_the_jobs_in_redis(store: JobStore, server: PrivateRedis,
                                                             tmp_path: Path) -> None:
    _settled(store, tmp_path, 6)
    store.redis.zadd(f"{PREFIX}jobs:state:failed", {"j-waiting": 1})
    server.client().config_set("maxmemory", 512 * 1024 * 1024)
    gauges = _gauges(_settings(server, tmp_path))
    room: Headroom = measure(store, hot_days=7, sample=worker_metrics.HEADROOM_SAMPLE)
    assert gauges[("boxcut_redis_max_bytes", ())] == 512 * 1024 * 1024
    assert 0 < gauges[("boxcut_redis_used_bytes", ())] < 512 * 1024 * 1024
    assert gauges[("boxcut_job_redis_bytes", ())] == pytest.approx(room.bytes_per_job)
    assert gauges[("boxcut_jobs_per_day", ())] == pytest.approx(6 * 24)
    assert gauges[("boxcut_hot_window_bytes", ())] == pytest.approx(room.bytes_per_job * 6 * 24 * 7)
    assert 0 < gauges[("boxcut_redis_days_left", ())] < math.inf
    assert gauges[("boxcut_jobs_in_redis", (("form", "hot"),))] == 6
    assert gauges[("boxcut_jobs_in_redis", (("form", "working"),))] == 0
    assert gauges[("boxcut_jobs_waiting_to_settle", ())] == 1


def test_the_metrics_say_infinite_days_left_without_maxmemory(server: PrivateRedis, tmp_path: Path) -> None:
    gauges = _gauges(_settings(server, tmp_path))
    assert gauges[("boxcut_redis_days_left", ())] == math.inf and gauges[("boxcut_redis_max_bytes", ())] == 0
    assert gauges[("boxcut_job_redis_bytes", ())] == FALLBACK_BYTES_PER_JOB
    assert gauges[("boxcut_jobs_per_day", ())] == 0 and gauges[("boxcut_jobs_waiting_to_settle", ())] == 0
