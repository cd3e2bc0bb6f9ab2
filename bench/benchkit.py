"""What the benchmarks share: a real worker and intake in sessions of their own, boxsim's environment, signed
alert posts at an even pace, job records read back, percentiles, and cleaning up (or SIGKILLing) their processes
and Redis keys."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import requests

from boxsim import BoxSim
from worker.jobs.model import Job
from worker.jobs.store import JobStore

REPO = Path(__file__).resolve().parents[1]
TERMINATE_SUFFIX = "/terminate_sessions"
TOKEN_PATH = "/oauth2/token"


def exit_on_sigterm() -> None:
    """Make a SIGTERM to the benchmark (`timeout`, Ctrl-C's cousin) a normal exit, so its `finally` blocks stop
    what it started and delete its keys instead of leaving them behind."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def start_worker(env: dict[str, str], log: Path, *, concurrency: int = 2) -> subprocess.Popen[bytes]:
    """A `boxcut worker` (prefork) with `env`, once it says it is ready."""
    exit_on_sigterm()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "-c", str(concurrency)], env=env,
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    try:
        while "ready." not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker did not start; see {log}")
            time.sleep(0.1)
    except BaseException:  # a SIGTERM while waiting too: the caller never gets the process to stop
        stop(proc)
        raise
    return proc


def start_intake(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A `boxcut intake` on a free loopback port with `env`, once /healthz answers; returns it and its base URL."""
    exit_on_sigterm()
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "intake", "--port", str(port)], env=env,
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    return proc, base
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the intake did not answer at {base}; see {log}")
            time.sleep(0.1)
    except BaseException:  # a SIGTERM while waiting too: the caller never gets the process to stop
        stop(proc)
        raise


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 60) -> None:
    """SIGTERM a process started in a session of its own, and its children; SIGKILL them if they linger."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), read from /proc: a prefork worker's pool
    processes (titled `[celeryd: ...]` or ForkPoolWorker-N) and its embedded beat."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def kill_tree(proc: subprocess.Popen[bytes], timeout: float = 10) -> list[int]:
    """SIGKILL a process started in a session of its own and every process below it, all at once (its process
    group, then any descendant that left the group); returns the pids killed, once all of them are gone."""
    pids = [proc.pid, *descendants(proc.pid)]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids[1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while not all(is_gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise SystemExit(f"processes {[p for p in pids if not is_gone(p)]} outlived a SIGKILL")
        time.sleep(0.01)
    return pids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Settings every benchmark changes from the defaults: a storm sends hundreds of users from one source within
# seconds, which the brake across jobs exists to hold for a person (docs/brake.md); the benchmarks measure
# sending, so it is off. Printed by `box_env`'s callers through `changed_settings`.
BRAKE_OFF = {"BOXCUT_BRAKE_USERS": "0", "BOXCUT_BRAKE_TOTAL_USERS": "0"}


def changed_settings(**extra: str) -> str:
    """The line a benchmark prints first: which settings it changes from the defaults."""
    return "settings changed from the defaults: " + " ".join(f"{k}={v}" for k, v in {**BRAKE_OFF, **extra}.items())


def box_env(sim: BoxSim, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a boxcut process that talks to `sim` and keeps its keys under `prefix` (the brake off:
    BRAKE_OFF)."""
    return {**os.environ, "BOXCUT_REDIS_URL": redis_url, "BOXCUT_KEY_PREFIX": prefix,
            "BOX_API_BASE_URL": sim.base_url, "BOX_OAUTH_URL": sim.oauth_url,
            "BOX_CLIENT_ID": sim.config.client_id, "BOX_CLIENT_SECRET": sim.config.client_secret,
            "BOX_ENTERPRISE_ID": sim.config.enterprise_id, **BRAKE_OFF, **extra}


# boxcut's own budget of Box calls a minute (the benches' --budget).
BUDGET_SETTING = "BOXCUT_RATE_LIMIT_PER_MINUTE"


def storm_env(sim: BoxSim, redis_url: str, prefix: str, *, secret: str, latency_ms: int, budget: int) -> dict[str, str]:
    """A storm's setting: boxsim answers each terminate call after `latency_ms`; the environment of its boxcut
    processes (HMAC `secret`, boxcut's budget when `budget` is set), the settings changed printed first."""
    if latency_ms > 0:
        sim.add_faults([{"method": "POST", "path": "/2.0/users/terminate_sessions", "times": -1,
                         "latency_ms": latency_ms}])
    changed = {BUDGET_SETTING: str(budget)} if budget else {}
    print(changed_settings(**changed), flush=True)
    return box_env(sim, redis_url, prefix, BOXCUT_INTAKE_HMAC_SECRETS=secret, **changed)


def signed_panther_alert(secret: str, alert_id: str, login: str) -> tuple[bytes, dict[str, str]]:
    """A Panther alert naming `login`, and the headers that sign it (`v1=` HMAC-SHA256 of "<timestamp>.<body>")."""
    body = json.dumps({"alertId": alert_id, "title": "bench", "alertContext": {"user": login}}).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Boxcut-Timestamp": stamp,
                  "X-Boxcut-Signature": f"v1={digest}"}


@dataclass
class Sent:
    """One alert: when it was due, when its answer arrived (client clock, epoch s), what it said."""

    login: str
    due: float
    answered: float = 0.0
    status: int | None = None
    job_id: str | None = None
    error: str | None = None


def paced_alerts(count: int, seconds: float, *, start: float) -> list[Sent]:
    """`count` alerts for distinct generated users (user00001@example.com...), due at an even pace over
    `seconds` from `start` (epoch s)."""
    step = seconds / count
    return [Sent(login=f"user{i:05d}@example.com", due=start + (i - 1) * step) for i in range(1, count + 1)]


def post_alerts(base: str, secret: str, sent: list[Sent], *, clients: int, tag: str) -> None:
    """Post every alert to the intake's Panther route at its due time from `clients` threads, filling in each
    answer's arrival on the client clock."""
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
            body, headers = signed_panther_alert(secret, f"{tag}-{run_id}-{index}", alert.login)
            try:
                response = session.post(base + "/v1/alerts/panther", data=body, headers=headers, timeout=30)
                alert.answered, alert.status = time.time(), response.status_code
                alert.job_id = response.json().get("job_id") if response.status_code < 300 else None
            except (requests.RequestException, ValueError) as error:
                alert.answered, alert.error = time.time(), type(error).__name__

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_settled(store: JobStore, job_ids: Iterable[str], timeout: float) -> tuple[dict[str, Job], dict[str, float]]:
    """Every job's last record read, and when (epoch s, polled every second) each was first seen settled;
    waits at most `timeout` seconds, saying every 30 s how many are left."""
    jobs: dict[str, Job] = {}
    settled_at: dict[str, float] = {}
    waiting = list(job_ids)
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


def job_store(redis_url: str, prefix: str) -> JobStore:
    return JobStore(redis.Redis.from_url(redis_url), key_prefix=prefix)


def is_settled(job: Job) -> bool:
    """A job that will change no further by itself: final, or waiting for a person's approval."""
    return job.state.is_final or job.state.value == "awaiting_approval"


def accepted_at(job: Job) -> list[float | None]:
    """Per target: when Box accepted it (epoch seconds, the `finished_at` of the call that settled it), or None.

    Only the target's status and call ids and the calls' ids and times are read, so a call shared by several
    targets or jobs counts for each of them."""
    calls = {call.call_id: call for call in job.calls}
    times: list[float | None] = []
    for target in job.targets:
        call = calls.get(target.call_ids[-1]) if target.call_ids else None
        if target.status.value != "accepted" or call is None or not call.finished_at:
            times.append(None)
        else:
            times.append(epoch(call.finished_at))
    return times


def epoch(iso: str) -> float:
    """Epoch seconds of an ISO 8601 UTC timestamp such as 2025-01-01T00:00:00.123Z."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def is_terminate(entry: dict[str, Any]) -> bool:
    return entry["method"] == "POST" and str(entry["path"]).endswith(TERMINATE_SUFFIX)


def terminate_ids(entry: dict[str, Any]) -> list[str]:
    """The ids (and logins) a logged terminate request named."""
    body = entry.get("body")
    if not isinstance(body, dict):
        return []
    return [str(v) for key in ("user_ids", "user_logins", "group_ids") for v in body.get(key) or []]


def peak_in_flight(entries: Iterable[dict[str, Any]]) -> int:
    """The most requests boxsim was answering at once, from each entry's [time, time + latency_ms / 1000]."""
    edges = sorted(edge for e in entries
                   for edge in ((e["time"], 1), (e["time"] + e["latency_ms"] / 1000, -1)))
    peak = current = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start (+1): touching is not overlapping
        current += step
        peak = max(peak, current)
    return peak


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def spread(values: list[float], scale: float = 1.0, unit: str = "s", digits: int = 2,
           pcts: tuple[int, ...] = (50, 95, 99)) -> str:
    """"p50 x, p95 y, p99 z, max w UNIT" for `values` times `scale`, or "none" for an empty list."""
    if not values:
        return "none"
    parts = [f"p{p} {percentile(values, p) * scale:.{digits}f}" for p in pcts]
    return ", ".join([*parts, f"max {max(values) * scale:.{digits}f} {unit}"])


def min_median_max(values: list[float], digits: int = 1, unit: str = "s") -> str:
    """"min x, median y, max z UNIT", or "none" for an empty list."""
    if not values:
        return "none"
    return (f"min {min(values):.{digits}f}, median {statistics.median(values):.{digits}f}, "
            f"max {max(values):.{digits}f} {unit}")


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key the benchmark wrote under its own prefix."""
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])
