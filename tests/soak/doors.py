"""The soak's further doors into boxcut, beside runner.py's signed alerts, JSON offboarding and approvals: Shared
Signals SETs, Box Shield alerts on Box's event stream, offboarding files, an operator's retry, and activity by a
terminated user for the watch to find.

Each door takes what it needs (the intake's URL, boxsim, a `random.Random`, a login) and returns what the soak
records. A door over HTTP returns an `Answer` (the job its answer named, or the event id the job can be found by
later); a door on Box's event stream returns the event id it planted. The stack must run with `doors_env`.

How each produced job is found:

    SET             source "ssf", `source_event_id` the SET's jti (its 202 names no job): `jobs_by_event_id`
    Shield alert    source "box-shield", requested_by "box-event-stream", `source_event_id` the Box event id:
                    `jobs_by_event_id`, once the reader's next pass has read it
    offboarding     the job id its 202 (or, for an Idempotency-Key seen before, 200) names
    retry           the job id retried (its 200 names it)
    activity        no job is made: each job watching the user records the event in its target's
                    `activity_after` (`P job:{id}:activity`, field `{index}:{event id}`), is listed under
                    `active-after`, and gets an audit entry `activity_after`: `activity_jobs`
"""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

import requests

from boxsim import BoxSim
from tests.ssf_tokens import (
    CREDENTIAL_CHANGE,
    SESSION_REVOKED,
    SigningKey,
    Transmitter,
    ec_key,
    set_claims,
    sign,
)
from worker.errors import JobNotFound
from worker.event_stream.cursor import StreamCursor
from worker.event_stream.reader import REQUESTED_BY as EVENT_STREAM_REQUESTER
from worker.event_stream.shield import SOURCE as SHIELD_SOURCE
from worker.jobs.history import JobHistory, Listed
from worker.jobs.model import JobState
from worker.jobs.offboarding import OFFBOARDING_SOURCE
from worker.jobs.store import ACTIVE_AFTER, JobStore
from worker.ssf.events import SOURCE as SSF_SOURCE

__all__ = ["ACTIVITY_TYPES", "DOORS_ENV", "EVENT_STREAM_REQUESTER", "OFFBOARDING_SOURCE", "SET_EVENTS",
           "SHIELD_ALERTS", "SHIELD_SOURCE", "SSF_SOURCE", "Answer", "SsfTransmitter", "activity_jobs", "doors_env",
           "jobs_by_event_id", "plant_activity", "plant_shield_alert", "post_offboarding_file", "post_set",
           "reader_started", "retry_candidates", "retry_job"]

# What the stack runs with for these doors, beside the soak's own settings. The event-stream reader is off in the
# test harness (FAST_ENV); here it reads twice a second, so an alert becomes a job, and activity is recorded,
# within a second or so of being planted. The watch (on by default, 30 minutes) is kept short: a soak's events
# are all "now", and a shorter watch keeps the `P watch` set of a long soak small.
DOORS_ENV = {
    "BOXCUT_EVENTS_POLL_SECONDS": "0.5",
    "BOXCUT_WATCH_MINUTES": "10",
}

# The SET event types a door sends, with their weights: session-revoked ends the subject's sessions (a job that
# acts), credential-change does not (a job `recorded`, calling nothing).
SET_EVENTS = {SESSION_REVOKED: 4, CREDENTIAL_CHANGE: 1}

# What the default BOXCUT_SHIELD_RULES table makes of each alert a door plants: (rule_category, priority).
SHIELD_ALERTS = {
    "terminate": ("Ransomware Activity", "high"),  # rule 1
    "approve": ("Suspicious Sessions", "medium"),  # rule 3: waits for approval
    "record": ("Anomalous Download", "low"),  # rule 7: `recorded`, calls nothing
}

# Events by a user that the watch records (any type but SHIELD_ALERT counts).
ACTIVITY_TYPES = ("LOGIN", "DOWNLOAD", "UPLOAD", "PREVIEW")

_FIRST_JOB = re.compile(r"\(job (j-[0-9a-f]{16})\)")
_TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    """A door's answer as the soak records it."""

    status: int  # the HTTP status; 0 when none came (`detail` then names the exception)
    job_id: str | None = None  # the job the answer names (see each door)
    event_id: str | None = None  # what the job can be found by later (`jobs_by_event_id`), when it has one
    detail: str = ""  # the error's code (`err` for a SET), or what a retry did

    @property
    def taken(self) -> bool:
        """Whether boxcut took the request (200 or 202): a job exists or was found."""
        return self.status in (200, 202)


# -- Shared Signals --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SsfTransmitter:
    """A test transmitter (an EC key) and the BOXCUT_SSF_TRANSMITTERS file that names it."""

    key: SigningKey
    path: Path
    issuer: str
    audience: str

    @classmethod
    def write(cls, directory: Path) -> SsfTransmitter:
        """A new key, its transmitters file written in `directory` (`ssf-transmitters.json`)."""
        transmitter = Transmitter([ec_key("soak-ec-1")])
        directory.mkdir(parents=True, exist_ok=True)
        return cls(transmitter.keys[0], transmitter.write(directory), transmitter.issuer, transmitter.audience)

    @property
    def env(self) -> dict[str, str]:
        return {"BOXCUT_SSF_TRANSMITTERS": str(self.path)}


def doors_env(transmitter: SsfTransmitter) -> dict[str, str]:
    """Every setting the doors need: DOORS_ENV and the transmitters file."""
    return {**DOORS_ENV, **transmitter.env}


def post_set(url: str, transmitter: SsfTransmitter, rng: Random, login: str, *, event: str | None = None,
             jti: str | None = None) -> Answer:
    """Push one signed SET naming `login` by e-mail (`sub_id` format email) to `{url}/v1/ssf/events`; the event
    type drawn from SET_EVENTS unless given. `event_id` is its jti, by which its job is found (source "ssf"); give
    an earlier answer's `jti` to deliver it again, as a transmitter does after a 503 or no answer.

    The answers (RFC 8935): 202 with an empty body, the SET taken (a job acting or `recorded`; the answer names
    none, so `job_id` is None); 400 `{"err", "description"}`, nothing made (a replayed jti's description names the
    first delivery's job: `job_id` then holds it); 503 in the intake's error shape, the SET not kept (Redis down
    or full): the transmitter would send it again as a new delivery; 0, no answer."""
    chosen = event or rng.choices(list(SET_EVENTS), weights=list(SET_EVENTS.values()))[0]
    jti = jti or f"soak-set-{uuid.UUID(int=rng.getrandbits(128)).hex}"
    claims = set_claims(login, event=chosen, issuer=transmitter.issuer, audience=transmitter.audience, jti=jti,
                        event_claims=_event_claims(chosen))
    try:
        answer = requests.post(f"{url}/v1/ssf/events", data=sign(claims, transmitter.key).encode(), timeout=_TIMEOUT,
                               headers={"Content-Type": "application/secevent+jwt"})
    except requests.RequestException as error:
        return Answer(0, event_id=jti, detail=type(error).__name__)
    if answer.status_code == 202:
        return Answer(202, event_id=jti)
    body = _json(answer)
    description = str(body.get("description", ""))
    first = _FIRST_JOB.search(description)
    return Answer(answer.status_code, job_id=first.group(1) if first else None, event_id=jti,
                  detail=str(body.get("err") or _error_code(body) or description[:100]))


def _event_claims(event: str) -> dict[str, Any]:
    if event == CREDENTIAL_CHANGE:
        return {"event_timestamp": int(time.time()), "change_type": "update", "credential_type": "password"}
    return {"event_timestamp": int(time.time()), "initiating_entity": "policy", "reason_admin": {"en": "soak"}}


# -- Box's event stream: Shield alerts, activity after termination ---------------------------------------------


def reader_started(store: JobStore) -> bool:
    """Whether the event-stream reader has taken its first position. Its first pass starts from `now`: an event
    planted before that is never read, so the soak waits for this before planting any."""
    return StreamCursor(store.redis, key_prefix=store.prefix).position() is not None


def plant_shield_alert(sim: BoxSim, rng: Random, login: str, *, action: str | None = None) -> str:
    """Log a SHIELD_ALERT naming `login`'s Box user (by id, as Box does) on boxsim's event stream; `action` (a key
    of SHIELD_ALERTS: what the default rule table decides) drawn at random unless given. Returns the Box event
    id; the reader's next pass makes the job, found by it (source "box-shield")."""
    category, priority = SHIELD_ALERTS[action or rng.choice(sorted(SHIELD_ALERTS))]
    event_id = f"soak-shield-{uuid.UUID(int=rng.getrandbits(128)).hex}"
    (event,) = sim.add_events([{"event_type": "SHIELD_ALERT", "event_id": event_id, "user_id": _user_id(sim, login),
                                "rule_category": category, "priority": priority,
                                "risk_score": rng.randint(50, 99)}])
    return str(event["event_id"])


def plant_activity(sim: BoxSim, rng: Random, login: str, *, event_type: str | None = None) -> str:
    """Log an event by `login`'s Box user, created now, on boxsim's event stream; its type drawn from
    ACTIVITY_TYPES unless given. Returns its Box event id.

    Boxcut makes no job of it. Every job whose target Box accepted for that user within BOXCUT_WATCH_MINUTES
    before the event records it in that target's `activity_after` (once per event id), is flagged
    `active_after` and listed under `active-after`, with an audit entry `activity_after`: `activity_jobs`. An
    event by a user no job watches, or created before Box accepted their termination, is recorded nowhere."""
    event_id = f"soak-activity-{uuid.UUID(int=rng.getrandbits(128)).hex}"
    (event,) = sim.add_events([{"event_type": event_type or rng.choice(ACTIVITY_TYPES), "event_id": event_id,
                                "user_id": _user_id(sim, login), "session_id": f"soak-{rng.randrange(10**6)}",
                                "ip_address": f"203.0.113.{rng.randint(1, 254)}"}])
    return str(event["event_id"])


def _user_id(sim: BoxSim, login: str) -> str:
    users = sim.directory.users_with_login(login)
    if len(users) != 1:
        raise ValueError(f"boxsim has {len(users)} users with login {login!r}, not one")
    return users[0].id


# -- the operator: offboarding files and retries ---------------------------------------------------------------


def post_offboarding_file(url: str, token: str, rng: Random, logins: Iterable[str], *, approve: bool = True,
                          idempotency_key: str | None = None) -> Answer:
    """POST an offboarding CSV file (`user_login,reason`, one row a login; now and then a row repeated, which
    boxcut merges) to `{url}/v1/offboarding` as operator `token`, approved as submitted unless told otherwise
    (more than BOXCUT_APPROVAL_THRESHOLD users would wait). The answers: 202 and the job (`job_id`); 200 and the
    first job for an Idempotency-Key submitted before; 401/403 the token; 415 the media type; 422 `invalid_file`
    (nothing submitted); 503 Redis or the broker; 0, no answer."""
    rows = [[login, "soak offboarding"] for login in logins]
    if rows and rng.random() < 0.2:
        rows.insert(rng.randrange(len(rows) + 1), list(rng.choice(rows)))
    body = io.StringIO()
    csv.writer(body, lineterminator="\n").writerows([["user_login", "reason"], *rows])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv; charset=utf-8",
               **({"Idempotency-Key": idempotency_key} if idempotency_key else {})}
    params = {"reason": "soak offboarding file", **({"approve": "true"} if approve else {})}
    try:
        answer = requests.post(f"{url}/v1/offboarding", params=params, data=body.getvalue().encode(),
                               headers=headers, timeout=_TIMEOUT)
    except requests.RequestException as error:
        return Answer(0, detail=type(error).__name__)
    body_json = _json(answer)
    if answer.status_code in (200, 202):
        return Answer(answer.status_code, job_id=str(body_json["job_id"]),
                      detail="duplicate" if body_json.get("duplicate") else "")
    return Answer(answer.status_code, detail=_error_code(body_json))


def retry_job(url: str, token: str, job_id: str) -> Answer:
    """An operator's `POST /v1/jobs/{id}/retry`. It sends again only the targets that ended `failed` or `dead`
    of a `failed` or `partial` job (200, `detail` "retried N"; the job goes back to resolving and on); a queued,
    resolving or terminating job no worker holds is enqueued again (200, "restarted"). 409 `nothing_to_retry` for
    a job with no failed or dead target (a succeeded one, say), 409 `not_retryable` for one awaiting approval, one
    a worker runs now, or a final one other than failed or partial holding such targets; 404 no such job."""
    try:
        answer = requests.post(f"{url}/v1/jobs/{job_id}/retry", headers={"Authorization": f"Bearer {token}"},
                               timeout=_TIMEOUT)
    except requests.RequestException as error:
        return Answer(0, job_id=job_id, detail=type(error).__name__)
    body = _json(answer)
    if answer.status_code == 200:
        done = "restarted" if body.get("restarted") else f"retried {body.get('retried', 0)}"
        return Answer(200, job_id=job_id, detail=done)
    return Answer(answer.status_code, job_id=job_id, detail=_error_code(body))


def retry_candidates(store: JobStore, *, limit: int = 50) -> list[str]:
    """Jobs a retry has work in, newest first: `failed`, `partial`, and those holding dead targets."""
    found: dict[str, None] = {}
    for state in (JobState.FAILED.value, JobState.PARTIAL.value, "dead"):
        found.update(dict.fromkeys(row.job_id for row in store.list_jobs(state=state, limit=limit)[0]))
    return list(found)


# -- finding what the doors made -------------------------------------------------------------------------------


def jobs_by_event_id(history: JobHistory, source: str, known: dict[str, str | None]) -> dict[str, str]:
    """Event id (`source_event_id`: a SET's jti, a Box event id) -> job id, for every job of `source`, wherever it
    is kept (Redis or the archive). `known` holds the event ids already read, by job id (an event id never
    changes), so a drain that asks every second reads each job once."""
    for row in _all(history, None, source=source):
        job_id = row.summary.job_id
        if job_id not in known:
            try:
                known[job_id] = history.find(job_id).job.source_event_id
            except JobNotFound:  # listed a moment ago, gone since: looked for again next time
                continue
    found = {}
    for row in _all(history, None, source=source):
        event = known.get(row.summary.job_id)
        if event:
            found[event] = row.summary.job_id
    return found


def activity_jobs(history: JobHistory) -> dict[str, list[str]]:
    """Box event id -> the jobs that recorded it as activity after termination, for every event recorded."""
    found: dict[str, list[str]] = {}
    for row in _all(history, ACTIVE_AFTER):
        job = history.find(row.summary.job_id).job
        for events in job.activity_after.values():
            for event in events:
                found.setdefault(str(event.get("event_id", "")), []).append(job.job_id)
    return found


def _all(history: JobHistory, state: str | None, *, source: str | None = None) -> list[Listed]:
    rows: list[Listed] = []
    cursor = 0
    while True:
        page, following = history.list_jobs(state=state, source=source, limit=1000, cursor=cursor)
        rows += page
        if following is None:
            return rows
        cursor = following


def _json(answer: requests.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_code(body: dict[str, Any]) -> str:
    error = body.get("error")
    return str(error.get("code", "")) if isinstance(error, dict) else ""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
