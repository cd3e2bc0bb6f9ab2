"""Benchmark: `boxcut offboard FILE.csv --approve --wait` for N generated users against boxsim; prints figures.

    .venv/bin/python bench/offboard.py [--users 5000] [--sim-rate-limit 1000] [--latency-ms 150] [-c 2] [--repeat 1]

boxsim serves N generated users (up to 99,999), limits each token to --sim-rate-limit calls a minute (R; as Box
does, about 1,000) and answers each terminate call after --latency-ms; a real prefork worker runs with -c
processes. Prints wall time, Box calls by endpoint and 429s; the floor a rate limit allows, (ceil(N / batch
size) terminate calls + ceil(N / 1000) directory pages) / (R / 60 s), and wall / floor; and the peak number of
terminate calls boxsim was answering at once (from its log: [time, time + latency_ms / 1000] per call).
--repeat runs the whole thing (fresh boxsim, worker and key prefix) that many times and ends with min..max.
Uses the Redis at BOXCUT_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a key prefix of its own,
deleted afterwards, as is the worker (also on SIGTERM).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit import (
    REPO,
    box_env,
    changed_settings,
    delete_prefix,
    exit_on_sigterm,
    is_terminate,
    peak_in_flight,
    start_worker,
    stop,
)

from boxsim import BoxSim, SimConfig
from config import defaults

MAX_USERS = 99_999  # generated logins have five digits: user00001@example.com
DIRECTORY_PAGE = 1000  # users per GET /users page


@dataclass
class Figures:
    wall: float
    floor: float | None
    peak: int
    calls: int
    terminate_calls: int
    rate_limited: int
    exit_code: int

    @property
    def ratio(self) -> float | None:
        return self.wall / self.floor if self.floor else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--users", type=int, default=5000, help=f"users in the offboarding file (1..{MAX_USERS:,})")
    parser.add_argument("--sim-rate-limit", type=int, default=1000,
                        help="boxsim's calls a minute per token (R; 0: off, and no floor)")
    parser.add_argument("--latency-ms", type=int, default=150, help="boxsim's delay per terminate call")
    parser.add_argument("-c", "--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--repeat", type=int, default=1, help="runs, each on a fresh stack; then min..max")
    args = parser.parse_args()
    if not 1 <= args.users <= MAX_USERS or args.concurrency < 1 or args.repeat < 1:
        parser.error(f"--users must be 1..{MAX_USERS:,}, -c and --repeat positive")
    exit_on_sigterm()
    batch_size = int(os.environ.get("BOXCUT_BATCH_SIZE") or defaults.BATCH_SIZE)
    floor_calls = math.ceil(args.users / batch_size) + math.ceil(args.users / DIRECTORY_PAGE)
    floor = floor_calls / (args.sim_rate_limit / 60) if args.sim_rate_limit else None
    print(f"offboard: {args.users:,} users, batch size {batch_size}, boxsim {args.sim_rate_limit or 'unlimited'} "
          f"calls/min, {args.latency_ms} ms per terminate call, {args.concurrency} worker processes; floor "
          + (f"{floor_calls} calls / {args.sim_rate_limit / 60:.2f} per s = {floor:.2f} s" if floor else "n/a"),
          flush=True)
    runs = []
    for number in range(1, args.repeat + 1):
        if args.repeat > 1:
            print(f"-- run {number}/{args.repeat}")
        runs.append(_run(args, floor))
    if args.repeat > 1:
        _summary(runs)


def _run(args: argparse.Namespace, floor: float | None) -> Figures:
    redis_url = os.environ.get("BOXCUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"boxcut-bench-{uuid.uuid4().hex[:8]}:"
    work = Path(tempfile.mkdtemp(prefix="boxcut-offboard-"))
    csv_path = work / "offboard.csv"
    csv_path.write_text("user_login\n" + "".join(f"user{i:05d}@example.com\n" for i in range(1, args.users + 1)))
    config = SimConfig(port=0, generate_users=args.users, rate_limit_per_minute=args.sim_rate_limit)
    worker = None
    with BoxSim(config) as sim:
        if args.latency_ms > 0:
            sim.add_faults([{"method": "POST", "path": "/2.0/users/terminate_sessions", "times": -1,
                             "latency_ms": args.latency_ms}])
        print(changed_settings(), flush=True)
        env = box_env(sim, redis_url, prefix)
        try:
            worker = start_worker(env, work / "worker.log", concurrency=args.concurrency)
            started = time.monotonic()
            run = subprocess.run([sys.executable, "-m", "worker.cli", "offboard", str(csv_path), "--approve", "--wait"],
                                 env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
            wall = time.monotonic() - started
            return _report(run, wall, floor, sim.requests(), args)
        finally:
            stop(worker)
            delete_prefix(redis_url, prefix)


def _report(run: subprocess.CompletedProcess[str], wall: float, floor: float | None, log: list[dict[str, Any]],
            args: argparse.Namespace) -> Figures:
    by_endpoint = Counter(f"{r['method']} {r['path']}" for r in log)
    bars = [line for line in run.stderr.splitlines() if line.startswith("[")]
    terminate = [r for r in log if is_terminate(r)]
    figures = Figures(wall=wall, floor=floor, peak=peak_in_flight(terminate), calls=len(log),
                      terminate_calls=len(terminate), rate_limited=sum(r["status"] == 429 for r in log),
                      exit_code=run.returncode)
    print(f"users: {args.users}  exit: {run.returncode}  wall time (CLI, submit to summary): {wall:.1f} s")
    print(run.stdout.strip().splitlines()[1] if len(run.stdout.splitlines()) > 1 else run.stdout.strip())
    if figures.ratio is not None:
        print(f"floor: {floor:.2f} s  wall/floor: {figures.ratio:.2f}")
    if log:
        span = max(r["time"] + r["latency_ms"] / 1000 for r in log) - min(r["time"] for r in log)
        print(f"Box span (first call received to last answered): {span:.1f} s")
    print(f"Box calls: {len(log)}  429s: {figures.rate_limited}  peak terminate calls in flight: {figures.peak}  "
          f"progress lines drawn: {len(bars)}")
    for endpoint, count in sorted(by_endpoint.items()):
        print(f"  {count:6d}  {endpoint}")
    if bars:
        print(f"first bar: {bars[0]}\nlast bar:  {bars[-1]}")
    if run.returncode != 0 and run.stderr.strip():
        print("stderr (last lines):\n  " + "\n  ".join(run.stderr.strip().splitlines()[-5:]))
    return figures


def _summary(runs: list[Figures]) -> None:
    def span(values: list[float], digits: int = 1) -> str:
        return f"{min(values):.{digits}f}..{max(values):.{digits}f}"

    ratios = [r.ratio for r in runs if r.ratio is not None]
    print(f"over {len(runs)} runs: wall {span([r.wall for r in runs])} s"
          + (f", wall/floor {span(ratios, 2)}" if ratios else "")
          + f", peak in flight {span([r.peak for r in runs], 0)}, Box calls {span([r.calls for r in runs], 0)}, "
          f"429s {span([r.rate_limited for r in runs], 0)}, exit codes {sorted({r.exit_code for r in runs})}")


if __name__ == "__main__":
    main()
