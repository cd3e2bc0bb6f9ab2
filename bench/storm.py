"""Benchmark: an alert storm, K signed alerts for K distinct users through a real `boxcut intake`; prints figures.

    .venv/bin/python bench/storm.py [--alerts 2000] [--seconds 60] [--budget N] [--sim-rate-limit 1000]
                                    [--latency-ms 150] [-c 2]

Containment at incident scale: boxsim serves K generated users (user00001@example.com...), limits each token to
--sim-rate-limit calls a minute (as Box does, about 1,000) and answers each terminate call after --latency-ms.
--budget is boxcut's own limit on its Box calls a minute (BOXCUT_RATE_LIMIT_PER_MINUTE, for the worker and the
intake; 0, the default: not set, so boxcut's default), a separate thing from boxsim's. --clients threads post one
Panther alert per user, HMAC-signed, at an even pace over --seconds, to a real intake process; a real prefork
worker with -c processes runs the jobs. Then it waits (at most --settle-timeout) until every job has settled,
reporting those that did not, and prints: alerts sent and their answers; terminate calls, by status, and the ids
per accepted call (min, median, mean, max); resolution calls (every other Box request but the token endpoint) by
endpoint; Box calls a minute against the budget; 429s; and the seconds from each alert's 202 (client clock) to Box
accepting its target (the `finished_at` of the call that settled it) as p50, p95, p99 and max. Measured only
through the intake's HTTP API, boxsim's request log and the job records.
Uses the Redis at BOXCUT_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a key prefix of its own,
deleted afterwards, as are the processes it starts (also on SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchkit import (
    BUDGET_SETTING,
    TOKEN_PATH,
    Sent,
    accepted_at,
    delete_prefix,
    exit_on_sigterm,
    is_terminate,
    job_store,
    paced_alerts,
    peak_in_flight,
    post_alerts,
    spread,
    start_intake,
    start_worker,
    stop,
    storm_env,
    terminate_ids,
    wait_settled,
)

from boxsim import BoxSim, SimConfig
from config import defaults
from worker.jobs.model import Job

SECRET = "bench-storm-hmac-secret"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--alerts", type=int, default=2000, help="alerts to post, one per distinct user (K)")
    parser.add_argument("--seconds", type=float, default=60.0, help="post them at an even pace over this long (T)")
    parser.add_argument("--budget", type=int, default=0,
                        help=f"boxcut's own Box calls a minute ({BUDGET_SETTING}; 0: not set, boxcut's default, "
                             f"{defaults.RATE_LIMIT_PER_MINUTE} unless the environment sets it)")
    parser.add_argument("--sim-rate-limit", type=int, default=1000,
                        help="boxsim's calls a minute per token (R; 0: off)")
    parser.add_argument("--latency-ms", type=int, default=150, help="boxsim's delay per terminate call (L)")
    parser.add_argument("-c", "--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--clients", type=int, default=8, help="client threads posting alerts")
    parser.add_argument("--settle-timeout", type=float, default=1200.0,
                        help="seconds after the last alert to wait for every job to settle")
    args = parser.parse_args()
    if args.alerts < 1 or args.seconds <= 0 or args.concurrency < 1 or args.clients < 1:
        parser.error("--alerts, --seconds, -c and --clients must be positive")
    if args.budget < 0:
        parser.error("--budget must not be negative")
    exit_on_sigterm()
    redis_url = os.environ.get("BOXCUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"boxcut-bench-{uuid.uuid4().hex[:8]}:"
    work = Path(tempfile.mkdtemp(prefix="boxcut-storm-"))
    config = SimConfig(port=0, generate_users=args.alerts, rate_limit_per_minute=args.sim_rate_limit)
    worker = intake = None
    with BoxSim(config) as sim:
        env = storm_env(sim, redis_url, prefix, secret=SECRET, latency_ms=args.latency_ms, budget=args.budget)
        try:
            worker = start_worker(env, work / "worker.log", concurrency=args.concurrency)
            # The worker says "ready." at INFO; the intake's line per request would only cost CPU.
            intake, base = start_intake({**env, "BOXCUT_LOG_LEVEL": "WARNING"}, work / "intake.log")
            print(f"storm: {args.alerts} alerts over {args.seconds:g} s ({args.alerts / args.seconds:.1f}/s), "
                  f"boxcut budget {_budget(env)} calls/min, boxsim {args.sim_rate_limit or 'unlimited'} calls/min, "
                  f"{args.latency_ms} ms per terminate call, {args.concurrency} worker processes, "
                  f"{args.clients} clients; logs in {work}", flush=True)
            sent = paced_alerts(args.alerts, args.seconds, start=time.time() + 0.5)
            post_alerts(base, SECRET, sent, clients=args.clients, tag="storm")
            store = job_store(redis_url, prefix)
            jobs, settled_at = wait_settled(store, [a.job_id for a in sent if a.job_id], args.settle_timeout)
            _report(sent, jobs, settled_at, sim.requests(), args, budget=_budget(env))
        finally:
            stop(intake)
            stop(worker)
            delete_prefix(redis_url, prefix)


def _budget(env: dict[str, str]) -> str:
    """boxcut's budget as the worker will read it: the environment's, else the default."""
    return env.get(BUDGET_SETTING) or f"{defaults.RATE_LIMIT_PER_MINUTE} (default)"


def _report(sent: list[Sent], jobs: dict[str, Job], settled_at: dict[str, float], log: list[dict[str, Any]],
            args: argparse.Namespace, *, budget: str) -> None:
    first_due = sent[0].due
    answered = [a for a in sent if a.answered]
    last_answer = max((a.answered for a in answered), default=first_due)
    statuses = Counter(str(a.status) if a.status is not None else f"error {a.error}" for a in sent)
    lag = [max(0.0, a.answered - a.due) for a in answered]
    print(f"alerts sent: {len(sent)} over {last_answer - first_due:.1f} s  "
          f"answers: {', '.join(f'{n} x {s}' for s, n in sorted(statuses.items()))}")
    print(f"  answer after its due time (client): {spread(lag, 1000, 'ms', 0)}")

    terminate = [e for e in log if is_terminate(e)]
    accepted_calls = [e for e in terminate if e["status"] == 202]
    ids = [len(terminate_ids(e)) for e in accepted_calls]
    resolution = [e for e in log if not is_terminate(e) and e["path"] != TOKEN_PATH]
    tokens = [e for e in log if e["path"] == TOKEN_PATH]
    by_status = Counter(e["status"] for e in terminate)
    print(f"terminate calls: {len(terminate)} ({', '.join(f'{n} x {s}' for s, n in sorted(by_status.items()))}), "
          f"peak in flight {peak_in_flight(terminate)}")
    if ids:
        print(f"  ids per accepted terminate call: min {min(ids)}, median {statistics.median(ids):g}, "
              f"mean {statistics.fmean(ids):.1f}, max {max(ids)}")
    print(f"resolution calls: {len(resolution)}  token calls: {len(tokens)}  all Box calls: {len(log)}")
    for endpoint, count in sorted(Counter(f"{e['method']} {e['path']}" for e in resolution).items()):
        print(f"  {count:6d}  {endpoint}")
    api = [e for e in log if e["path"] != TOKEN_PATH]  # what boxcut's budget counts: every API call
    if len(api) > 1:
        span = max(e["time"] for e in api) - min(e["time"] for e in api)
        rate = f"{len(api) / span * 60:.0f}" if span > 0 else "n/a"
        print(f"Box API calls a minute, first call to last: {rate} over {span:.1f} s "
              f"(boxcut budget {budget}, boxsim {args.sim_rate_limit or 'unlimited'})")
    print(f"429s: {sum(e['status'] == 429 for e in log)} (terminate {by_status.get(429, 0)}, "
          f"resolution {sum(e['status'] == 429 for e in resolution)})")

    to_accepted, targets, n_accepted = [], 0, 0
    target_statuses: Counter[str] = Counter()
    for alert in sent:
        job = jobs.get(alert.job_id or "")
        if job is None:
            continue
        for target, when in zip(job.targets, accepted_at(job), strict=True):
            targets += 1
            target_statuses[target.status.value] += 1
            if when is not None:
                n_accepted += 1
                to_accepted.append(when - alert.answered)
    print(f"targets: {targets}, accepted {n_accepted}  "
          f"({', '.join(f'{s} {n}' for s, n in sorted(target_statuses.items()))})")
    print(f"202 -> Box accepted its target: {spread(to_accepted, pcts=(50, 95, 99))}")
    finished = [when for job in jobs.values() for when in accepted_at(job) if when is not None]
    if finished:
        print(f"last target accepted {max(finished) - first_due:.1f} s after the first alert was due")
    unsettled = [job_id for job_id in jobs if job_id not in settled_at]
    states = Counter(job.state.value for job in jobs.values())
    print(f"jobs: {len(jobs)} ({', '.join(f'{s} {n}' for s, n in sorted(states.items()))})")
    if settled_at:
        print(f"last job settled {max(settled_at.values()) - first_due:.1f} s after the first alert was due "
              f"({max(settled_at.values()) - last_answer:.1f} s after the last answer; "
              f"polled every 1 s)")
    if unsettled:
        print(f"UNSETTLED after {args.settle_timeout:g} s: {len(unsettled)} jobs, e.g. {', '.join(unsettled[:5])}")


if __name__ == "__main__":
    main()
