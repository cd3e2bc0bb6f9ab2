"""Benchmark: `boxcut offboard FILE.csv --approve --wait` for N generated users against boxsim; prints figures.

    .venv/bin/python bench/offboard.py [--users 5000] [--sim-rate-limit 1000] [--latency-ms 150]

boxsim serves N generated users, limits each token to --sim-rate-limit calls a minute (as Box does, about
1,000) and answers each terminate call after --latency-ms. Prints wall time, Box calls by endpoint and 429s.
Uses the Redis at BOXCUT_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a key prefix of its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from benchkit import REPO, delete_prefix, start_worker

from boxsim import BoxSim, SimConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--sim-rate-limit", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=150)
    args = parser.parse_args()
    redis_url = os.environ.get("BOXCUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"boxcut-bench-{uuid.uuid4().hex[:8]}:"
    work = Path(tempfile.mkdtemp())
    csv_path = work / "offboard.csv"
    csv_path.write_text("user_login\n" + "".join(f"user{i:05d}@example.com\n" for i in range(1, args.users + 1)))
    config = SimConfig(port=0, generate_users=args.users, rate_limit_per_minute=args.sim_rate_limit)
    with BoxSim(config) as sim:
        sim.add_faults([{"method": "POST", "path": "/2.0/users/terminate_sessions", "times": -1,
                         "latency_ms": args.latency_ms}])
        env = {**os.environ, "BOXCUT_REDIS_URL": redis_url, "BOXCUT_KEY_PREFIX": prefix,
               "BOX_API_BASE_URL": sim.base_url, "BOX_OAUTH_URL": sim.oauth_url,
               "BOX_CLIENT_ID": sim.config.client_id, "BOX_CLIENT_SECRET": sim.config.client_secret,
               "BOX_ENTERPRISE_ID": sim.config.enterprise_id}
        worker = start_worker(env, work / "worker.log")
        try:
            started = time.monotonic()
            run = subprocess.run([sys.executable, "-m", "worker.cli", "offboard", str(csv_path), "--approve", "--wait"],
                                 env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
            wall = time.monotonic() - started
            _report(run, wall, sim, args)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
            delete_prefix(redis_url, prefix)


def _report(run: subprocess.CompletedProcess[str], wall: float, sim: BoxSim, args: argparse.Namespace) -> None:
    requests_ = sim.requests()
    by_endpoint = Counter(f"{r['method']} {r['path']}" for r in requests_)
    bars = [line for line in run.stderr.splitlines() if line.startswith("[")]
    print(f"users: {args.users}  exit: {run.returncode}  wall time (CLI, submit to summary): {wall:.1f} s")
    print(run.stdout.strip().splitlines()[1] if len(run.stdout.splitlines()) > 1 else run.stdout.strip())
    print(f"Box calls: {len(requests_)}  429s: {sum(r['status'] == 429 for r in requests_)}  "
          f"progress lines drawn: {len(bars)}")
    for endpoint, count in sorted(by_endpoint.items()):
        print(f"  {count:6d}  {endpoint}")
    if bars:
        print(f"first bar: {bars[0]}\nlast bar:  {bars[-1]}")


if __name__ == "__main__":
    main()
