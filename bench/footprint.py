"""Benchmark: what a finished one-user alert costs Redis once settled and before, how fast the archive pass moves
finished jobs, and how fast a job reads back from its packed copy and from the archive.

    .venv/bin/python bench/footprint.py [--alerts 1000] [--rate 50] [--archive sqlite|postgres|both] [--reads 200]
                                        [--repeat 3] [--settle-timeout 300] [--keep]

Every repeat starts afresh: a private `redis-server` on a free port (`--save "" --appendonly no`; never the shared
6379) for each stack, boxsim with generated users, a real prefork `boxcut worker` (beat inside) and a real
`boxcut intake`, a key prefix of its own, a temp dir (logs, SQLite archives) and, for PostgreSQL, a fresh
database `bench_footprint_<random>` on BOXCUT_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/
postgres), dropped at the end. All of it is stopped, removed or dropped afterwards, also on SIGTERM.

1. Settled form. A stack whose archive pass (`boxcut.archive`, beat) settles a finished job once it is quiet for
   1 s, into an SQLite archive in the temp dir. Warm-up alerts go first and settle, and the directory copy
   (`directory:*` keys, which grow with the Box directory, not with jobs) is built, before the baseline; then
   --alerts Panther alerts, one user each, HMAC-signed, at --rate a second, in two halves: after each it waits
   until ZCARD `{prefix}jobs:settled` counts every job so far (warm-ups included), and two archive passes more,
   and takes a snapshot. Per job: the change of INFO memory `used_memory` and of DBSIZE, without the change of the
   `directory:*` keys (their MEMORY USAGE and count), divided by --alerts; that change split by MEMORY STATS (the
   keys' data; key tables; the client connections' buffers and Lua's cache, which do not grow with jobs); the
   change per key pattern (MEMORY USAGE of every key, before and after); and the same over the second half alone,
   which leaves out the first jobs' one-time costs (connections opened under load, and what no key accounts for).
2. Working form (before settling). A second stack, its own Redis, with BOXCUT_SETTLE_SECONDS=3600 so nothing
   settles: --alerts alerts per archive measured, the same warm-up and baseline, measured once every job is final
   and two archive passes later (the audit stream shipped and trimmed as the live system has it). Measuring the
   first stack between "final" and its next pass (1 s) would be a race; this is the honest way.
3. Archive moves. The second stack's worker and intake stopped, its finished jobs are settled in-process by
   `worker.jobs.archiving.Archiver` (settle_seconds=0, the default hot window, so a packed copy stays) into a
   fresh archive per backend (migrated by `upgrade(url)` first), once `JobStore.undefer_settle` has forgotten the
   worker's notes of when to look at each job again (made under its 3600 s); `Archiver.settle_jobs` is timed until
   --alerts jobs are settled: jobs settled a second.
4. Reads. Half of each batch (the older half) is evicted by `Archiver.evict` with hot_seconds=0, so those jobs
   are read from the archive only; then --reads `GET /v1/jobs/{id}` each, for hot and for archived jobs, through a
   real intake whose BOXCUT_ARCHIVE_URL is that archive (operator token; the `Boxcut-Stored` header is checked on
   every answer, and only answers saying `hot`, resp. `archive`, are timed), and the same through
   `JobHistory.find` in-process. Two untimed reads of each kind go first.

Prints each repeat's figures, then min..max over --repeat for each, and the targets: Redis bytes per settled
one-user alert <= 1,500 and <= 3 keys; 10,000 alerts a day over a 30-day hot window <= 1 GB (bytes per job x
300,000); reading an archived job (GET /v1/jobs/{id}) p50 <= 20 ms.

Settings changed from the defaults (printed first): the brake off (as every bench), BOXCUT_SETTLE_SECONDS=1,
BOXCUT_ARCHIVE_EVERY_SECONDS=1, BOXCUT_WATCH_MINUTES=0 (a watch would keep a job unsettled 30 min + 10 min);
BOXCUT_SETTLE_SECONDS=3600 for the working-form stack only; BOXCUT_ARCHIVE_URL always the bench's own archive.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests
from benchkit import (
    Sent,
    box_env,
    changed_settings,
    exit_on_sigterm,
    free_port,
    paced_alerts,
    percentile,
    post_alerts,
    spread,
    start_intake,
    start_worker,
    stop,
)
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from boxsim import BoxSim, SimConfig
from config import defaults
from worker.archive.migrate import upgrade
from worker.archive.store import Archive
from worker.jobs.archiving import SETTLE_MOST, Archiver
from worker.jobs.history import ARCHIVE, HOT, JobHistory
from worker.jobs.model import FINAL_STATES
from worker.jobs.send_queue import SendQueue
from worker.jobs.store import JobStore

SECRET = "bench-footprint-hmac-secret"
WARMUP = 5
CLIENTS = 4
ARCHIVE_EVERY_SECONDS = 1.0
# The settled stack's settings; the working-form stack's settle time instead.
SETTLED_SETTINGS = {"BOXCUT_SETTLE_SECONDS": "1", "BOXCUT_ARCHIVE_EVERY_SECONDS": f"{ARCHIVE_EVERY_SECONDS:g}",
                    "BOXCUT_WATCH_MINUTES": "0"}
WORKING_SETTLE_SECONDS = "3600"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STORED_HEADER = "Boxcut-Stored"

# The targets.
TARGET_BYTES = 1500
TARGET_KEYS = 3
ALERTS_A_DAY = 10_000
HOT_WINDOW_DAYS = 30
HOT_WINDOW_BUDGET = 10**9  # 1 GB
TARGET_ARCHIVED_P50_MS = 20.0

_JOB_ID = re.compile(r"j-[0-9a-f]{16}")
_CALL_ID = re.compile(r"c-[0-9a-f]{16}")
_HEX = re.compile(r"[0-9a-f]{12,}")
DIRECTORY = "{P}directory:"


class Stalled(Exception):
    """The stack did not get where the benchmark waits for it to."""


# -- Redis: a private server, and what it holds --------------------------------------------------------------


@contextlib.contextmanager
def private_redis(work: Path) -> Iterator[str]:
    """A `redis-server` of the benchmark's own on a free loopback port, no persistence; its URL. Stopped after."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("footprint: no redis-server installed (run scripts/ensure-redis-server)")
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    with (work / "redis.log").open("wb") as out:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(work)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"footprint: redis-server did not answer on {port}; "
                                     f"see {work / 'redis.log'}") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        stop(proc, timeout=10)


@dataclass
class Snapshot:
    """What a Redis holds at one moment: used_memory, DBSIZE, and MEMORY USAGE and key count per key pattern."""

    used_memory: int
    keys: int
    pattern_bytes: Counter[str]
    pattern_keys: Counter[str]
    clients: int  # MEMORY STATS clients.normal + clients.slaves: the connections' buffers
    connections: int  # INFO clients connected_clients
    scripts: int  # MEMORY STATS lua.caches + functions.caches
    tables: int  # MEMORY STATS db.*: the main and expires hash tables
    overhead: int  # MEMORY STATS overhead.total: what is not the keys' data


def snapshot(client: redis.Redis, prefix: str) -> Snapshot:
    """INFO memory, MEMORY STATS and DBSIZE first (the scan's replies would count in used_memory), then every
    key's MEMORY USAGE."""
    used, stats, keys = int(client.info("memory")["used_memory"]), client.memory_stats(), int(client.dbsize())
    connections = int(client.info("clients")["connected_clients"])
    names = list(client.scan_iter(count=1000))
    sizes: list[int | None] = []
    for start in range(0, len(names), 1000):
        pipe = client.pipeline(transaction=False)
        for name in names[start:start + 1000]:
            pipe.memory_usage(name, samples=0)
        sizes.extend(pipe.execute())
    pattern_bytes: Counter[str] = Counter()
    pattern_keys: Counter[str] = Counter()
    for name, size in zip(names, sizes, strict=True):
        if size is None:  # gone between SCAN and MEMORY USAGE
            continue
        kind = key_pattern(name, prefix)
        pattern_bytes[kind] += int(size)
        pattern_keys[kind] += 1
    tables = sum(int(v) for db, table in stats.items() if str(db).startswith("db.") and isinstance(table, dict)
                 for name, v in table.items() if str(name).startswith("overhead.hashtable."))
    return Snapshot(used, keys, pattern_bytes, pattern_keys,
                    clients=int(stats.get("clients.normal", 0)) + int(stats.get("clients.slaves", 0)),
                    connections=connections, tables=tables, overhead=int(stats.get("overhead.total", 0)),
                    scripts=int(stats.get("lua.caches", 0)) + int(stats.get("functions.caches", 0)))


def key_pattern(name: bytes, prefix: str) -> str:
    """A key with its prefix, job ids, call ids and other long hex ids replaced by placeholders."""
    key = name.decode(errors="replace")
    if key.startswith(prefix):
        key = "{P}" + key[len(prefix):]
    return _HEX.sub("{id}", _CALL_ID.sub("{call}", _JOB_ID.sub("{job}", key)))


@dataclass
class Footprint:
    """Per job: the change of used_memory and of DBSIZE, the directory's change taken out."""

    jobs: int
    bytes_per_job: float
    keys_per_job: float
    usage_per_job: float  # the sum of MEMORY USAGE's changes, directory aside
    directory_bytes: int
    directory_keys: int
    used_change: int
    clients_change: int
    connections: tuple[int, int]
    scripts_change: int
    tables_change: int
    overhead_change: int
    usage_change: int  # the sum of every key's MEMORY USAGE change, directory included
    idem_per_job: float  # MEMORY USAGE of the idempotency keys, which expire after a day
    rows: list[tuple[str, float, float]] = field(default_factory=list)  # pattern, bytes/job, keys/job

    @property
    def scaling_per_job(self) -> float:
        """Bytes per job without the connections' buffers and Lua's cache, which do not grow with jobs."""
        return self.bytes_per_job - (self.clients_change + self.scripts_change) / self.jobs


def footprint(before: Snapshot, after: Snapshot, jobs: int) -> Footprint:
    patterns = set(before.pattern_bytes) | set(after.pattern_bytes)
    rows = [(p, (after.pattern_bytes[p] - before.pattern_bytes[p]) / jobs,
             (after.pattern_keys[p] - before.pattern_keys[p]) / jobs) for p in patterns]
    directory = [r for r in rows if r[0].startswith(DIRECTORY)]
    dir_bytes = round(sum(r[1] for r in directory) * jobs)
    dir_keys = round(sum(r[2] for r in directory) * jobs)
    usage = sum(r[1] for r in rows if not r[0].startswith(DIRECTORY))
    rows = sorted((r for r in rows if r[1] or r[2]), key=lambda r: (-abs(r[1]), r[0]))
    used_change = after.used_memory - before.used_memory
    return Footprint(jobs=jobs, bytes_per_job=(used_change - dir_bytes) / jobs,
                     keys_per_job=(after.keys - before.keys - dir_keys) / jobs, usage_per_job=usage,
                     directory_bytes=dir_bytes, directory_keys=dir_keys, used_change=used_change,
                     clients_change=after.clients - before.clients,
                     connections=(before.connections, after.connections),
                     scripts_change=after.scripts - before.scripts, tables_change=after.tables - before.tables,
                     overhead_change=after.overhead - before.overhead,
                     usage_change=sum(after.pattern_bytes.values()) - sum(before.pattern_bytes.values()),
                     idem_per_job=sum(r[1] for r in rows if r[0].startswith("{P}idem:")), rows=rows)


@dataclass
class Measured:
    """Per job over every measured alert, and over the second half alone (the first jobs' one-time costs out)."""

    whole: Footprint
    second_half: Footprint
    sent: list[Sent]


def print_measured(label: str, measured: Measured) -> None:
    print_footprint(label, measured.whole)
    half = measured.second_half
    print(f"    the second half alone ({half.jobs} jobs, from a snapshot after the first half): "
          f"{half.bytes_per_job:,.0f} B/job, {half.keys_per_job:.2f} keys/job, MEMORY USAGE {half.usage_per_job:,.0f} "
          f"B/job; connections' buffers and Lua cache aside {half.scaling_per_job:,.0f} B/job "
          f"(what one more job costs, without the first jobs' one-time costs)", flush=True)


def print_footprint(label: str, fp: Footprint) -> None:
    print(f"  {label}: {fp.bytes_per_job:,.0f} B/job (INFO used_memory change / {fp.jobs}), "
          f"{fp.keys_per_job:.2f} keys/job (DBSIZE change / {fp.jobs}); sum of MEMORY USAGE changes "
          f"{fp.usage_per_job:,.0f} B/job")
    print(f"    directory:* keys not counted (they grow with the Box directory, not with jobs): "
          f"{fp.directory_bytes:+,} B, {fp.directory_keys:+d} keys over the run")
    overhead_rest = fp.overhead_change - fp.tables_change - fp.clients_change - fp.scripts_change
    data = fp.used_change - fp.overhead_change
    print(f"    used_memory {fp.used_change:+,} B, split by MEMORY STATS: the keys' data {data:+,} (MEMORY USAGE of "
          f"the keys, directory included, sums {fp.usage_change:+,}: {data - fp.usage_change:+,} not attributed to a "
          f"key), overhead {fp.overhead_change:+,}: key tables (main and expires dicts) {fp.tables_change:+,}, "
          f"client connections' buffers {fp.clients_change:+,} ({fp.connections[0]} -> {fp.connections[1]} "
          f"connections), Lua cache {fp.scripts_change:+,}, other {overhead_rest:+,}")
    print(f"    without the connections' buffers and the Lua cache (they do not grow with jobs): "
          f"{fp.scaling_per_job:,.0f} B/job")
    print("    by key pattern (MEMORY USAGE change / jobs; {P} the prefix):")
    print(f"      {'B/job':>9} {'keys/job':>9}  pattern")
    for pattern, per_job, keys in fp.rows:
        note = "  (not counted: the directory copy)" if pattern.startswith(DIRECTORY) else ""
        print(f"      {per_job:9.1f} {keys:9.3f}  {pattern}{note}")


def state_counts(client: redis.Redis, prefix: str) -> Counter[str]:
    """Working jobs by state (settled ones have left the state indexes), and the settled count."""
    counts: Counter[str] = Counter()
    for key in client.scan_iter(match=f"{prefix}jobs:state:*", count=1000):
        counts[_text(key).rsplit(":", 1)[1]] = int(client.zcard(key))
    counts["(settled)"] = int(client.zcard(f"{prefix}jobs:settled"))
    return +counts


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def final_count(client: redis.Redis, prefix: str) -> int:
    """Finished jobs still in their working form."""
    pipe = client.pipeline(transaction=False)
    for state in sorted(FINAL_STATES):
        pipe.zcard(f"{prefix}jobs:state:{state.value}")
    return sum(int(n) for n in pipe.execute())


def wait_until(what: str, count: Callable[[], int], want: int, timeout: float,
               describe: Callable[[], str] = lambda: "") -> float:
    """Poll `count()` until it reaches `want`, saying every 10 s how far it got; the seconds it took."""
    start = last_note = time.monotonic()
    while (have := count()) < want:
        now = time.monotonic()
        if now - start > timeout:
            raise Stalled(f"{what}: {have} of {want} after {timeout:g} s {describe()}")
        if now - last_note >= 10:
            print(f"    ... {what}: {have} of {want} ({now - start:.0f} s)", flush=True)
            last_note = now
        time.sleep(0.2)
    return time.monotonic() - start


# -- a stack ---------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """A running worker and intake over a private Redis, and what the benchmark needs to talk to them."""

    url: str
    prefix: str
    env: dict[str, str]
    base: str
    client: redis.Redis
    worker: subprocess.Popen[bytes] | None
    intake: subprocess.Popen[bytes] | None
    operator_token: str


@contextlib.contextmanager
def running_stack(work: Path, name: str, users: int, settings: dict[str, str]) -> Iterator[Stack]:
    """A private Redis, boxsim with `users` generated users, a worker and an intake; all stopped after."""
    with private_redis(work / f"{name}-redis") as url, BoxSim(SimConfig(port=0, generate_users=users)) as sim:
        prefix = f"bench-footprint-{uuid.uuid4().hex[:8]}:"
        token = secrets.token_hex(16)
        env = box_env(sim, url, prefix, BOXCUT_INTAKE_HMAC_SECRETS=SECRET,
                      BOXCUT_OPERATOR_TOKENS=f"bench-footprint:{token}",
                      BOXCUT_ARCHIVE_URL=f"sqlite:///{work / f'{name}-worker-archive.sqlite3'}", **settings)
        client = redis.Redis.from_url(url)
        worker = intake = None
        try:
            worker = start_worker(env, work / f"{name}-worker.log")
            intake, base = start_intake({**env, "BOXCUT_LOG_LEVEL": "WARNING"}, work / f"{name}-intake.log")
            yield Stack(url, prefix, env, base, client, worker, intake, token)
        finally:
            stop(intake)
            stop(worker)
            client.close()


def warm_up(stack: Stack, first_user: int, *, settled: bool, timeout: float) -> None:
    """WARMUP alerts (users from `first_user` on, outside the measured ones), until they are final (and settled,
    when the stack settles), and the directory copy, then two archive passes: the baseline's state."""
    due = time.time()
    sent = [Sent(login=f"user{first_user + i:05d}@example.com", due=due) for i in range(WARMUP)]
    post_alerts(stack.base, SECRET, sent, clients=1, tag="warm")
    check_answers("warm-up", sent)
    started = time.monotonic()
    if settled:
        wait_until("warm-up jobs settled", lambda: int(stack.client.zcard(f"{stack.prefix}jobs:settled")),
                   WARMUP, timeout, lambda: f"{dict(state_counts(stack.client, stack.prefix))}")
    else:
        wait_until("warm-up jobs final", lambda: final_count(stack.client, stack.prefix), WARMUP, timeout,
                   lambda: f"{dict(state_counts(stack.client, stack.prefix))}")
    built = f"{stack.prefix}directory:built"
    deadline = time.monotonic() + 30
    while not stack.client.exists(built) and time.monotonic() < deadline:
        time.sleep(0.2)
    size = stack.client.get(f"{stack.prefix}directory:size")
    copy = (f"directory copy built ({_text(size) if size else '?'} users)" if stack.client.exists(built)
            else "NO directory copy within 30 s (its keys are taken out of the figures in any case)")
    time.sleep(2.5 * ARCHIVE_EVERY_SECONDS)
    print(f"    warm-up: {WARMUP} alerts {'settled' if settled else 'final'} in "
          f"{time.monotonic() - started:.1f} s, {copy}", flush=True)


def post_measured(stack: Stack, first_user: int, count: int, rate: float) -> list[Sent]:
    """`count` alerts for generated users from `first_user` on, at `rate` a second, every one answered 202."""
    start = time.time() + 0.5
    sent = [Sent(login=f"user{first_user + i:05d}@example.com", due=a.due)
            for i, a in enumerate(paced_alerts(count, count / rate, start=start))]
    post_alerts(stack.base, SECRET, sent, clients=CLIENTS, tag="footprint")
    check_answers("measured", sent)
    print(f"    {count} alerts (user{first_user:05d}...) posted in {max(a.answered for a in sent) - start:.1f} s, "
          f"all 202", flush=True)
    return sent


def measure(stack: Stack, args: argparse.Namespace, total: int, what: str, done: Callable[[], int]) -> Measured:
    """Post `total` alerts in two halves; after each, wait until `done()` counts them (the warm-up's too) and
    two archive passes more, and take a snapshot."""
    before = snapshot(stack.client, stack.prefix)
    half = total // 2
    snapshots: list[Snapshot] = []
    sent: list[Sent] = []
    for first, count in ((1, half), (half + 1, total - half)):
        batch = post_measured(stack, first, count, args.rate)
        sent += batch
        last_answer = max(a.answered for a in batch)
        want = WARMUP + first - 1 + count
        wait_until(what, done, want, args.settle_timeout, lambda: f"{dict(state_counts(stack.client, stack.prefix))}")
        print(f"    all {want} jobs {what} {time.time() - last_answer:.1f} s after the last alert's 202; measured "
              f"{2.5 * ARCHIVE_EVERY_SECONDS:g} s later", flush=True)
        time.sleep(2.5 * ARCHIVE_EVERY_SECONDS)
        snapshots.append(snapshot(stack.client, stack.prefix))
    return Measured(whole=footprint(before, snapshots[1], total),
                    second_half=footprint(snapshots[0], snapshots[1], total - half), sent=sent)


def check_answers(what: str, sent: list[Sent]) -> None:
    answers = Counter(str(a.status) if a.status is not None else f"error {a.error}" for a in sent)
    if any(a.status != 202 or not a.job_id for a in sent):
        raise Stalled(f"{what} alerts not all answered 202 with a job: {dict(answers)}")


# -- the archive -----------------------------------------------------------------------------------------------


@dataclass
class Postgres:
    """Fresh databases on a PostgreSQL server, each dropped by `drop_all`."""

    admin_url: str
    engine: Engine | None = None
    made: list[str] = field(default_factory=list)

    def reachable(self) -> str | None:
        """None when the server answers, else why not."""
        try:
            with self._engine().connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            return " ".join(str(getattr(error, "orig", error)).split())[:200]
        return None

    def create(self) -> str:
        name = f"bench_footprint_{uuid.uuid4().hex[:12]}"
        with self._engine().connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self.made.append(name)
        return make_url(self.admin_url).set(drivername="postgresql", database=name).render_as_string(
            hide_password=False)

    def drop_all(self) -> None:
        while self.made:
            name = self.made.pop()
            try:
                with self._engine().connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except SQLAlchemyError as error:
                print(f"footprint: could not drop database {name}: {error}", file=sys.stderr)

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def _engine(self) -> Engine:
        if self.engine is None:
            self.engine = create_engine(make_url(self.admin_url).set(drivername="postgresql+psycopg"),
                                        isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        return self.engine


def archive_url(backend: str, work: Path, postgres: Postgres | None) -> str:
    if backend == "sqlite":
        return f"sqlite:///{work / 'moves-archive.sqlite3'}"
    assert postgres is not None
    return postgres.create()


def archiver(store: JobStore, archive: Archive, *, hot_seconds: float) -> Archiver:
    """The archive pass's mover over `store`, settling a finished job as soon as it is quiet."""
    return Archiver(store, SendQueue(store.redis, key_prefix=store.prefix), archive, hot_seconds=hot_seconds,
                    settle_seconds=0, late_events_seconds=defaults.WATCH_LATE_EVENTS_SECONDS)


def settle_timed(mover: Archiver, jobs: int, timeout: float) -> tuple[int, float]:
    """Run `settle_jobs` until `jobs` more jobs are settled; (jobs settled, seconds)."""
    done, started = 0, time.perf_counter()
    progressed = started
    while done < jobs:
        settled, archived_only, waiting = mover.settle_jobs(most=min(SETTLE_MOST, jobs - done))
        done += settled + archived_only
        now = time.perf_counter()
        if settled or archived_only:
            progressed = now
        elif now - progressed > min(timeout, 30):
            raise Stalled(f"archive moves: {done} of {jobs} settled, none in the last {now - progressed:.0f} s "
                          f"(the last settle_jobs: {waiting} not quiet)")
        else:
            time.sleep(0.05)
    return done, time.perf_counter() - started


# -- reads -----------------------------------------------------------------------------------------------------


def timed_reads(fetch: Callable[[str], str], job_ids: list[str], reads: int, want: str) -> tuple[list[float], str]:
    """`reads` reads cycling over `job_ids` (two untimed first); the durations of those that said `want`, and
    what every timed read said."""
    for job_id in job_ids[:2]:
        fetch(job_id)
    durations: list[float] = []
    said: Counter[str] = Counter()
    for index in range(reads):
        job_id = job_ids[index % len(job_ids)]
        started = time.perf_counter()
        stored = fetch(job_id)
        elapsed = time.perf_counter() - started
        said[stored] += 1
        if stored == want:
            durations.append(elapsed)
    return durations, ", ".join(f"{n} x {s}" for s, n in said.most_common())


def intake_fetch(base: str, token: str) -> Callable[[str], str]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def fetch(job_id: str) -> str:
        answer = session.get(f"{base}/v1/jobs/{job_id}", timeout=30)
        if answer.status_code != 200:
            return f"HTTP {answer.status_code} {answer.text[:120]}"
        return answer.headers.get(STORED_HEADER, "(no header)")

    return fetch


# -- figures ---------------------------------------------------------------------------------------------------


class Figures:
    """Each figure's value in every repeat."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def span(self, name: str, fmt: str = "{:,.0f}") -> str:
        values = self.values.get(name)
        if not values:
            return "n/a"
        low, high = fmt.format(min(values)), fmt.format(max(values))
        return low if low == high else f"{low}..{high}"

    def worst(self, name: str) -> float | None:
        values = self.values.get(name)
        return max(values) if values else None


def add_footprint(figures: Figures, form: str, measured: Measured) -> None:
    for fp, part in ((measured.whole, ""), (measured.second_half, " half")):
        figures.add(f"{form}{part} B/job", fp.bytes_per_job)
        figures.add(f"{form}{part} keys/job", fp.keys_per_job)
        figures.add(f"{form}{part} usage B/job", fp.usage_per_job)
        figures.add(f"{form}{part} scaling B/job", fp.scaling_per_job)


def add_reads(figures: Figures, name: str, durations: list[float]) -> None:
    if durations:
        for pct in (50, 99):
            figures.add(f"{name} p{pct}", percentile(durations, pct) * 1000)
        figures.add(f"{name} max", max(durations) * 1000)


# -- one repeat ------------------------------------------------------------------------------------------------


def settled_pass(args: argparse.Namespace, work: Path, figures: Figures) -> None:
    """The settled form, through the real worker's archive pass."""
    print(f"  1. settled form: a worker settling after {SETTLED_SETTINGS['BOXCUT_SETTLE_SECONDS']} s, "
          f"archive pass every {ARCHIVE_EVERY_SECONDS:g} s, into {work / 'settled-worker-archive.sqlite3'}",
          flush=True)
    with running_stack(work, "settled", args.alerts + WARMUP + 5, SETTLED_SETTINGS) as stack:
        warm_up(stack, args.alerts + 1, settled=True, timeout=args.settle_timeout)
        measured = measure(stack, args, args.alerts, "settled",
                           lambda: int(stack.client.zcard(f"{stack.prefix}jobs:settled")))
        job_id = measured.sent[-1].job_id or ""
        said = intake_fetch(stack.base, stack.operator_token)(job_id)
        print(f"    GET /v1/jobs/{job_id} of the live stack: {STORED_HEADER}: {said}", flush=True)
    print_measured("settled form", measured)
    add_footprint(figures, "settled", measured)
    fp = measured.whole
    projected = fp.bytes_per_job * ALERTS_A_DAY * HOT_WINDOW_DAYS
    figures.add("hot window MB", projected / 1e6)
    figures.add("hot window half MB", measured.second_half.bytes_per_job * ALERTS_A_DAY * HOT_WINDOW_DAYS / 1e6)
    idem_days = defaults.IDEMPOTENCY_TTL_SECONDS / 86400
    without_idem = (fp.bytes_per_job - fp.idem_per_job) * ALERTS_A_DAY * HOT_WINDOW_DAYS
    print(f"  {ALERTS_A_DAY:,} alerts a day x {HOT_WINDOW_DAYS}-day hot window: {fp.bytes_per_job:,.0f} B x "
          f"{ALERTS_A_DAY * HOT_WINDOW_DAYS:,} = {projected / 1e6:,.0f} MB (an over-estimate: the {{P}}idem:* keys, "
          f"{fp.idem_per_job:,.0f} B/job by MEMORY USAGE, expire after {idem_days:g} day(s), "
          f"BOXCUT_IDEMPOTENCY_TTL_SECONDS; counting them {idem_days:g} day(s): "
          f"{(without_idem + fp.idem_per_job * ALERTS_A_DAY * idem_days) / 1e6:,.0f} MB); from the second half's "
          f"figure: {figures.values['hot window half MB'][-1]:,.0f} MB", flush=True)


def working_pass(args: argparse.Namespace, backends: list[str], work: Path, postgres: Postgres | None,
                 figures: Figures) -> None:
    """The working form, then the archive moves and the reads over its jobs, per archive backend."""
    total = args.alerts * len(backends)
    print(f"  2. working form: a worker with BOXCUT_SETTLE_SECONDS={WORKING_SETTLE_SECONDS} (nothing settles), "
          f"{total} alerts ({args.alerts} per archive measured)", flush=True)
    settings = {**SETTLED_SETTINGS, "BOXCUT_SETTLE_SECONDS": WORKING_SETTLE_SECONDS}
    with running_stack(work, "working", total + WARMUP + 5, settings) as stack:
        warm_up(stack, total + 1, settled=False, timeout=args.settle_timeout)
        measured = measure(stack, args, total, "final", lambda: final_count(stack.client, stack.prefix))
        states = state_counts(stack.client, stack.prefix)
        print_measured("working form (before settling)", measured)
        print(f"    jobs by state: {dict(states)}", flush=True)
        add_footprint(figures, "working", measured)

        stopping = time.monotonic()
        stop(stack.intake)
        stop(stack.worker)
        print(f"    worker and intake stopped ({time.monotonic() - stopping:.1f} s)", flush=True)
        store = JobStore(stack.client, key_prefix=stack.prefix)
        # The worker's archive pass, under its 3600 s settle time, noted when to look at each job again
        # (jobs:settle_wait); the in-process mover below settles with no wait, so those notes are forgotten.
        finished = [_text(j) for state in sorted(FINAL_STATES)
                    for j in stack.client.zrange(f"{stack.prefix}jobs:state:{state.value}", 0, -1)]
        for job_id in finished:
            store.undefer_settle(job_id)
        print(f"    JobStore.undefer_settle on the {len(finished)} finished jobs (the worker's pass had deferred "
              f"them for its {WORKING_SETTLE_SECONDS} s settle time)", flush=True)
        print(f"  3./4. archive moves (Archiver.settle_jobs in-process, settle_seconds=0) and reads, "
              f"{args.alerts} jobs per archive", flush=True)
        for index, backend in enumerate(backends):
            url = archive_url(backend, work, postgres)
            upgrade(url)
            archive = Archive(url)
            try:
                archive.check_schema()
                mover = archiver(store, archive, hot_seconds=defaults.HOT_DAYS * 86400)
                evictor = archiver(store, archive, hot_seconds=0)
                if index == 0:  # the warm-up jobs are the oldest: out of the way, untimed
                    settle_timed(mover, WARMUP, args.settle_timeout)
                    evictor.evict(most=WARMUP)
                moved, seconds = settle_timed(mover, args.alerts, args.settle_timeout)
                figures.add(f"moves/s {backend}", moved / seconds)
                print(f"    {backend}: {moved} jobs settled in {seconds:.2f} s: {moved / seconds:,.0f} jobs/s "
                      f"({archive.where})", flush=True)
                batch = [_text(i) for i in stack.client.zrange(f"{stack.prefix}jobs:settled", 0, -1)]
                evicted = evictor.evict(most=len(batch) // 2)
                cold, hot = batch[:evicted], batch[evicted:]
                still = store.which_exist(cold, settled=True)
                print(f"      Archiver.evict (hot_seconds=0): {evicted} packed copies evicted, "
                      f"{len(hot)} hot; evicted still packed: {len(still)}", flush=True)
                read_backend(args, work, stack, store, archive, url, backend, hot, cold, figures)
                evictor.evict(most=len(batch))  # the next batch's older half is then the oldest
            finally:
                archive.close()


def read_backend(args: argparse.Namespace, work: Path, stack: Stack, store: JobStore, archive: Archive, url: str,
                 backend: str, hot: list[str], cold: list[str], figures: Figures) -> None:
    """--reads reads of hot and of archived jobs, through a real intake over `url` and through JobHistory."""
    intake = None
    try:
        intake, base = start_intake({**stack.env, "BOXCUT_LOG_LEVEL": "WARNING", "BOXCUT_ARCHIVE_URL": url},
                                    work / f"reads-{backend}-intake.log")
        fetch = intake_fetch(base, stack.operator_token)
        history = JobHistory(store, archive)
        print(f"      reads, {backend} archive ({args.reads} each, after 2 untimed):", flush=True)
        for via, reader in (("GET /v1/jobs/{id}", fetch), ("JobHistory.find", lambda j: history.find(j).stored)):
            for kind, ids in ((HOT, hot), (ARCHIVE, cold)):
                durations, said = timed_reads(reader, ids, args.reads, kind)
                add_reads(figures, f"read {via} {backend} {kind}", durations)
                print(f"        {via:18s} {kind:7s}: {spread(durations, 1000, 'ms', 1, (50, 99)):38s} "
                      f"(said: {said})", flush=True)
    finally:
        stop(intake)


# -- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--alerts", type=int, default=1000, help="finished one-user alerts measured (N)")
    parser.add_argument("--rate", type=float, default=50.0, help="alerts posted a second")
    parser.add_argument("--archive", choices=("sqlite", "postgres", "both"), default="both",
                        help="archive backends of the moves and reads (both: PostgreSQL skipped, saying so, "
                             "when none answers)")
    parser.add_argument("--reads", type=int, default=200, help="reads timed per kind (hot, archived)")
    parser.add_argument("--repeat", type=int, default=3, help="whole measurements, each afresh")
    parser.add_argument("--settle-timeout", type=float, default=300.0,
                        help="seconds to wait for the jobs to be final or settled")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (logs, SQLite archives)")
    args = parser.parse_args()
    if args.alerts < 2 or args.rate <= 0 or args.reads < 1 or args.repeat < 1 or args.settle_timeout <= 0:
        parser.error("--alerts must be at least 2; --rate, --reads, --repeat and --settle-timeout positive")
    exit_on_sigterm()
    print(changed_settings(**SETTLED_SETTINGS), flush=True)
    print(f"  and BOXCUT_SETTLE_SECONDS={WORKING_SETTLE_SECONDS} for the working-form stack; BOXCUT_ARCHIVE_URL "
          f"the bench's own (SQLite in a temp dir; PostgreSQL a database it creates and drops)", flush=True)

    backends = ["sqlite", "postgres"] if args.archive == "both" else [args.archive]
    postgres = None
    if "postgres" in backends:
        postgres = Postgres(os.environ.get("BOXCUT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
        why = postgres.reachable()
        if why is not None:
            where = make_url(postgres.admin_url).render_as_string(hide_password=True)
            if args.archive == "postgres":
                raise SystemExit(f"footprint: no PostgreSQL at {where} (BOXCUT_TEST_POSTGRES_URL): {why}")
            print(f"footprint: PostgreSQL SKIPPED, none answers at {where} (BOXCUT_TEST_POSTGRES_URL; "
                  f"scripts/ensure-postgres): {why}", flush=True)
            backends.remove("postgres")
            postgres = None
    print(f"footprint: {args.alerts} one-user alerts at {args.rate:g}/s, archives {' and '.join(backends)}, "
          f"{args.reads} reads per kind, {args.repeat} repeats", flush=True)

    figures = Figures()
    try:
        for repeat in range(1, args.repeat + 1):
            work = Path(tempfile.mkdtemp(prefix="boxcut-footprint-"))
            print(f"repeat {repeat}/{args.repeat} (work dir {work}{', kept' if args.keep else ''})", flush=True)
            try:
                settled_pass(args, work, figures)
                working_pass(args, backends, work, postgres, figures)
            except Stalled as error:
                print(f"footprint: STOPPED: {error}", flush=True)
                print_log_tails(work)
                raise SystemExit(1) from None
            finally:
                if postgres is not None:
                    postgres.drop_all()
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
    finally:
        if postgres is not None:
            postgres.drop_all()
            postgres.dispose()
    summary(args, backends, figures)


def print_log_tails(work: Path, lines: int = 25) -> None:
    for log in sorted(work.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- last {len(tail)} lines of {log.name}:")
        for line in tail:
            print(f"    {line[:300]}")


def summary(args: argparse.Namespace, backends: list[str], figures: Figures) -> None:
    runs = f"{args.repeat} repeat{'s' if args.repeat > 1 else ''}"
    print(f"summary over {runs} (min..max), {args.alerts} one-user alerts each:")
    print(f"  {'':40s} {'settled (packed)':>18s} {'working (before settling)':>27s}")
    for label, name, fmt in (("Redis bytes per job (used_memory)", "B/job", "{:,.0f}"),
                             ("  connections' buffers, Lua cache aside", "scaling B/job", "{:,.0f}"),
                             ("  sum of MEMORY USAGE per job", "usage B/job", "{:,.0f}"),
                             ("keys per job (DBSIZE)", "keys/job", "{:.2f}"),
                             ("second half alone: bytes per job", "half B/job", "{:,.0f}"),
                             ("  connections' buffers, Lua cache aside", "half scaling B/job", "{:,.0f}"),
                             ("  sum of MEMORY USAGE per job", "half usage B/job", "{:,.0f}"),
                             ("  keys per job", "half keys/job", "{:.2f}")):
        print(f"  {label:40s} {figures.span('settled ' + name, fmt):>18s} "
              f"{figures.span('working ' + name, fmt):>27s}")
    print(f"  {ALERTS_A_DAY:,} alerts/day x {HOT_WINDOW_DAYS}-day hot window: {figures.span('hot window MB')} MB "
          f"(from the second half's figure: {figures.span('hot window half MB')} MB)")
    for backend in backends:
        print(f"  archive moves, {backend}: {figures.span(f'moves/s {backend}')} jobs settled/s")
    for backend in backends:
        for via in ("GET /v1/jobs/{id}", "JobHistory.find"):
            for kind in (HOT, ARCHIVE):
                name = f"read {via} {backend} {kind}"
                print(f"  read, {backend:8s} {via:18s} {kind:7s}: "
                      + ", ".join(f"{p} {figures.span(f'{name} {p}', '{:.1f}')}" for p in ("p50", "p99", "max"))
                      + " ms")
    print("targets (worst repeat):")
    verdict(f"Redis bytes per settled one-user alert <= {TARGET_BYTES:,} (used_memory)",
            figures.worst("settled B/job"), TARGET_BYTES, "{:,.0f} B")
    verdict(f"  the same, connections' buffers and Lua cache aside <= {TARGET_BYTES:,}",
            figures.worst("settled scaling B/job"), TARGET_BYTES, "{:,.0f} B")
    verdict(f"  the second half of the alerts alone <= {TARGET_BYTES:,}",
            figures.worst("settled half B/job"), TARGET_BYTES, "{:,.0f} B")
    verdict(f"Redis keys per settled one-user alert <= {TARGET_KEYS}", figures.worst("settled keys/job"),
            TARGET_KEYS, "{:.2f}")
    worst_mb = figures.worst("hot window MB")
    verdict(f"{ALERTS_A_DAY:,} alerts/day x {HOT_WINDOW_DAYS}-day hot window <= 1 GB", worst_mb,
            HOT_WINDOW_BUDGET / 1e6, "{:,.0f} MB")
    for backend in backends:
        verdict(f"reading an archived job (GET /v1/jobs/{{id}}, {backend}) p50 <= {TARGET_ARCHIVED_P50_MS:g} ms",
                figures.worst(f"read GET /v1/jobs/{{id}} {backend} {ARCHIVE} p50"), TARGET_ARCHIVED_P50_MS,
                "{:.1f} ms")


def verdict(label: str, worst: float | None, limit: float, fmt: str) -> None:
    if worst is None:
        print(f"  {label}: not measured")
        return
    print(f"  {label}: {fmt.format(worst)}  {'met' if worst <= limit else 'MISSED'}")


if __name__ == "__main__":
    main()
