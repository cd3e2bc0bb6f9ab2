"""Benchmark: an alert storm, K signed alerts for K distinct users through a real `boxcut intake`; prints figures.

    .venv/bin/python bench/storm.py [--alerts 2000] [--seconds 60] [--sim-rate-limit 1000] [--latency-ms 150] [-c 2]

Containment at incident scale: boxsim serves K generated users (user00001@example.com...), limits each token to
--sim-rate-limit calls a minute (as Box does, about 1,000) and answers each terminate call after --latency-ms.
--clients threads post one Panther alert per user, HMAC-signed, at an even pace over --seconds, to a real intake
process; a real prefork worker with -c processes runs the jobs. Then it waits (at most --settle-timeout) until
every job has settled, reporting those that did not, and prints: alerts sent and their answers, terminate calls
and ids per call, resolution calls (every other Box request but the token endpoint) by endpoint, 429s, and the
seconds from each alert's 202 (client clock) to Box accepting its target (the `finished_at` of the call that
settled it). Measured only through the intake's HTTP API, boxsim's request log and the job records.
Uses the Redis at BOXCUT_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a key prefix of its own,
deleted afterwards, as are the processes it starts (also on SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from benchkit import (
    TOKEN_PATH,
    accepted_at,
    box_env,
    changed_settings,
    delete_prefix,
    exit_on_sigterm,
    is_settled,
    is_terminate,
    job_store,
    peak_in_flight,
    signed_panther_alert,
    spread,
    start_intake,
    start_worker,
    stop,
    terminate_ids,
)

from boxsim import BoxSim, SimConfig
from worker.jobs.model import Job
from worker.jobs.store import JobStore

SECRET = "bench-storm-hmac-secret"


@dataclass
class Sent:
    """One alert: when it was due, when its answer arrived (client clock, epoch s), what it said."""

    login: str
    due: float
    answered: float = 0.0
    status: int | None = None
    job_id: str | None = None
    error: str | None = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--alerts", type=int, default=2000, help="alerts to post, one per distinct user (K)")
    parser.add_argument("--seconds", type=float, default=60.0, help="post them at an even pace over this long (T)")
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
    exit_on_sigterm()
    redis_url = os.environ.get("BOXCUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"boxcut-bench-{uuid.uuid4().hex[:8]}:"
    work = Path(tempfile.mkdtemp(prefix="boxcut-storm-"))
    config = SimConfig(port=0, generate_users=args.alerts, rate_limit_per_minute=args.sim_rate_limit)
    worker = intake = None
    with BoxSim(config) as sim:
        if args.latency_ms > 0:
            sim.add_faults([{"method": "POST", "path": "/2.0/users/terminate_sessions", "times": -1,
                             "latency_ms": args.latency_ms}])
        print(changed_settings(), flush=True)
        env = box_env(sim, redis_url, prefix, BOXCUT_INTAKE_HMAC_SECRETS=SECRET)
        try:
            worker = start_worker(env, work / "worker.log", concurrency=args.concurrency)
            # The worker says "ready." at INFO; the intake's line per request would only cost CPU.
            intake, base = start_intake({**env, "BOXCUT_LOG_LEVEL": "WARNING"}, work / "intake.log")
            print(f"storm: {args.alerts} alerts over {args.seconds:g} s ({args.alerts / args.seconds:.1f}/s), "
                  f"boxsim {args.sim_rate_limit or 'unlimited'} calls/min, {args.latency_ms} ms per terminate call, "
                  f"{args.concurrency} worker processes, {args.clients} clients; logs in {work}", flush=True)
            sent = _post_all(base, args)
            store = job_store(redis_url, prefix)
            jobs, settled_at = _wait_settled(store, sent, args.settle_timeout)
            _report(sent, jobs, settled_at, sim.requests(), args)
        finally:
            stop(intake)
            stop(worker)
            delete_prefix(redis_url, prefix)


def _post_all(base: str, args: argparse.Namespace) -> list[Sent]:
    """Post every alert at its due time from `--clients` threads; each answer's arrival on the client clock."""
    start = time.time() + 0.5
    step = args.seconds / args.alerts
    sent = [Sent(login=f"user{i:05d}@example.com", due=start + (i - 1) * step) for i in range(1, args.alerts + 1)]
    cursor = iter(range(len(sent)))
    lock = threading.Lock()
    run_id = uuid.uuid4().hex[:8]

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            alert = sent[index]
            time.sleep(max(0.0, alert.due - time.time()))
            body, headers = signed_panther_alert(SECRET, f"storm-{run_id}-{index}", alert.login)
            try:
                response = session.post(base + "/v1/alerts/panther", data=body, headers=headers, timeout=30)
                alert.answered, alert.status = time.time(), response.status_code
                alert.job_id = response.json().get("job_id") if response.status_code < 300 else None
            except (requests.RequestException, ValueError) as error:
                alert.answered, alert.error = time.time(), type(error).__name__

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent


def _wait_settled(store: JobStore, sent: list[Sent], timeout: float) -> tuple[dict[str, Job], dict[str, float]]:
    """Every job's last record read, and when (epoch s, polled every second) each was first seen settled."""
    jobs: dict[str, Job] = {}
    settled_at: dict[str, float] = {}
    waiting = [a.job_id for a in sent if a.job_id]
    deadline = time.monotonic() + timeout
    last_note = time.monotonic()
    while waiting:
        still = []
        for job_id in waiting:
            jobs[job_id] = job = store.load(job_id)
            if is_settled(job):
                settled_at[job_id] = time.time()
            else:
                still.append(job_id)
        waiting = still
        if not waiting or time.monotonic() > deadline:
            break
        if time.monotonic() - last_note > 30:
            print(f"  ... {len(settled_at)} jobs settled, {len(waiting)} not yet", flush=True)
            last_note = time.monotonic()
        time.sleep(1.0)
    return jobs, settled_at


def _report(sent: list[Sent], jobs: dict[str, Job], settled_at: dict[str, float], log: list[dict[str, Any]],
            args: argparse.Namespace) -> None:
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
        print(f"  ids per accepted terminate call: min {min(ids)}, median {statistics.median(ids):g}, max {max(ids)}")
    print(f"resolution calls: {len(resolution)}  token calls: {len(tokens)}  all Box calls: {len(log)}")
    for endpoint, count in sorted(Counter(f"{e['method']} {e['path']}" for e in resolution).items()):
        print(f"  {count:6d}  {endpoint}")
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
    print(f"202 -> Box accepted its target: {spread(to_accepted)}")
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
