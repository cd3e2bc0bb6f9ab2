"""The soak's faults: a schedule drawn from the seed, and how each is made.

Each fault runs on a thread of its own, so that faults overlap as incidents bring them: a worker killed while
Redis is full, a failover during a 429 pause. Faults on Redis take turns among themselves (each acts on the
primary the Sentinels name when it starts), as do faults on the workers and on the intake.

Every parameter of a fault (how long, how many, which worker) comes from the schedule, drawn up front, so a seed
replays the same faults at the same moments; the timing of processes differs from run to run.
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
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.drills.processes import children
from tests.integration.harness import ChildProcess, Stack
from tests.soak.receiver import NoticeReceiver
from tests.soak.redis_group import ProxiedSentinels
from tests.soak.workload import PROTECTED_LATE, Workload
from worker.jobs.model import utc_now

KINDS = ("worker_kill", "pool_kill", "intake_kill", "redis_restart", "redis_full", "redis_drop", "failover",
         "box_503", "box_429", "box_slow", "box_slow_reads", "token_expiry", "protect_late", "receiver_down",
         "receiver_slow")
TERMINATE = "/2.0/users/terminate_sessions"


@dataclass(frozen=True)
class Fault:
    """One fault of the schedule: when (seconds into the run), what, and its size (0..1: how long, how many)."""

    at: float
    kind: str
    size: float

    def scaled(self, low: float, high: float) -> float:
        return low + (high - low) * self.size

    def count(self, low: int, high: int) -> int:
        return low + int((high - low + 1) * self.size * 0.9999)


def schedule(rng: random.Random, seconds: float, *, every: float = 10.0,
             kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """The faults of a run: one about every `every` seconds (jittered), of `kinds` drawn from the seed, none in the
    first or last few seconds."""
    faults, at = [], 5.0
    while at < seconds - 5:
        faults.append(Fault(round(at, 1), rng.choice(kinds), round(rng.random(), 3)))
        at += every * rng.uniform(0.5, 1.5)
    return faults


class Faults:
    """Makes the faults of a schedule against a running stack, its Redis group and its intake."""

    def __init__(self, stack: Stack, redis: ProxiedSentinels, receiver: NoticeReceiver, workload: Workload,
                 say: Callable[[str], None]) -> None:
        self.stack, self.redis, self.receiver, self.workload, self.say = stack, redis, receiver, workload, say
        self.made: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.promotions: list[float] = []  # seconds from a primary's SIGKILL to the replica's promotion
        self._workers = threading.Lock()
        self._intake = threading.Lock()
        self._threads: list[threading.Thread] = []

    def run(self, faults: list[Fault], started: float) -> None:
        """Start each fault on its own thread at its moment; return once every one has finished."""
        for fault in faults:
            time.sleep(max(0.0, fault.at - (time.monotonic() - started)))
            thread = threading.Thread(target=self._make, args=(fault,), name=f"soak-{fault.kind}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for thread in self._threads:
            thread.join()

    def _make(self, fault: Fault) -> None:
        self.made[fault.kind] += 1
        self.say(f"  {fault.at:6.1f} s  {fault.kind} ({fault.size:.2f})")
        try:
            getattr(self, f"_{fault.kind}")(fault)
        except Exception as error:  # a fault that could not be made is said, and the run goes on
            self.failed[fault.kind] += 1
            self.say(f"  {fault.at:6.1f} s  {fault.kind} could not be made: {type(error).__name__}: {error}")

    # -- processes ---------------------------------------------------------------------------------------------

    def _worker_kill(self, fault: Fault) -> None:
        with self._workers:
            worker = self.stack.workers.pop(fault.count(0, len(self.stack.workers) - 1))
            worker.kill()
            self.stack.start_worker(concurrency=2, beat=_runs_beat(worker))

    def _pool_kill(self, fault: Fault) -> None:
        with self._workers:
            worker = self.stack.workers[fault.count(0, len(self.stack.workers) - 1)]
            for pid in children(worker.proc.pid):  # its pool and its embedded beat
                os.kill(pid, signal.SIGKILL)

    def _intake_kill(self, fault: Fault) -> None:
        """SIGKILL the intake mid-storm and start it again on the same port after a moment, as a supervisor
        would; alerts meanwhile meet a refused connection, as a SIEM does during an outage."""
        with self._intake:
            intake = next(s for s in self.stack.servers if _is_intake(s) and s.proc.poll() is None)
            intake.kill()
            time.sleep(fault.scaled(0.5, 3))
            self.stack.start_intake(port=urlsplit(self.workload.url).port)

    def _protect_late(self, fault: Fault) -> None:
        """Protect one more user while targets naming it wait in the send queue (a 429 pause holds the calls):
        every worker restarts with the longer list, and the re-check right before each call must keep them out.
        Later draws of it restart the workers again, harmlessly."""
        self.stack.sim.add_faults([{"method": "POST", "path": TERMINATE, "status": 429,
                                    "headers": {"retry-after": "3"}, "times": 4}])
        for n in range(3):
            self.workload.post("alert", {"id": f"soak-late-{uuid.uuid4().hex[:16]}", "reason": "soak",
                                         "targets": [{"type": "user", "login": PROTECTED_LATE}]},
                               sender="siem-a" if n % 2 else "siem-b")
        time.sleep(1.0)  # resolved and queued, waiting out the pause
        with self._workers:
            listed = {"BOXCUT_PROTECTED_USERS": ",".join([*self.workload.protected, PROTECTED_LATE])}
            self.stack.extra_env = {**self.stack.extra_env, **listed}
            while self.stack.workers:
                self.stack.workers.pop().kill()
            # Since now: no worker that could send without knowing is left.
            self.workload.protected.setdefault(PROTECTED_LATE, utc_now())
            self.stack.start_worker(concurrency=2)
            self.stack.start_worker(concurrency=2, beat=False)

    # -- Redis -------------------------------------------------------------------------------------------------

    def _redis_restart(self, fault: Fault) -> None:
        self.redis.restart(down=fault.scaled(0.5, 3))

    def _redis_full(self, fault: Fault) -> None:
        self.redis.fill(seconds=fault.scaled(2, 8))

    def _redis_drop(self, fault: Fault) -> None:
        self.redis.drop(seconds=fault.scaled(1, 4))

    def _failover(self, fault: Fault) -> None:
        self.promotions.append(self.redis.failover())

    # -- Box ---------------------------------------------------------------------------------------------------

    def _box_503(self, fault: Fault) -> None:
        self.stack.sim.add_faults([{"method": "POST", "path": TERMINATE, "status": 503, "times": fault.count(3, 12)}])

    def _box_429(self, fault: Fault) -> None:
        self.stack.sim.add_faults([{"method": "POST", "path": TERMINATE, "status": 429,
                                    "headers": {"retry-after": str(fault.count(1, 3))}, "times": fault.count(3, 10)}])

    def _box_slow(self, fault: Fault) -> None:  # past BOXCUT_HTTP_READ_TIMEOUT (2 s in the harness): sent again
        self.stack.sim.add_faults([{"method": "POST", "path": TERMINATE, "latency_ms": 3000,
                                    "times": fault.count(1, 4)}])

    def _box_slow_reads(self, fault: Fault) -> None:
        """Box slow to answer the directory's reads (under the read timeout): jobs spend seconds resolving, so a
        process killed meanwhile dies in the middle of a task."""
        self.stack.sim.add_faults([{"method": "GET", "path": "/2.0/users*", "latency_ms": 1500,
                                    "times": fault.count(10, 60)}])

    def _token_expiry(self, fault: Fault) -> None:
        self.stack.sim.expire_tokens()

    # -- the notification receiver -----------------------------------------------------------------------------

    def _receiver_down(self, fault: Fault) -> None:
        """The receiver answers 500 for some seconds: far fewer than the soak's notice attempts span (63.5 s), so a
        notice refused throughout is still delivered by a later attempt."""
        self.receiver.refuse(seconds=fault.scaled(1, 8))

    def _receiver_slow(self, fault: Fault) -> None:
        """The receiver takes 1.5 s over each answer (within boxcut's notification timeout) for a while: notification
        tasks run that long, so a process killed meanwhile dies in the middle of one."""
        self.receiver.slow(seconds=fault.scaled(5, 20), delay=1.5)


def _is_intake(process: ChildProcess) -> bool:
    return "intake" in " ".join(str(a) for a in process.proc.args)  # type: ignore[union-attr]


def _runs_beat(worker: ChildProcess) -> bool:
    return "--no-beat" not in " ".join(str(a) for a in worker.proc.args)  # type: ignore[union-attr]
