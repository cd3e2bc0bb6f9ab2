"""Benchmark: a whole worker SIGKILLed mid-storm; prints how long what it held took to recover.

    .venv/bin/python bench/recovery.py [--alerts 200] [--seconds 20] [--kill-at 8] [--latency-ms 150] [--budget N]
                                       [--settle-timeout 600]

boxsim serves --alerts generated users (user00001@example.com...), limits each token to 1,000 calls a minute (as
Box does) and answers each terminate call after --latency-ms. Two real prefork workers (`boxcut worker -c 2`,
each with its embedded beat, logs of their own) and a real intake run; client threads post one signed Panther
alert per user at an even pace over --seconds. --kill-at seconds after the first alert was due, it SIGKILLs one
whole worker, its main process and every process below it (pool processes, beat) at once: the first moment
within 5 s at which a worker has a Box request unanswered for a while (from `ss`'s per-socket times; such a
request is a terminate call, the only slow one), that worker; if none is seen, worker 1. --budget is boxcut's
own limit on Box calls a minute (BOXCUT_RATE_LIMIT_PER_MINUTE; 0, the default: not set, so boxcut's default).
The other worker carries on alone; the killed one is not restarted. After the last alert it waits (at most
--settle-timeout) until every job has settled, then prints, measured from the kill:

  (a) the terminate calls taken and not answered at the kill (in the send queue's `flight` set, read just
      before and just after the kill): how many, how many were sent again after it (their request count grew),
      and the seconds from the kill to each one's answer (its record's `finished_at`);
  (b) the jobs not settled at the kill (read just after it; settled: final, or waiting for approval): how many,
      by state and how many a run held (their lease key), and the seconds from the kill to each one's next state
      change and to its settling, both from its audit trail; how many the sweep enqueued again; and whether
      every job settled.

Also the seconds from each alert's 202 (client clock) to Box accepting its target, for alerts answered before
the kill and after it, and the Box calls and 429s of the whole run. Uses the Redis at BOXCUT_TEST_REDIS_URL
(default redis://127.0.0.1:6379/0) under a key prefix of its own, deleted afterwards, as are the processes it
starts (also on SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from benchkit import (
    BUDGET_SETTING,
    TOKEN_PATH,
    Sent,
    accepted_at,
    delete_prefix,
    descendants,
    epoch,
    exit_on_sigterm,
    is_terminate,
    job_store,
    kill_tree,
    min_median_max,
    paced_alerts,
    peak_in_flight,
    post_alerts,
    spread,
    start_intake,
    start_worker,
    stop,
    storm_env,
    wait_settled,
)

from boxsim import BoxSim, SimConfig
from config import defaults
from worker.jobs.model import Job, JobState
from worker.jobs.store import JobStore

SECRET = "bench-recovery-hmac-secret"
SIM_RATE_LIMIT = 1000  # Box's, about 1,000 calls a minute per token
WORKERS = 2
PROCESSES = 2  # each worker's -c
CLIENTS = 4
KILL_WINDOW = 5.0  # seconds after --kill-at to wait for a worker with a Box request in flight
# Keys of the send queue (worker/jobs/send_queue.py): `P send:{kind}:flight` holds the calls taken and not yet
# answered (call id -> claim deadline, ms); `P call:{id}` their records; `P call:{id}:sent` their request counts
# (worker/jobs/store/calls.py). Read here directly, not through SendQueue, whose interface is not the bench's concern.
KINDS = ("users", "groups")


@dataclass
class InFlight:
    """A call taken from the send queue and not answered, as read at the kill."""

    call_id: str
    kind: str
    ids: int
    committed: bool  # its record has a `started_at`: its targets were committed to it, the request may be out
    sent: int  # requests counted for it so far


@dataclass
class JobAtKill:
    job_id: str
    state: str
    leased: bool


@dataclass
class Kill:
    worker: int  # 1-based
    at: float  # epoch s
    pids: list[int]
    how: str
    calls: dict[str, InFlight] = field(default_factory=dict)
    jobs: dict[str, JobAtKill] = field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--alerts", type=int, default=200, help="alerts to post, one per distinct user")
    parser.add_argument("--seconds", type=float, default=20.0, help="post them at an even pace over this long")
    parser.add_argument("--kill-at", type=float, default=8.0,
                        help="seconds after the first alert was due to SIGKILL a worker (up to 5 s later)")
    parser.add_argument("--latency-ms", type=int, default=150,
                        help="boxsim's delay per terminate call (longer: more calls in flight at the kill)")
    parser.add_argument("--budget", type=int, default=0,
                        help=f"boxcut's own Box calls a minute ({BUDGET_SETTING}; 0: not set, boxcut's default, "
                             f"{defaults.RATE_LIMIT_PER_MINUTE} unless the environment sets it)")
    parser.add_argument("--settle-timeout", type=float, default=600.0,
                        help="seconds after the last alert to wait for every job to settle")
    args = parser.parse_args()
    if args.alerts < 1 or args.seconds <= 0 or args.latency_ms < 0 or args.settle_timeout < 0:
        parser.error("--alerts and --seconds must be positive, --latency-ms and --settle-timeout not negative")
    if not 0 <= args.kill_at < args.seconds:
        parser.error("--kill-at must fall within --seconds")
    if args.budget < 0:
        parser.error("--budget must not be negative")
    exit_on_sigterm()
    redis_url = os.environ.get("BOXCUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"boxcut-bench-{uuid.uuid4().hex[:8]}:"
    work = Path(tempfile.mkdtemp(prefix="boxcut-recovery-"))
    config = SimConfig(port=0, generate_users=args.alerts, rate_limit_per_minute=SIM_RATE_LIMIT)
    workers: list[subprocess.Popen[bytes]] = []
    intake = None
    with BoxSim(config) as sim:
        env = storm_env(sim, redis_url, prefix, secret=SECRET, latency_ms=args.latency_ms, budget=args.budget)
        try:
            for number in range(1, WORKERS + 1):
                workers.append(start_worker(env, work / f"worker-{number}.log", concurrency=PROCESSES))
            intake, base = start_intake({**env, "BOXCUT_LOG_LEVEL": "WARNING"}, work / "intake.log")
            print(f"recovery: {args.alerts} alerts over {args.seconds:g} s ({args.alerts / args.seconds:.1f}/s), "
                  f"a worker SIGKILLed at {args.kill_at:g} s; {WORKERS} workers x {PROCESSES} processes, boxcut "
                  f"budget {env.get(BUDGET_SETTING) or f'{defaults.RATE_LIMIT_PER_MINUTE} (default)'} calls/min, "
                  f"boxsim {SIM_RATE_LIMIT} calls/min, {args.latency_ms} ms per terminate call; logs in {work}",
                  flush=True)
            sent = paced_alerts(args.alerts, args.seconds, start=time.time() + 0.5)
            poster = threading.Thread(target=post_alerts, args=(base, SECRET, sent),
                                      kwargs={"clients": CLIENTS, "tag": "recovery"}, daemon=True)
            poster.start()
            client = redis.Redis.from_url(redis_url)
            kill = _kill_one(workers, client, prefix, sim.port, at=sent[0].due + args.kill_at,
                             min_wait_ms=min(20, args.latency_ms // 2))
            print(f"killed worker {kill.worker} ({len(kill.pids)} processes: {' '.join(map(str, kill.pids))}) "
                  f"{kill.at - sent[0].due:.2f} s after the first alert was due: {kill.how}", flush=True)
            poster.join()
            store = job_store(redis_url, prefix)
            jobs, settled_at = wait_settled(store, [a.job_id for a in sent if a.job_id], args.settle_timeout)
            _report(sent, kill, store, jobs, settled_at, sim.requests(), args)
        finally:
            stop(intake)
            for worker in workers:
                stop(worker)
            delete_prefix(redis_url, prefix)


def _kill_one(workers: list[subprocess.Popen[bytes]], client: redis.Redis, prefix: str, port: int, *,
              at: float, min_wait_ms: int) -> Kill:
    """At `at` (epoch s), SIGKILL the first worker seen with a Box request unanswered for `min_wait_ms` (within
    KILL_WINDOW), or worker 1; read the calls in flight just before and just after, and the jobs just after."""
    time.sleep(max(0.0, at - time.time()))
    victim, how = 0, ""
    deadline = time.time() + KILL_WINDOW
    while not how:
        waiting = _box_requests_waiting(port)
        if waiting is None:
            how = "`ss` did not answer, so worker 1, whatever it was doing"
            break
        for number, worker in enumerate(workers):
            waited = [waiting[pid] for pid in (worker.pid, *descendants(worker.pid)) if waiting.get(pid, -1) >= 0]
            if waited and max(waited) >= min_wait_ms:
                victim = number
                how = f"it had a Box request unanswered for {max(waited)} ms"
                break
        else:
            if time.time() > deadline:
                how = f"no worker had a Box request in flight within {KILL_WINDOW:g} s, so worker 1"
            else:
                time.sleep(0.005)
    before = _calls_in_flight(client, prefix)
    at = time.time()
    pids = kill_tree(workers[victim])
    kill = Kill(worker=victim + 1, at=at, pids=pids, how=how)
    after = _calls_in_flight(client, prefix)
    kill.calls = {**before, **after}  # a call in `before` but not `after` was answered about then: sorted out later
    kill.jobs = _jobs_now(client, prefix)
    return kill


def _box_requests_waiting(port: int) -> dict[int, int] | None:
    """pid -> how long (ms) its oldest unanswered request to boxsim on `port` has waited, from `ss` (per socket:
    data sent since data was last received); None when `ss` cannot tell."""
    try:
        out = subprocess.run(["ss", "-Htnpi", "state", "established", "dst", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    waiting: dict[int, int] = {}
    for record in re.split(r"\n(?=\S)", out):
        sent_ago = re.search(r"lastsnd:(\d+)", record)
        received_ago = re.search(r"lastrcv:(\d+)", record)
        if sent_ago is None or (received_ago is not None and int(sent_ago[1]) >= int(received_ago[1])):
            continue
        for pid in re.findall(r"pid=(\d+)", record):
            waiting[int(pid)] = max(waiting.get(int(pid), 0), int(sent_ago[1]))
    return waiting


def _calls_in_flight(client: redis.Redis, prefix: str) -> dict[str, InFlight]:
    """The calls taken and not answered now, with what their records say."""
    found: dict[str, str] = {}  # call id -> kind
    for kind in KINDS:
        for call_id in client.zrange(f"{prefix}send:{kind}:flight", 0, -1):
            found[_text(call_id)] = kind
    pipe = client.pipeline(transaction=False)
    for call_id in found:
        pipe.get(f"{prefix}call:{call_id}")
        pipe.get(f"{prefix}call:{call_id}:sent")
    replies = pipe.execute()
    calls = {}
    for n, (call_id, kind) in enumerate(found.items()):
        raw, sent = replies[2 * n], replies[2 * n + 1]
        record: dict[str, Any] = json.loads(raw) if raw else {}
        if record.get("state", "planned") != "planned":
            continue  # answered between the two reads
        calls[call_id] = InFlight(call_id=call_id, kind=kind, ids=len(record.get("ids") or []),
                                  committed=bool(record.get("started_at")), sent=int(sent or 0))
    return calls


def _jobs_now(client: redis.Redis, prefix: str) -> dict[str, JobAtKill]:
    """Every job's state, and whether a run holds it (its lease key), now."""
    ids = [_text(i) for i in client.zrange(f"{prefix}jobs", 0, -1)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"{prefix}job:{job_id}", "state")
        pipe.exists(f"{prefix}job:{job_id}:lease")
    replies = pipe.execute()
    return {job_id: JobAtKill(job_id, _text(replies[2 * n] or b"?"), bool(replies[2 * n + 1]))
            for n, job_id in enumerate(ids)}


def _is_settled_state(state: str) -> bool:
    try:
        value = JobState(state)
    except ValueError:
        return False
    return value.is_final or value is JobState.AWAITING_APPROVAL


def _report(sent: list[Sent], kill: Kill, store: JobStore, jobs: dict[str, Job], settled_at: dict[str, float],
            log: list[dict[str, Any]], args: argparse.Namespace) -> None:
    statuses = Counter(str(a.status) if a.status is not None else f"error {a.error}" for a in sent)
    print(f"alerts sent: {len(sent)}  answers: {', '.join(f'{n} x {s}' for s, n in sorted(statuses.items()))}")
    terminate = [e for e in log if is_terminate(e)]
    by_status = Counter(e["status"] for e in terminate)
    print(f"terminate calls: {len(terminate)} ({', '.join(f'{n} x {s}' for s, n in sorted(by_status.items()))}), "
          f"peak in flight {peak_in_flight(terminate)}  all Box calls: {len(log)} "
          f"(token {sum(e['path'] == TOKEN_PATH for e in log)})  429s: {sum(e['status'] == 429 for e in log)}")
    at_boxsim = [e for e in terminate if e["time"] <= kill.at < e["time"] + e["latency_ms"] / 1000]
    print(f"  terminate requests boxsim was answering at the kill: {len(at_boxsim)}")

    _report_calls(kill, store)
    _report_jobs(kill, store)

    before: list[float] = []
    after: list[float] = []
    for alert in sent:
        job = jobs.get(alert.job_id or "")
        if job is None:
            continue
        for when in accepted_at(job):
            if when is not None:
                (before if alert.answered < kill.at else after).append(when - alert.answered)
    print(f"202 -> Box accepted, alerts answered before the kill: {spread(before, pcts=(50, 95, 99))}")
    print(f"202 -> Box accepted, alerts answered after the kill:  {spread(after, pcts=(50, 95, 99))}")
    unsettled = [job_id for job_id in jobs if job_id not in settled_at]
    states = Counter(job.state.value for job in jobs.values())
    print(f"jobs: {len(jobs)} ({', '.join(f'{s} {n}' for s, n in sorted(states.items()))})")
    if settled_at:
        print(f"last job settled {max(settled_at.values()) - kill.at:.1f} s after the kill (polled every 1 s)")
    if unsettled:
        print(f"every job settled: NO, {len(unsettled)} not after {args.settle_timeout:g} s, "
              f"e.g. {', '.join(unsettled[:5])}")
    else:
        print("every job settled: yes")


def _report_calls(kill: Kill, store: JobStore) -> None:
    """(a): from the kill to the answer of every call taken and not answered at the kill."""
    rows = []
    for taken in kill.calls.values():
        call = store.load_call(taken.call_id)
        finished = epoch(call.finished_at) if call is not None and call.finished_at else None
        if finished is not None and finished < kill.at and call is not None and call.state.value == "answered":
            continue  # answered just before the kill, between the two reads
        resent = store.attempts_sent(taken.call_id) > taken.sent
        rows.append((taken, finished, resent))
    answered = [f - kill.at for _, f, _ in rows if f is not None]
    again = [f - kill.at for _, f, r in rows if f is not None and r]
    print(f"(a) calls taken and not answered at the kill: {len(rows)} "
          f"({sum(t.committed for t, _, _ in rows)} committed to Box, "
          f"{sum(r for _, _, r in rows)} sent again after the kill, "
          f"{sum(f is None for _, f, _ in rows)} never answered)")
    print(f"    kill -> answered: {min_median_max(answered)}")
    if again:
        print(f"    of those sent again after the kill: {min_median_max(again)}")
    for taken, finished, resent in sorted(rows, key=lambda r: r[1] or float("inf"))[:10]:
        print(f"      {taken.call_id}: {taken.kind}, {taken.ids} ids, {taken.sent} requests at the kill, "
              + ("never answered" if finished is None else f"answered {finished - kill.at:.1f} s after it")
              + (", sent again" if resent else ""))


def _report_jobs(kill: Kill, store: JobStore) -> None:
    """(b): from the kill to the next state change and to the settling of every job not settled at the kill."""
    open_jobs = [j for j in kill.jobs.values() if not _is_settled_state(j.state)]
    to_change, to_settle, requeued, never = [], [], 0, []
    slowest: list[tuple[float, JobAtKill, str]] = []
    for job in open_jobs:
        change = settle = None
        swept = False
        for entry in store.audit_entries(job_id=job.job_id):
            at = epoch(entry["at"])
            if at < kill.at:
                continue
            if entry["event"] == "requeued":
                swept = True
            if entry["event"] == "state":
                change = at if change is None else change
                if settle is None and _is_settled_state(str(entry["data"].get("to"))):
                    settle = at
        requeued += swept
        if change is not None:
            to_change.append(change - kill.at)
        if settle is not None:
            to_settle.append(settle - kill.at)
            slowest.append((settle - kill.at, job, "requeued by the sweep" if swept else ""))
        else:
            never.append(job.job_id)
    by_state = Counter(j.state for j in open_jobs)
    print(f"(b) jobs not settled at the kill: {len(open_jobs)} of {len(kill.jobs)} "
          f"({', '.join(f'{s} {n}' for s, n in sorted(by_state.items())) or 'none'}; "
          f"{sum(j.leased for j in open_jobs)} held by a run)")
    print(f"    kill -> next state change: {min_median_max(to_change)} ({len(to_change)} changed)")
    print(f"    kill -> settled:           {min_median_max(to_settle)} ({len(to_settle)} settled)")
    print(f"    enqueued again by the sweep after the kill: {requeued}")
    for seconds, job, note in sorted(slowest, key=lambda s: -s[0])[:5]:
        print(f"      {job.job_id}: {job.state}{', held' if job.leased else ''} at the kill, settled "
              f"{seconds:.1f} s after it{f', {note}' if note else ''}")
    if never:
        print(f"    NOT settled: {len(never)}, e.g. {', '.join(never[:5])}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


if __name__ == "__main__":
    main()
