"""A soak: a mixed workload through boxcut's public doors while faults fall on a schedule drawn from a seed, then
the invariants (tests/soak/invariants.py) checked over what was recorded.

The stack is real: a private redis-server on a port of its own (it is restarted), boxsim over HTTP, prefork
workers (one runs beat) and the intake. The workload: HMAC-signed alerts from two named senders, one user each
and now and then several (which wait for approval: BOXCUT_APPROVAL_THRESHOLD is 3), repeats of earlier alerts,
protected users among the named, operator offboarding files, and an operator who approves or cancels what waits.
The faults: a worker SIGKILLed whole (and started again), pool processes SIGKILLed, Redis shut down and started
again, Box answering 503 for a spell, a 429 storm, and answers slower than the client's read timeout.

The same seed draws the same schedule of faults and the same workload choices; the timing of processes differs
from run to run, so a seed replays the pressure a failure was found under, not every interleaving.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from boxsim import SimConfig
from tests.drills.private_redis import PrivateRedis
from tests.integration.harness import ChildProcess, Stack, post_signed, running_stack
from tests.soak.invariants import TERMINATE_PATHS, Violation, World, check
from worker.jobs.model import Job, JobState, utc_now

USERS = 400
PROTECTED = ("user00001@example.com", "user00002@example.com")
# Protected only from the `protect_late` fault on: the workers restart with it added to the list.
PROTECTED_LATE = "user00003@example.com"
SENDERS = {"siem-a": "soak-secret-for-siem-a-0123456789", "siem-b": "soak-secret-for-siem-b-0123456789"}
OPERATOR_TOKEN = "soak-operator-token-0123456789abcdef"
# What the stack runs with, beside the test harness's fast timings (the brake stays off: it is a storm).
SOAK_ENV = {
    "BOXCUT_INTAKE_HMAC_SECRETS": ",".join(f"{name}:{secret}" for name, secret in SENDERS.items()),
    "BOXCUT_OPERATOR_TOKENS": f"soak-operator:{OPERATOR_TOKEN}",
    "BOXCUT_PROTECTED_USERS": ",".join(PROTECTED),
    "BOXCUT_APPROVAL_THRESHOLD": "3",
    "BOXCUT_SWEEP_SECONDS": "1",
    "BOXCUT_STALE_JOB_SECONDS": "10",
    # A killed sender's call is sent again once its claim runs out: above the harness's retry budget (5 s) and
    # timeouts (2 + 2 s), as the setting requires, and short enough that a soak drains in seconds, not minutes.
    "BOXCUT_CALL_CLAIM_SECONDS": "15",
    "BOXCUT_BATCH_SIZE": "10",
}
FAULT_KINDS = ("worker_kill", "pool_kill", "redis_restart", "redis_full", "box_503", "box_429", "box_slow",
               "token_expiry", "protect_late")
TERMINATE = "/2.0/users/terminate_sessions"


@dataclass(frozen=True)
class Fault:
    """One fault of the schedule: when (seconds into the run) and what."""

    at: float
    kind: str


def schedule(rng: random.Random, seconds: float, *, every: float = 12.0,
             kinds: tuple[str, ...] = FAULT_KINDS) -> list[Fault]:
    """The faults of a run: one about every `every` seconds (jittered), of `kinds` drawn from the seed, none in the
    first or last few seconds."""
    faults, at = [], 5.0
    while at < seconds - 5:
        faults.append(Fault(round(at, 1), rng.choice(kinds)))
        at += every * rng.uniform(0.5, 1.5)
    return faults


@dataclass
class Record:
    """What a run sent and saw, for the summary and the invariants."""

    answered: dict[str, float] = field(default_factory=dict)  # job id -> when its first 202 came (monotonic)
    sent: Counter[str] = field(default_factory=Counter)  # what was posted, by kind
    refused: Counter[str] = field(default_factory=Counter)  # answers other than 200/202, by kind and status
    faults: Counter[str] = field(default_factory=Counter)
    payloads: list[dict[str, Any]] = field(default_factory=list)  # alerts posted, for repeats


class Soak:
    """One run's workload and faults against a running stack."""

    def __init__(self, stack: Stack, redis: PrivateRedis, url: str, rng: random.Random,
                 say: Callable[[str], None]) -> None:
        self.stack, self.redis, self.url, self.rng, self.say = stack, redis, url, rng, say
        self.record = Record()
        self.protected = dict.fromkeys(PROTECTED, "")  # login -> protected since (ISO; "" from the start)

    # -- workload ----------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """One step of the workload, chosen by the seed."""
        roll = self.rng.random()
        if roll < 0.70:
            self._alert(users=1)
        elif roll < 0.78:
            self._alert(users=self.rng.randint(4, 6))  # over the threshold: waits for approval
        elif roll < 0.88 and self.record.payloads:
            self._post("repeat", self.rng.choice(self.record.payloads))
        elif roll < 0.92:
            self._offboard()
        else:
            self._operator()

    def _login(self) -> str:
        """A user of the directory; one time in thirty a protected one, so every run asks for one."""
        if self.rng.random() < 1 / 30:
            return self.rng.choice([*PROTECTED, PROTECTED_LATE])
        return f"user{self.rng.randint(1, USERS):05d}@example.com"

    def _alert(self, *, users: int) -> None:
        payload = {"id": f"soak-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}", "reason": "soak",
                   "targets": [{"type": "user", "login": self._login()} for _ in range(users)]}
        self.record.payloads.append(payload)
        self._post("alert" if users == 1 else "alert_many", payload)

    def _post(self, kind: str, payload: dict[str, Any]) -> None:
        sender = self.rng.choice(sorted(SENDERS))
        self.record.sent[kind] += 1
        try:
            answer = post_signed(f"{self.url}/v1/alerts", SENDERS[sender], payload)
        except requests.RequestException as error:
            self.record.refused[f"{kind} {type(error).__name__}"] += 1
            return
        self._note(kind, answer)

    def _note(self, kind: str, answer: requests.Response) -> None:
        if answer.status_code in (200, 202):
            self.record.answered.setdefault(answer.json()["job_id"], time.monotonic())
        else:
            self.record.refused[f"{kind} {answer.status_code}"] += 1

    def _offboard(self) -> None:
        rows = [{"user_login": self._login()} for _ in range(self.rng.randint(2, 5))]
        self.record.sent["offboarding"] += 1
        try:
            answer = requests.post(f"{self.url}/v1/offboarding?approve=true", json=rows, timeout=10,
                                   headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        except requests.RequestException as error:
            self.record.refused[f"offboarding {type(error).__name__}"] += 1
            return
        self._note("offboarding", answer)

    def _operator(self) -> None:
        """An operator approves (or, one time in four, cancels) the oldest job that waits for approval."""
        try:
            waiting = self.stack.store().list_jobs(state=JobState.AWAITING_APPROVAL.value, limit=5)[0]
        except Exception:  # Redis restarting: the operator looks again later
            return
        if not waiting:
            return
        action = "cancel" if self.rng.random() < 0.25 else "approve"
        self.record.sent[action] += 1
        try:
            requests.post(f"{self.url}/v1/jobs/{waiting[-1].job_id}/{action}", timeout=10,
                          headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        except requests.RequestException:
            self.record.refused[action] += 1

    # -- faults ------------------------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        self.record.faults[fault.kind] += 1
        self.say(f"  {fault.at:6.1f} s  {fault.kind}")
        getattr(self, f"_{fault.kind}")()

    def _worker_kill(self) -> None:
        victim = self.rng.randrange(len(self.stack.workers))
        worker = self.stack.workers.pop(victim)
        worker.kill()
        self.stack.start_worker(concurrency=2, beat=_runs_beat(worker))

    def _pool_kill(self) -> None:
        worker = self.rng.choice(self.stack.workers)
        for pid in _children(worker.proc.pid):
            os.kill(pid, signal.SIGKILL)

    def _redis_restart(self) -> None:
        self.redis.shutdown()
        time.sleep(self.rng.uniform(1, 4))
        self.redis.start()

    def _redis_full(self) -> None:
        self.redis.fill()
        time.sleep(self.rng.uniform(2, 6))
        self.redis.free()

    def _token_expiry(self) -> None:
        self.stack.sim.expire_tokens()

    def _protect_late(self) -> None:
        """Protect one more user while targets naming it wait in the send queue (a 429 pause holds the calls):
        every worker restarts with the longer list, and the re-check right before each call must keep them out.
        Once only; later draws of it restart the workers again, harmlessly."""
        self.stack.sim.add_faults([{"method": "POST", "path": TERMINATE, "status": 429,
                                    "headers": {"retry-after": "3"}, "times": 4}])
        for _ in range(3):
            self._post("alert", {"id": f"soak-late-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}",
                                 "reason": "soak", "targets": [{"type": "user", "login": PROTECTED_LATE}]})
        time.sleep(1.0)  # resolved and queued, waiting out the pause
        self.protected.setdefault(PROTECTED_LATE, utc_now())
        listed = {"BOXCUT_PROTECTED_USERS": ",".join(self.protected)}
        self.stack.extra_env = {**self.stack.extra_env, **listed}
        while self.stack.workers:
            worker = self.stack.workers.pop()
            worker.kill()
        self.stack.start_worker(concurrency=2)
        self.stack.start_worker(concurrency=2, beat=False)

    def _box_503(self) -> None:
        self.stack.sim.add_faults([{"method": "POST", "path": TERMINATE, "status": 503,
                                    "times": self.rng.randint(3, 12)}])

    def _box_429(self) -> None:
        self.stack.sim.add_faults([{"method": "POST", "path": TERMINATE, "status": 429,
                                    "headers": {"retry-after": str(self.rng.randint(1, 3))},
                                    "times": self.rng.randint(3, 10)}])

    def _box_slow(self) -> None:  # past BOXCUT_HTTP_READ_TIMEOUT (2 s in the harness): no answer, sent again
        self.stack.sim.add_faults([{"method": "POST", "path": TERMINATE, "latency_ms": 3000,
                                    "times": self.rng.randint(1, 4)}])

    # -- afterwards --------------------------------------------------------------------------------------------

    def drain(self, *, timeout: float) -> float:
        """Wait until every answered job is final or waits for approval; returns how long that took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if all(_settled(j) for j in self._jobs(self.record.answered).values()):
                break
            time.sleep(1.0)
        return time.monotonic() - started

    def world(self) -> World:
        store = self.stack.store()
        jobs = self._jobs(self._all_job_ids())
        return World(answered=sorted(self.record.answered), jobs=jobs,
                     trails={job_id: store.audit_entries(job_id=job_id) for job_id in jobs},
                     requests=self.stack.sim.requests(), protected=dict(self.protected))

    def _all_job_ids(self) -> list[str]:
        store, ids, cursor = self.stack.store(), [], 0
        while True:
            rows, following = store.list_jobs(limit=1000, cursor=cursor)
            ids += [r.job_id for r in rows]
            if following is None:
                return ids
            cursor = following

    def _jobs(self, job_ids: Any) -> dict[str, Job]:
        store, jobs = self.stack.store(), {}
        for job_id in job_ids:
            try:
                jobs[job_id] = store.load(job_id)
            except Exception:  # missing: the invariants say so
                continue
        return jobs


def run(*, seconds: float, seed: int, rate: float, tmp: Path, kinds: tuple[str, ...] = FAULT_KINDS,
        say: Callable[[str], None] = print) -> list[Violation]:
    """A whole soak: the stack up, the workload and faults for `seconds`, the drain, the invariants, the summary."""
    rng = random.Random(seed)
    faults = schedule(rng, seconds, kinds=kinds)
    redis = PrivateRedis(tmp / "redis")
    redis.start()
    say(f"soak: seed {seed}, {seconds:g} s, {rate:g} steps/s, {len(faults)} faults; replay with --seed {seed}")
    try:
        with running_stack(redis.url, tmp, sim_config=SimConfig(port=0, generate_users=USERS), extra_env=SOAK_ENV,
                           worker=False) as stack:
            stack.start_worker(concurrency=2)
            stack.start_worker(concurrency=2, beat=False)
            soak = Soak(stack, redis, stack.start_intake(), rng, say)
            started = time.monotonic()
            _drive(soak, faults, started, seconds, rate)
            stack.sim.clear_faults()
            drained = soak.drain(timeout=180)
            world = soak.world()
            violations = check(world)
            _summary(say, soak.record, world, drained, violations)
            return violations
    finally:
        redis.shutdown()


def _drive(soak: Soak, faults: list[Fault], started: float, seconds: float, rate: float) -> None:
    """The workload on this thread and the faults on another, so alerts keep coming while Redis is down or a
    worker restarts; returns once both are done."""
    injector = threading.Thread(target=_inject_all, args=(soak, faults, started), name="soak-faults", daemon=True)
    injector.start()
    while time.monotonic() - started < seconds:
        soak.tick()
        time.sleep(max(0.0, 1 / rate - 0.005))
    injector.join()


def _inject_all(soak: Soak, faults: list[Fault], started: float) -> None:
    for fault in faults:
        time.sleep(max(0.0, fault.at - (time.monotonic() - started)))
        try:
            soak.inject(fault)
        except Exception as error:  # a fault that could not be made is said, and the run goes on
            soak.say(f"  fault {fault.kind} could not be made: {type(error).__name__}: {error}")


def _summary(say: Callable[[str], None], record: Record, world: World, drained: float,
             violations: list[Violation]) -> None:
    by_state = Counter((job.source, job.state.value) for job in world.jobs.values())
    say("jobs by source and state: " + ", ".join(f"{s} {st} {n}" for (s, st), n in sorted(by_state.items())))
    say("sent: " + ", ".join(f"{k} {n}" for k, n in sorted(record.sent.items())))
    say("refused: " + (", ".join(f"{k} {n}" for k, n in sorted(record.refused.items())) or "none"))
    say("faults: " + ", ".join(f"{k} {n}" for k, n in sorted(record.faults.items())))
    terminate = [r for r in world.requests if r.get("method") == "POST" and r.get("path") in TERMINATE_PATHS]
    calls = {c.call_id: c for job in world.jobs.values() for c in job.calls if c.attempts}
    again = sum(c.attempts - 1 for c in calls.values())
    say(f"Box saw {len(terminate)} terminate requests for {len(calls)} calls; {again} of them a call sent again "
        f"(its retries, or a resend after its sender died)")
    say(f"longest 202 -> final: {_longest(world):.1f} s; every answered job settled {drained:.1f} s after the "
        f"workload and faults stopped")
    for violation in violations:
        say(f"VIOLATION {violation}")
    say(f"{len(violations)} violations")


def _longest(world: World) -> float:
    from datetime import datetime

    def epoch(iso: str) -> float:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()

    spans = [epoch(j.updated_at) - epoch(j.created_at) for j in world.jobs.values() if j.state.is_final]
    return max(spans, default=0.0)


def _settled(job: Job) -> bool:
    return job.state.is_final or job.state is JobState.AWAITING_APPROVAL


def _runs_beat(worker: ChildProcess) -> bool:
    return "--no-beat" not in " ".join(str(a) for a in worker.proc.args)  # type: ignore[union-attr]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a prefork worker's pool), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found
