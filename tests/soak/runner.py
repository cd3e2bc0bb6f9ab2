"""A soak: a mixed workload through boxcut's public doors (tests/soak/workload.py) while faults fall on a schedule
drawn from a seed (tests/soak/faults.py), then the invariants (tests/soak/invariants.py) checked over what was
recorded, and a summary.

The stack is real: a Redis primary and replica behind three Sentinels, each server behind a proxy the soak can cut
(tests/soak/redis_group.py), boxsim over HTTP, prefork workers (one runs beat) and the intake.

The same seed draws the same schedule of faults and the same workload choices; the timing of processes differs
from run to run, so a seed replays the pressure a failure was found under, not every interleaving.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from boxsim import SimConfig
from tests import postgres
from tests.integration.harness import Stack, running_stack, until
from tests.soak import doors
from tests.soak.doors import SsfTransmitter
from tests.soak.faults import KINDS, Fault, Faults, schedule
from tests.soak.invariants import TERMINATE_PATHS, Notifying, Violation, World, check
from tests.soak.receiver import NoticeReceiver, notify_env
from tests.soak.redis_group import ProxiedSentinels
from tests.soak.workload import OPERATOR_TOKEN, PROTECTED, SENDERS, USERS, Record, Workload
from worker.archive.migrate import upgrade
from worker.jobs.brake import BRAKE_ACTOR, ENGAGED_EVENT
from worker.jobs.model import Job, JobState, utc_now

# What the stack runs with, beside the test harness's fast timings.
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
    # The brake across jobs on, with limits a soak's alerts reach now and then (a sender names about 50 users in
    # 30 s), so that jobs are held by it and released by the operator.
    "BOXCUT_BRAKE_USERS": "40",
    "BOXCUT_BRAKE_TOTAL_USERS": "120",
    "BOXCUT_BRAKE_WINDOW_SECONDS": "30",
    # Archiving as fast as it goes: a finished job settles into the archive (PostgreSQL, a database of the
    # soak's own) 2 s after its last change, its packed copy leaves Redis a minute after its creation, and the
    # pass runs every second: every fault lands on moves too, and the invariants read jobs from all three forms.
    "BOXCUT_SETTLE_SECONDS": "2",
    "BOXCUT_ARCHIVE_EVERY_SECONDS": "1",
    "BOXCUT_HOT_DAYS": f"{60 / 86400:.8f}",
}
NOTIFY_SECRET = "soak-notify-secret-0123456789abcdef"


class Soak:
    """One run: the workload, the faults, and what is read back afterwards."""

    def __init__(self, stack: Stack, redis: ProxiedSentinels, receiver: NoticeReceiver, url: str, seed: int,
                 transmitter: SsfTransmitter, say: Callable[[str], None]) -> None:
        self.stack, self.receiver, self.say = stack, receiver, say
        self.workload = Workload(stack, url, seed, transmitter)
        self.faults = Faults(stack, redis, receiver, self.workload, say)
        self.notify_since = ""
        self._event_ids: dict[str, str | None] = {}  # job id -> its event id, as read once
        # Jobs that have settled (hot or archived) change no more: read once, record and trail.
        self._settled: dict[str, tuple[Job, list[dict[str, Any]]]] = {}

    def ready(self) -> None:
        """Wait until the event-stream reader and the notification scanner have taken their first positions (each
        starts from the stream's end: what comes before is never read), and note since when notices are owed."""
        store, cursor = self.stack.store(), f"{self.stack.key_prefix}notify:cursor"
        until(lambda: doors.reader_started(store) and bool(store.redis.exists(cursor)),
              "the event-stream reader and the notification scanner to start", timeout=60)
        self.notify_since = utc_now()

    @property
    def record(self) -> Record:
        return self.workload.record

    # -- afterwards --------------------------------------------------------------------------------------------

    def drain(self, *, timeout: float) -> float:
        """Wait until every job is final or waits for approval (those answered 202 found, those a SET or a Shield
        alert made among them), and every notice owed has come; returns how long that took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self._find_event_jobs()
            answered = self._jobs(self.record.answered)
            if len(answered) == len(self.record.answered) and not self._unsettled() and self._notified():
                break
            time.sleep(1.0)
        return time.monotonic() - started

    def _unsettled(self) -> int:
        """How many jobs are in a state that is neither final nor awaiting approval (from the state indexes)."""
        store = self.stack.store()
        return sum(len(store.list_jobs(state=state.value, limit=1)[0]) for state in JobState
                   if not _settled_state(state))

    def _find_event_jobs(self) -> None:
        """The jobs the SETs answered 202 and the Shield alerts planted made count as answered (their answers name
        none); one not found stands under its event id, so the invariants name it missing."""
        history = self.stack.history()
        for source, events in (("ssf", self.record.sets), ("box-shield", self.record.shield)):
            found = doors.jobs_by_event_id(history, source, self._event_ids)
            for event in events:
                job = found.get(event)
                self.record.answered.pop(f"{source}:{event}", None)
                self.record.answered.setdefault(job or f"{source}:{event}", time.monotonic())

    def _notified(self) -> bool:
        world = World(answered=[], jobs=self._jobs(self._all_job_ids()), trails={}, requests=[],
                      notify=Notifying.of(self.stack.settings(), since=self.notify_since),
                      notices=self.receiver.notices())
        return not any(v.invariant == "notified" for v in check(replace(world, trails=self._trails(world.jobs))))

    def watched(self) -> int:
        """How many planted events the watch recorded (on a user Box had terminated shortly before)."""
        recorded = doors.activity_jobs(self.stack.history())
        return sum(event_id in recorded for event_id, _, _ in self.record.activity)

    def _trails(self, jobs: dict[str, Job]) -> dict[str, list[dict[str, Any]]]:
        history = self.stack.history()
        return {job_id: self._settled[job_id][1] if job_id in self._settled else history.audit(job_id)
                for job_id in jobs}

    def leftovers(self, *, timeout: float) -> dict[str, int]:
        """The work still queued once it has had `timeout` seconds to go: the first look that finds every queue
        empty, or else the look that found the least (beat's periodic tasks come and go within a look or two; work
        left behind stays)."""
        least: dict[str, int] | None = None
        deadline = time.monotonic() + timeout
        while True:
            queued = self._queued()
            if least is None or sum(queued.values()) < sum(least.values()):
                least = queued
            if not any(least.values()) or time.monotonic() > deadline:
                return least
            time.sleep(0.5)

    def _queued(self) -> dict[str, int]:
        """Celery's queues (each priority's list), its unacked set, and the send queue's waiting and in-flight
        targets, the targets and calls senders hold, the jobs with targets open and the jobs runs hold, under the
        stack's key prefix."""
        client, prefix = self.stack.store().redis, self.stack.key_prefix
        counts = {f"celery:{k.decode()[len(prefix):]}": int(client.llen(k))
                  for k in client.scan_iter(match=f"{prefix}boxcut*", count=1000, _type="list")}
        counts["celery:unacked"] = int(client.hlen(f"{prefix}unacked"))
        for key in client.scan_iter(match=f"{prefix}send:*", count=1000, _type="zset"):
            counts[key.decode()[len(prefix):]] = int(client.zcard(key))
        counts["send:taken"] = int(client.hlen(f"{prefix}send:taken"))  # targets a call holds
        for key in client.scan_iter(match=f"{prefix}send:*:owner", count=1000, _type="hash"):
            counts[key.decode()[len(prefix):]] = int(client.hlen(key))  # calls a sender holds
        counts["jobs:running"] = int(client.zcard(f"{prefix}jobs:running"))  # jobs a run holds
        # Jobs with targets waiting or in flight (a job's count stays, at 0, until retention removes the job).
        counts["send:open"] = sum(int(n) > 0 for n in client.hvals(f"{prefix}send:open"))
        return counts

    def world(self, leftovers: dict[str, int]) -> World:
        jobs = self._jobs(self._all_job_ids())
        return World(answered=sorted(self.record.answered), jobs=jobs, trails=self._trails(jobs),
                     requests=self.stack.sim.requests(), protected=dict(self.workload.protected),
                     notify=Notifying.of(self.stack.settings(), since=self.notify_since),
                     notices=self.receiver.notices(), leftovers=leftovers, event_jobs=self.record.event_jobs)

    def _all_job_ids(self) -> list[str]:
        history, ids, cursor = self.stack.history(), [], 0
        while True:
            rows, following = history.list_jobs(limit=1000, cursor=cursor)
            ids += [r.summary.job_id for r in rows]
            if following is None:
                return ids
            cursor = following

    def _jobs(self, job_ids: Any) -> dict[str, Job]:
        history, jobs = self.stack.history(), {}
        for job_id in job_ids:
            if job_id in self._settled:
                jobs[job_id] = self._settled[job_id][0]
                continue
            try:
                evidence = history.evidence(job_id)
                jobs[job_id] = evidence.job
                if evidence.stored != "redis":
                    self._settled[job_id] = (evidence.job, evidence.audit)
            except Exception:  # missing: the invariants say so
                continue
        return jobs


def run(*, seconds: float, seed: int, rate: float, tmp: Path, kinds: tuple[str, ...] = KINDS, every: float = 10.0,
        say: Callable[[str], None] = print) -> list[Violation]:
    """A whole soak: the stack up, the workload and faults for `seconds`, the drain, the invariants, the summary."""
    rng = random.Random(seed)
    faults = schedule(rng, seconds, every=every, kinds=kinds)
    redis = ProxiedSentinels(tmp / "redis")
    receiver = NoticeReceiver(NOTIFY_SECRET)
    transmitter = SsfTransmitter.write(tmp / "ssf")
    chosen = "" if kinds == KINDS else f" --only {','.join(kinds)}"
    say(f"soak: seed {seed}, {seconds:g} s, {rate:g} steps/s, {len(faults)} faults; replay with --seed {seed} "
        f"--seconds {seconds:g} --rate {rate:g} --every {every:g}{chosen}")
    try:
        redis.start()
        env = {**SOAK_ENV, **doors.doors_env(transmitter), **notify_env(receiver.start(), NOTIFY_SECRET)}
        with postgres.databases() as archives, running_stack(
                redis.url, tmp, sim_config=SimConfig(port=0, generate_users=USERS),
                extra_env={**env, "BOXCUT_ARCHIVE_URL": next(archives)}, worker=False) as stack:
            upgrade(stack.settings().archive_location)
            stack.start_worker(concurrency=2)
            stack.start_worker(concurrency=2, beat=False)
            soak = Soak(stack, redis, receiver, stack.start_intake(), seed, transmitter, say)
            soak.ready()
            started = time.monotonic()
            _drive(soak, faults, started, seconds, rate)
            stack.sim.clear_faults()
            drained = soak.drain(timeout=180)
            world = soak.world(soak.leftovers(timeout=60))
            violations = check(world)
            _summary(say, soak, world, drained, violations)
            return violations
    finally:
        receiver.stop()
        redis.stop()


def _drive(soak: Soak, faults: list[Fault], started: float, seconds: float, rate: float) -> None:
    """The workload on this thread and the faults on others, so alerts keep coming while Redis is down or a
    worker restarts; returns once both are done."""
    injector = threading.Thread(target=soak.faults.run, args=(faults, started), name="soak-faults", daemon=True)
    injector.start()
    while time.monotonic() - started < seconds:
        soak.workload.tick()
        time.sleep(max(0.0, 1 / rate - 0.005))
    injector.join()


def _summary(say: Callable[[str], None], soak: Soak, world: World, drained: float,
             violations: list[Violation]) -> None:
    record = soak.record
    by_state = Counter((job.source, job.state.value) for job in world.jobs.values())
    say("jobs by source and state: " + ", ".join(f"{s} {st} {n}" for (s, st), n in sorted(by_state.items())))
    say("sent: " + ", ".join(f"{k} {n}" for k, n in sorted(record.sent.items())))
    say("refused: " + (", ".join(f"{k} {n}" for k, n in sorted(record.refused.items())) or "none"))
    say("faults: " + ", ".join(f"{k} {n}" for k, n in sorted(soak.faults.made.items()))
        + (f"; could not be made: {dict(soak.faults.failed)}" if soak.faults.failed else ""))
    if soak.faults.promotions:
        say(f"failovers: replica promoted {min(soak.faults.promotions):.1f}..{max(soak.faults.promotions):.1f} s "
            "after the primary's SIGKILL")
    terminate = [r for r in world.requests if r.get("method") == "POST" and r.get("path") in TERMINATE_PATHS]
    calls = {c.call_id: c for job in world.jobs.values() for c in job.calls if c.attempts}
    again = sum(c.attempts - 1 for c in calls.values())
    repeats = Counter((r["path"], tuple(sorted(map(str, (r.get("body") or {}).get("user_ids") or ()))))
                      for r in terminate)
    say(f"Box saw {len(terminate)} terminate requests for {len(calls)} calls; {again} of them a call sent again "
        f"(its retries, or a resend after its sender died); {sum(n - 1 for n in repeats.values())} named the same "
        "ids as an earlier one")
    posts = Counter(str((n.get("body") or {}).get("id")) for n in world.notices)
    refused = sum(n["status"] != 200 for n in world.notices)
    say(f"notices: {len(world.notices)} posts of {len(posts)} notices, {refused} refused by the receiver, "
        f"{sum(c - 1 for c in posts.values())} posted again")
    engaged = sum(e.get("event") == ENGAGED_EVENT for trail in world.trails.values() for e in trail)
    held = sum(any(e.get("event") == "state" and (e.get("data") or {}).get("actor") == BRAKE_ACTOR for e in trail)
               for trail in world.trails.values())
    say(f"the brake: engaged {engaged} times, held {held} jobs; the operator released it "
        f"{record.sent['brake_release']} times")
    watched = soak.watched()
    say(f"the watch: {len(record.activity)} events planted by users an alert named, {watched} recorded as activity "
        "after termination")
    say(f"longest 202 -> final: {_longest(world):.1f} s; every answered job settled {drained:.1f} s after the "
        f"workload and faults stopped")
    for violation in violations:
        say(f"VIOLATION {violation}")
    say(f"{len(violations)} violations")


def _longest(world: World) -> float:
    """The longest time from a job's creation to its last move into a final state, from the trails."""
    def epoch(iso: str) -> float:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()

    spans = []
    for job_id, job in world.jobs.items():
        ends = [e["at"] for e in world.trails.get(job_id, []) if e.get("event") == "state" and job.state.is_final]
        if ends:
            spans.append(epoch(ends[-1]) - epoch(job.created_at))
    return max(spans, default=0.0)


def _settled_state(state: JobState) -> bool:
    return state.is_final or state is JobState.AWAITING_APPROVAL
