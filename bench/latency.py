"""Benchmark: one alert at a time through an idle stack; prints how soon its terminate call reaches Box.

    .venv/bin/python bench/latency.py [--alerts 50] [--pause 1.0] [-c 2] [--brake-users N]

The latency of containment when nothing else is going on: a real `boxcut intake`, a real prefork worker (-c
processes) and boxsim without rate limit or added latency. Each of --alerts HMAC-signed Panther alerts names a
user of its own; the next is posted only after the job has settled and --pause seconds have passed, so the
stack is idle each time. Prints p50/p99/max milliseconds from the alert's 202 (client clock) to its terminate
call's arrival at boxsim (the `time` boxsim logged for the first terminate request naming the user's id) and
to Box accepting the target (the `finished_at` of the call that settled it). --warmup alerts go first and are
not counted (the first job of a worker fetches a token and the service account).
Uses the Redis at BOXCUT_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a key prefix of its own,
deleted afterwards, as are the processes it starts (also on SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from benchkit import (
    accepted_at,
    box_env,
    changed_settings,
    delete_prefix,
    exit_on_sigterm,
    is_settled,
    is_terminate,
    job_store,
    signed_panther_alert,
    spread,
    start_intake,
    start_worker,
    stop,
    terminate_ids,
)

from boxsim import BoxSim, SimConfig
from worker.jobs.store import JobStore

SECRET = "bench-latency-hmac-secret"
SETTLE_TIMEOUT_SECONDS = 60.0


@dataclass
class Probe:
    """One alert: its user, when its answer arrived (client clock, epoch s), and when Box accepted it."""

    login: str
    posted: float = 0.0
    answered: float = 0.0
    status: int | None = None
    job_id: str | None = None
    accepted: float | None = None
    settled: bool = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--alerts", type=int, default=50, help="alerts measured, one at a time")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of idle between a settled job and the next")
    parser.add_argument("--warmup", type=int, default=1, help="alerts posted first and not counted")
    parser.add_argument("-c", "--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--brake-users", type=int, default=0,
                        help="BOXCUT_BRAKE_USERS; 0: the brake off. A limit above --alerts counts every target "
                        "(the brake's check runs before each call) and holds none: its cost")
    args = parser.parse_args()
    if args.alerts < 1 or args.pause < 0 or args.warmup < 0 or args.concurrency < 1:
        parser.error("--alerts and -c must be positive, --pause and --warmup not negative")
    exit_on_sigterm()
    redis_url = os.environ.get("BOXCUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"boxcut-bench-{uuid.uuid4().hex[:8]}:"
    work = Path(tempfile.mkdtemp(prefix="boxcut-latency-"))
    total = args.warmup + args.alerts
    worker = intake = None
    with BoxSim(SimConfig(port=0, generate_users=total)) as sim:
        brake = {"BOXCUT_BRAKE_USERS": str(args.brake_users)} if args.brake_users else {}
        print(changed_settings(**brake), flush=True)
        env = box_env(sim, redis_url, prefix, BOXCUT_INTAKE_HMAC_SECRETS=SECRET, **brake)
        try:
            worker = start_worker(env, work / "worker.log", concurrency=args.concurrency)
            intake, base = start_intake({**env, "BOXCUT_LOG_LEVEL": "WARNING"}, work / "intake.log")
            print(f"latency: {args.alerts} alerts one at a time (+{args.warmup} warm-up), {args.pause:g} s apart, "
                  f"{args.concurrency} worker processes, boxsim unlimited; logs in {work}", flush=True)
            store = job_store(redis_url, prefix)
            session = requests.Session()
            probes = [_probe(session, base, store, f"user{i:05d}@example.com", args.pause) for i in range(1, total + 1)]
            _report(probes[args.warmup:], sim)
        finally:
            stop(intake)
            stop(worker)
            delete_prefix(redis_url, prefix)


def _probe(session: requests.Session, base: str, store: JobStore, login: str, pause: float) -> Probe:
    """Post one alert, wait for its job to settle, then let the stack idle for `pause` seconds."""
    probe = Probe(login=login)
    body, headers = signed_panther_alert(SECRET, f"latency-{uuid.uuid4().hex}", login)
    probe.posted = time.time()
    response = session.post(base + "/v1/alerts/panther", data=body, headers=headers, timeout=30)
    probe.answered, probe.status = time.time(), response.status_code
    probe.job_id = response.json().get("job_id") if response.status_code < 300 else None
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while probe.job_id and time.monotonic() < deadline:
        job = store.load(probe.job_id)
        if is_settled(job):
            probe.settled = True
            probe.accepted = next((t for t in accepted_at(job) if t is not None), None)
            break
        time.sleep(0.05)
    time.sleep(pause)
    return probe


def _report(probes: list[Probe], sim: BoxSim) -> None:
    arrivals: dict[str, float] = {}
    for entry in sim.requests():
        if is_terminate(entry):
            for named in terminate_ids(entry):
                arrivals.setdefault(named, entry["time"])
    post, to_arrival, to_accepted = [], [], []
    for probe in probes:
        post.append(probe.answered - probe.posted)
        users = sim.directory.users_with_login(probe.login)
        arrived = next((arrivals[key] for key in (*(u.id for u in users), probe.login) if key in arrivals), None)
        if arrived is not None:
            to_arrival.append(arrived - probe.answered)
        if probe.accepted is not None:
            to_accepted.append(probe.accepted - probe.answered)
    print(f"alerts: {len(probes)}  202s: {sum(p.status == 202 for p in probes)}  "
          f"settled: {sum(p.settled for p in probes)}  accepted: {len(to_accepted)}  "
          f"terminate calls seen: {len(to_arrival)}")
    print(f"POST -> 202 (client):                 {spread(post, 1000, 'ms', 1, (50, 99))}")
    print(f"202 -> terminate call at boxsim:      {spread(to_arrival, 1000, 'ms', 1, (50, 99))}")
    print(f"202 -> Box accepted (call finished):  {spread(to_accepted, 1000, 'ms', 1, (50, 99))}")
    unsettled = [p.job_id for p in probes if not p.settled]
    if unsettled:
        print(f"UNSETTLED after {SETTLE_TIMEOUT_SECONDS:g} s each: {len(unsettled)}, e.g. {unsettled[:5]}")


if __name__ == "__main__":
    main()
