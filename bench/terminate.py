"""Benchmark: one job of N users through a real worker, real Redis and boxsim over HTTP; prints figures.

    .venv/bin/python bench/terminate.py --users 1000 [--rate-limit 900] [--sim-rate-limit 1000]

Prints wall time from submit to the job's final state, Box calls by endpoint, 429s seen, and targets per
second. Uses the Redis at BOXCUT_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a key prefix of its
own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from benchkit import delete_prefix, start_worker

from boxsim import BoxSim, SimConfig
from config import load_settings
from tasks.app import build_celery_app, enqueuer
from worker.connections import redis_client
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job, submit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rate-limit", type=int, default=900, help="BOXCUT_RATE_LIMIT_PER_MINUTE")
    parser.add_argument("--sim-rate-limit", type=int, default=0, help="boxsim's per-token limit (0: off)")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    redis_url = os.environ.get("BOXCUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"boxcut-bench-{uuid.uuid4().hex[:8]}:"
    with BoxSim(SimConfig(port=0, generate_users=args.users, rate_limit_per_minute=args.sim_rate_limit)) as sim:
        env = {**os.environ, "BOXCUT_REDIS_URL": redis_url, "BOXCUT_KEY_PREFIX": prefix,
               "BOX_API_BASE_URL": sim.base_url, "BOX_OAUTH_URL": sim.oauth_url,
               "BOX_CLIENT_ID": sim.config.client_id, "BOX_CLIENT_SECRET": sim.config.client_secret,
               "BOX_ENTERPRISE_ID": sim.config.enterprise_id,
               "BOXCUT_RATE_LIMIT_PER_MINUTE": str(args.rate_limit),
               # This measures throughput, not the approval rule: the job must not wait for a person.
               "BOXCUT_APPROVAL_THRESHOLD": str(args.users + 1)}
        worker = start_worker(env, Path(tempfile.mkdtemp()) / "worker.log", concurrency=args.concurrency)
        try:
            _run(env, sim, args.users)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
            delete_prefix(redis_url, prefix)


def _run(env: dict[str, str], sim: BoxSim, n_users: int) -> None:
    settings = load_settings(env, env_file=None)
    store = JobStore.from_settings(redis_client(settings), settings)
    targets = [{"type": "user", "login": f"user{i:05d}@example.com"} for i in range(1, n_users + 1)]
    sim.clear_requests()
    start = time.monotonic()
    job = submit(store=store, enqueue=enqueuer(build_celery_app(settings)),
                 job=build_job(JobRequest(targets=targets, source="bench", reason="bench")))
    while not (record := store.load(job.job_id)).state.is_final and record.state.value != "awaiting_approval":
        time.sleep(0.2)
    wall = time.monotonic() - start
    requests_ = sim.requests()
    by_endpoint = Counter(f"{r['method']} {r['path']}" for r in requests_)
    print(f"users: {n_users}  state: {record.state.value}  summary: {record.summary()}")
    print(f"wall time: {wall:.1f} s  ({n_users / wall:.0f} targets/s)")
    print(f"Box calls: {len(requests_)}  429s: {sum(r['status'] == 429 for r in requests_)}")
    for endpoint, count in sorted(by_endpoint.items()):
        print(f"  {count:6d}  {endpoint}")


if __name__ == "__main__":
    main()
