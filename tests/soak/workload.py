"""The soak's workload: what comes through boxcut's public doors while the faults fall, chosen by the seed.

HMAC-signed alerts from two named senders, one user each and now and then several (which wait for approval:
BOXCUT_APPROVAL_THRESHOLD is 3), repeats of earlier alerts; Shared Signals SETs, some delivered again; Box Shield
alerts on boxsim's event stream; offboarding as JSON and as CSV files; activity by users Box terminated, for the
watch; an operator who approves, cancels and retries. Protected users are among those named (tests/soak/doors.py
has the doors beyond alerts).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.integration.harness import Stack
from tests.soak import doors
from tests.soak.doors import Answer, SsfTransmitter
from worker.intake.auth import signature
from worker.jobs.model import JobState

USERS = 400
PROTECTED = ("user00001@example.com", "user00002@example.com")
# Protected only from the `protect_late` fault on: the workers restart with it added to the list.
PROTECTED_LATE = "user00003@example.com"
SENDERS = {"siem-a": "soak-secret-for-siem-a-0123456789", "siem-b": "soak-secret-for-siem-b-0123456789"}
OPERATOR_TOKEN = "soak-operator-token-0123456789abcdef"


@dataclass
class Record:
    """What a run sent and saw, for the summary and the invariants."""

    answered: dict[str, float] = field(default_factory=dict)  # job id -> when its first 202 came (monotonic)
    sent: Counter[str] = field(default_factory=Counter)  # what was posted, by kind
    refused: Counter[str] = field(default_factory=Counter)  # answers other than 200/202, by kind and status
    payloads: list[dict[str, Any]] = field(default_factory=list)  # alerts posted, for repeats
    sets: list[str] = field(default_factory=list)  # the jti of each SET answered 202 (its job is found by it)
    shield: list[str] = field(default_factory=list)  # the Box event id of each Shield alert planted
    activity: list[tuple[str, str, float]] = field(default_factory=list)  # (event id, login, epoch) planted
    signed: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)  # alerts as posted, to replay
    event_jobs: dict[str, set[str]] = field(default_factory=dict)  # sender:event id -> the jobs its 2xx named


class Workload:
    """One run's workload against a running stack."""

    def __init__(self, stack: Stack, url: str, seed: int, transmitter: SsfTransmitter) -> None:
        self.stack, self.url, self.seed, self.transmitter = stack, url, seed, transmitter
        self.rng, self.ticks = random.Random(seed), 0
        self.record = Record()
        self.protected = dict.fromkeys(PROTECTED, "")  # login -> protected since (ISO; "" from the start)

    def tick(self) -> None:
        """One step of the workload, chosen by the seed: each step draws from a generator of its own (the seed and
        the step's number), so what one step found (nothing waiting, no SET yet) never shifts the next."""
        self.ticks += 1
        self.rng = random.Random(f"{self.seed}:{self.ticks}")
        roll = self.rng.random()
        if roll < 0.55:
            self._alert(users=1)
        elif roll < 0.62:
            self._alert(users=self.rng.randint(4, 6))  # over the threshold: waits for approval
        elif roll < 0.68 and self.record.payloads:
            self.post("repeat", self.rng.choice(self.record.payloads))
        elif roll < 0.70:
            self._replay()
        elif roll < 0.77:
            self._set()
        elif roll < 0.83:
            self._shield()
        elif roll < 0.86:
            self._offboard()
        elif roll < 0.89:
            self._offboard_file()
        elif roll < 0.92:
            self._activity()
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
        self.post("alert" if users == 1 else "alert_many", payload)

    def post(self, kind: str, payload: dict[str, Any], *, sender: str | None = None) -> None:
        """Post a signed alert as `sender` (one drawn by the seed when not given) and note the answer."""
        sender = sender or self.rng.choice(sorted(SENDERS))
        body = json.dumps(payload).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Boxcut-Timestamp": stamp,
                   "X-Boxcut-Signature": signature(SENDERS[sender], stamp, body)}
        self.record.signed.append((sender, body, headers))
        self._send(kind, sender, body, headers)

    def _replay(self) -> None:
        """The very bytes of an earlier signed alert, signature and timestamp and all, as a replaying attacker or a
        confused proxy sends them."""
        if self.record.signed:
            self._send("replay", *self.rng.choice(self.record.signed[-50:]))

    def _send(self, kind: str, sender: str, body: bytes, headers: dict[str, str]) -> None:
        self.record.sent[kind] += 1
        try:
            answer = requests.post(f"{self.url}/v1/alerts", data=body, headers=headers, timeout=10)
        except requests.RequestException as error:
            self.record.refused[f"{kind} {type(error).__name__}"] += 1
            return
        self._note(kind, answer)
        if answer.status_code in (200, 202):
            event = json.loads(body).get("id")
            self.record.event_jobs.setdefault(f"{sender}:{event}", set()).add(str(answer.json()["job_id"]))

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

    def _set(self) -> None:
        """A SET naming one user; one time in five an earlier one delivered again, as a transmitter does."""
        again = self.record.sets and self.rng.random() < 0.2
        jti = self.rng.choice(self.record.sets) if again else None
        self._door("set_again" if again else "set",
                   doors.post_set(self.url, self.transmitter, self.rng, self._login(), jti=jti))

    def _shield(self) -> None:
        login = self._login()
        try:
            self.record.shield.append(doors.plant_shield_alert(self.stack.sim, self.rng, login))
            self.record.sent["shield"] += 1
        except ValueError:  # a login boxsim does not hold once: nothing planted
            self.record.refused["shield no-user"] += 1

    def _offboard_file(self) -> None:
        logins = [self._login() for _ in range(self.rng.randint(2, 5))]
        self._door("offboarding_file", doors.post_offboarding_file(self.url, OPERATOR_TOKEN, self.rng, logins))

    def _activity(self) -> None:
        """An event on Box by a user an earlier alert named (Box may have terminated their sessions: the watch
        should see it)."""
        alerts = [p for p in self.record.payloads if len(p["targets"]) == 1]
        if not alerts:
            return
        login = str(self.rng.choice(alerts)["targets"][0]["login"])
        event_id = doors.plant_activity(self.stack.sim, self.rng, login)
        self.record.activity.append((event_id, login, time.time()))
        self.record.sent["activity"] += 1

    def _door(self, kind: str, answer: Answer) -> None:
        self.record.sent[kind] += 1
        if not answer.taken:
            self.record.refused[f"{kind} {answer.status or answer.detail}"] += 1
        elif answer.job_id:
            self.record.answered.setdefault(answer.job_id, time.monotonic())
        elif kind == "set" and answer.event_id:
            self.record.sets.append(answer.event_id)

    def _operator(self) -> None:
        """An operator approves (or, one time in four, cancels) the oldest job that waits for approval; one time
        in five, retries a job that failed instead."""
        roll = self.rng.random()
        if roll < 0.2:
            self._retry()
            return
        if roll < 0.35:
            self._release_brake()
            return
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

    def _retry(self) -> None:
        try:
            candidates = doors.retry_candidates(self.stack.store())
        except Exception:  # Redis restarting: the operator looks again later
            return
        if candidates:
            answer = doors.retry_job(self.url, OPERATOR_TOKEN, self.rng.choice(candidates))
            self.record.sent["retry"] += 1
            if not answer.taken:
                self.record.refused[f"retry {answer.status} {answer.detail}"] += 1

    def _release_brake(self) -> None:
        """Release the brake for a source it holds (one the seed picks), as the operator decides an alert flood is
        genuine."""
        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        try:
            status = requests.get(f"{self.url}/v1/brake", headers=headers, timeout=10).json()
        except (requests.RequestException, ValueError):
            return
        held = sorted(s["source"] for s in status.get("sources", []) if s.get("held_jobs"))
        if not held:
            return
        self.record.sent["brake_release"] += 1
        try:
            answer = requests.post(f"{self.url}/v1/brake/release", json={"source": self.rng.choice(held)},
                                   headers=headers, timeout=10)
        except requests.RequestException as error:
            self.record.refused[f"brake_release {type(error).__name__}"] += 1
            return
        if answer.status_code != 200:
            self.record.refused[f"brake_release {answer.status_code}"] += 1
