"""Archiving end to end: real prefork workers, a real PostgreSQL archive, a private Redis, and a hot window of ten
seconds. A stream of alerts runs for two minutes: Redis stays flat while the archive grows, and every job stays
readable through the API and the CLI, its evidence report verifying. A worker SIGKILLed in the middle of a move
loses no job and archives none twice."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import create_engine, text

from boxsim import SimConfig
from tests.drills.private_redis import PrivateRedis
from tests.integration.harness import REPO, Stack, post_signed, running_stack, until
from worker.archive.migrate import upgrade
from worker.jobs import evidence_signing

pytestmark = pytest.mark.integration

SECRET = "archiving-hmac-secret"
TOKEN = "archiving-operator-token"
USERS = 2000
STREAM_SECONDS = 120.0
ALERTS_PER_SECOND = 8.0
HOT_SECONDS = 10.0
KEY = Ed25519PrivateKey.generate()
# What the working form of a finished one-user alert held before jobs settled (about 9 KB); a settled one holds
# well under 1 KB, and its idempotency key (kept for the dedupe window whatever becomes of the job) 140 bytes.
WORKING_BYTES_PER_JOB = 9000
FLAT_BYTES_PER_ALERT = 600


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("archiving")
    key_file = tmp / "report-signing-key.pem"
    key_file.write_bytes(KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    server = PrivateRedis(tmp / "redis", aof=False)
    (tmp / "redis").mkdir()
    server.start()
    upgrade(postgres_url)
    env = {"BOXCUT_ARCHIVE_URL": postgres_url, "BOXCUT_HOT_DAYS": f"{HOT_SECONDS / 86400:.8f}",
           "BOXCUT_SETTLE_SECONDS": "1", "BOXCUT_ARCHIVE_EVERY_SECONDS": "1",
           "BOXCUT_INTAKE_HMAC_SECRETS": SECRET, "BOXCUT_OPERATOR_TOKENS": f"archivist:{TOKEN}",
           "BOXCUT_REPORT_SIGNING_KEY_FILE": str(key_file)}
    try:
        with running_stack(server.url, tmp, sim_config=SimConfig(port=0, generate_users=USERS),
                           extra_env=env) as running:
            yield running
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def intake(stack: Stack) -> str:
    return stack.start_intake()


def alert(url: str, n: int, tag: str) -> str:
    answer = post_signed(f"{url}/v1/alerts/panther", SECRET,
                         {"alertId": f"{tag}-{n}", "title": "archiving", "alertContext": {"user": login(n)}})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


def login(n: int) -> str:
    return f"user{n % USERS + 1:05d}@example.com"


def get_job(url: str, job_id: str) -> requests.Response:
    return requests.get(f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def archived_count(stack: Stack) -> int:
    history = stack.history()
    assert history.archive is not None
    return history.archive.stats()["jobs"]


def boxcut(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=stack.env, cwd=REPO,
                          capture_output=True, text=True, timeout=90)


def stream(url: str, *, seconds: float, rate: float, tag: str, sample: Callable[[], None]) -> list[str]:
    """Alerts at `rate` a second for `seconds`, `sample` called every two seconds meanwhile; their job ids."""
    job_ids: list[str] = []
    done = threading.Event()

    def sampler() -> None:
        while not done.wait(2.0):
            sample()

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        for n in range(int(seconds * rate)):
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            job_ids.append(alert(url, n, tag))
    finally:
        done.set()
        thread.join()
    return job_ids


def test_redis_stays_flat_while_the_archive_grows_and_every_job_stays_readable(stack: Stack, intake: str,
                                                                              tmp_path: Path) -> None:
    redis = stack.store().redis
    samples: list[tuple[float, int, int, int]] = []  # (when, used_memory, keys other than idempotency claims, archived)

    def sample() -> None:
        other_keys = sum(1 for k in redis.scan_iter(count=1000) if b":idem:" not in k)
        samples.append((time.monotonic(), int(redis.info("memory")["used_memory"]), other_keys, archived_count(stack)))

    job_ids = stream(intake, seconds=STREAM_SECONDS, rate=ALERTS_PER_SECOND, tag="flat", sample=sample)
    until(lambda: archived_count(stack) >= len(job_ids), "every job archived", timeout=90, interval=1)

    # Past the first half minute (the hot window filling, the pools warming), memory grows by what the dedupe
    # window keeps per alert, not by the job: flat beside what the working form would take.
    settled = [s for s in samples if s[0] - samples[0][0] >= 30]
    alerts_between = (settled[-1][0] - settled[0][0]) * ALERTS_PER_SECOND
    growth = (settled[-1][1] - settled[0][1]) / alerts_between
    assert growth < FLAT_BYTES_PER_ALERT, (growth, samples)
    assert max(s[2] for s in settled) < 400 + 3 * HOT_SECONDS * ALERTS_PER_SECOND, samples  # keys: flat too
    assert samples[-1][3] > samples[len(samples) // 2][3] > 0  # the archive grew all along
    print(f"\nRedis used_memory over {len(settled)} samples: {min(s[1] for s in settled):,}..."
          f"{max(s[1] for s in settled):,} bytes; growth {growth:.0f} bytes an alert (the working form: about "
          f"{WORKING_BYTES_PER_JOB:,}); archived {samples[-1][3]:,}")

    stored: dict[str, int] = {}
    for job_id in job_ids:
        answer = get_job(intake, job_id)
        assert answer.status_code == 200, (job_id, answer.text)
        assert answer.json()["state"] == "succeeded", answer.json()
        stored[answer.headers["Boxcut-Stored"]] = stored.get(answer.headers["Boxcut-Stored"], 0) + 1
    assert stored.get("archive", 0) > len(job_ids) // 2, stored

    oldest, newest = job_ids[0], job_ids[-1]
    for job_id, where in ((oldest, "archive"), (newest, "")):
        report = requests.get(f"{intake}/v1/jobs/{job_id}/report", headers={"Authorization": f"Bearer {TOKEN}"},
                              timeout=10)
        assert report.status_code == 200
        assert evidence_signing.verify(report.content, trusted=KEY.public_key()).job_id == job_id
        status = boxcut(stack, "status", job_id)
        assert status.returncode == 0 and f"stored:   {where}" in status.stdout, status.stdout + status.stderr
        assert not status.stderr, status.stderr
        out = tmp_path / f"{job_id}.json"
        assert boxcut(stack, "report", job_id, "-o", str(out)).returncode == 0
        assert _content(out.read_bytes()) == _content(report.content)  # the same report, made again
        verified = boxcut(stack, "report", "--verify", str(out))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        trail = boxcut(stack, "audit", "--job", job_id, "--json")
        events = [json.loads(line)["event"] for line in trail.stdout.splitlines()]
        assert events[0] == "created" and events[-1] == "state", events
    listing = boxcut(stack, "jobs", "--limit", "1000", "--json")
    assert {row["job_id"] for row in json.loads(listing.stdout)} >= set(job_ids[-1000:])


def _content(report: bytes) -> dict[str, Any]:
    """What a report says, but when it was made (and so its signature)."""
    content: dict[str, Any] = json.loads(report)["report"]
    del content["generated_at"]
    return content


def test_a_worker_killed_in_the_middle_of_a_move_loses_no_job_and_archives_none_twice(
        stack: Stack, intake: str, postgres_url: str) -> None:
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as blocker:
        # Every move waits on the table until the worker is killed: it dies in the middle of one.
        transaction = blocker.begin()
        blocker.execute(text("LOCK TABLE archived_jobs IN ACCESS EXCLUSIVE MODE"))
        job_ids = [alert(intake, USERS + n, "kill") for n in range(40)]
        until(lambda: _waiting_on_the_lock(engine), "an archive pass waiting in the middle of a move", timeout=60,
              interval=0.5)
        for worker in stack.workers:
            worker.kill()
        stack.workers.clear()
        transaction.rollback()
    stack.start_worker()
    until(lambda: all(get_job(intake, j).headers.get("Boxcut-Stored") == "archive" for j in job_ids),
          "every job of the killed worker archived", timeout=120, interval=1)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT job_id, count(*) FROM archived_jobs WHERE job_id = ANY(:ids) "
                                       "GROUP BY job_id"), {"ids": job_ids}).all()
        entries = connection.execute(text("SELECT count(*), count(DISTINCT entry_id) FROM archived_audit "
                                          "WHERE job_id = ANY(:ids)"), {"ids": job_ids}).one()
    engine.dispose()
    assert sorted(r[0] for r in rows) == sorted(job_ids) and {r[1] for r in rows} == {1}
    assert entries[0] == entries[1] >= 7 * len(job_ids)
    for job_id in job_ids:
        record: dict[str, Any] = get_job(intake, job_id).json()
        assert record["state"] == "succeeded" and record["calls"][0]["http_status"] == 202


def _waiting_on_the_lock(engine: Any) -> bool:
    with engine.connect() as connection:
        waiting = connection.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                          "AND query ILIKE '%archived_jobs%'")).scalar()
    return bool(waiting)
