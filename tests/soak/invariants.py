"""The invariants a soak checks afterwards, from what boxsim saw, the job records, their audit trails and the
notifications its receiver got.

Each check is a plain function of recorded facts, so a unit test can hand it a world with one planted fault and
see it named. A violation names the job (or the request) and the invariant it breaks.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from config import Settings, defaults
from config.notify_urls import NotifyURL
from worker.jobs.brake import BRAKE_ACTOR, ENGAGED_EVENT
from worker.jobs.model import Call, CallState, Job, JobState, TargetStatus

TERMINATE_PATHS = {"/2.0/users/terminate_sessions": "user_ids", "/2.0/groups/terminate_sessions": "group_ids"}
# A cancel or a hold that lands between the sender's last check and its request leaving is not a fault: that
# moment is milliseconds; a call sent seconds after a cancel is.
HOLD_SLACK_SECONDS = 0.5


@dataclass(frozen=True)
class Violation:
    """One invariant that does not hold: which, about what, and the facts that show it."""

    invariant: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.subject}: {self.detail}"


@dataclass(frozen=True)
class Notifying:
    """What the settings say about notifications (docs/notifications.md): the receivers of BOXCUT_NOTIFY_URLS
    that take boxcut's own JSON, each named by its URL (as the soak's receiver names itself in what it records),
    and BOXCUT_NOTIFY_ATTEMPTS. `since` (ISO; "" from the start): changes of state before it are not owed a
    notice (the scanner's first pass starts at the audit stream's end; a soak waits for that pass and notes the
    time)."""

    receivers: tuple[str, ...] = ()
    attempts: int = defaults.NOTIFY_ATTEMPTS
    since: str = ""

    @classmethod
    def of(cls, settings: Settings, *, since: str = "") -> Notifying:
        """From loaded settings: no receivers when notifications are off (no URLs, or a poll of 0)."""
        urls = tuple(u.url for u in settings.notify_urls if not u.slack) if settings.notifies else ()
        return cls(receivers=urls, attempts=settings.notify_attempts, since=since)


@dataclass(frozen=True)
class World:
    """What a soak recorded: the job ids its 202s named, every job record, each job's audit trail, and
    boxsim's request log."""

    answered: list[str]
    jobs: Mapping[str, Job]
    trails: Mapping[str, list[dict[str, Any]]]
    requests: list[dict[str, Any]]
    # Logins BOXCUT_PROTECTED_USERS lists, each with since when (ISO; "" from the start): no call that started
    # after that may carry them to Box.
    protected: Mapping[str, str] = field(default_factory=dict)
    # What the settings say about notifications (None: the soak does not check them), and every post its
    # receivers got (tests/soak/receiver.py: `receiver`, `status` answered, `signed`, `body`).
    notify: Notifying | None = None
    notices: list[dict[str, Any]] = field(default_factory=list)
    # Work still queued once the faults stopped and the jobs settled, by queue (a Celery queue, the unacked set,
    # the send queue's waiting or in-flight targets), at its lowest over a few looks: beat's periodic tasks come
    # and go, work left behind stays.
    leftovers: Mapping[str, int] = field(default_factory=dict)
    # Each alert's sender and event id -> the jobs its answers (202, or 200 for one seen before) named.
    event_jobs: Mapping[str, set[str]] = field(default_factory=dict)


def check(world: World) -> list[Violation]:
    """Every invariant, in order; an empty list when all hold."""
    return [*answered_jobs_settle(world), *nothing_sent_that_was_held(world), *accepted_ids_were_allowed(world),
            *requests_are_counted(world), *state_changes_are_audited(world), *jobs_are_notified(world),
            *queues_are_drained(world), *one_job_per_event(world)]


def one_job_per_event(world: World) -> Iterable[Violation]:
    """An alert posted again (a repeat, or its very bytes replayed) names the job the first made: one event from
    one sender is one job."""
    for event, jobs in sorted(world.event_jobs.items()):
        if len(jobs) > 1:
            yield Violation("one-job-per-event", event,
                            f"its answers named {len(jobs)} jobs: {', '.join(sorted(jobs))}")


def queues_are_drained(world: World) -> Iterable[Violation]:
    """No queue is left with work once the faults stop: nothing waits in a Celery queue or the send queue, and
    nothing is in flight."""
    for queue, left in sorted(world.leftovers.items()):
        if left:
            yield Violation("queue-drained", queue, f"{left} left after the faults stopped and the jobs settled")


def answered_jobs_settle(world: World) -> Iterable[Violation]:
    """Every alert answered 202 has a job; and every job (whether its answer arrived or not: an intake killed
    after the record was written) reached a final state, or waits for approval with a reason."""
    for job_id in sorted(set(world.answered) - set(world.jobs)):
        yield Violation("answered-has-job", job_id, "answered 202, but no job record exists")
    for job_id, job in sorted(world.jobs.items()):
        if job.state is JobState.AWAITING_APPROVAL:
            if not (job.approval and job.approval.reasons):
                yield Violation("waits-with-reason", job_id, "awaiting_approval with no approval reason")
        elif not job.state.is_final:
            yield Violation("job-settles", job_id, f"still {job.state.value} after the faults stopped and the drain")


def nothing_sent_that_was_held(world: World) -> Iterable[Violation]:
    """No target was sent that was protected, cancelled or held when it was sent, judged by the time of the
    request Box accepted (boxsim's log), not of the call's first round: a call sent again keeps its start.

    - A request Box accepted carries no id of a login protected before it (from the start, or since the list
      grew), and no target marked protected rode an accepted call.
    - An accepted target's accepting request came neither after its job was cancelled nor while its job waited
      for approval (policy or the brake), allowing HOLD_SLACK_SECONDS for the moment between the sender's last
      check and its request leaving."""
    login_of = {t.box_id: (t.login or "").lower() for job in world.jobs.values() for t in job.targets if t.box_id}
    for request in _terminate_requests(world.requests):
        if request.get("status") != 202:
            continue
        for box_id in _ids(request):
            since = world.protected.get(login_of.get(box_id, ""))
            if since is not None and (not since or float(request["time"]) > _epoch(since)):
                yield Violation("protected-never-sent", f"request at {request['time']:.3f}",
                                f"Box accepted {login_of[box_id]} (id {box_id}), protected since "
                                f"{since or 'the start'}")
    accepting = _accepting_requests(world)
    for job_id, job in sorted(world.jobs.items()):
        calls = {c.call_id: c for c in job.calls}
        holds = _holds(world.trails.get(job_id, []))
        for index, target in enumerate(job.targets):
            accepted = [calls[c] for c in target.call_ids if c in calls and calls[c].http_status == 202]
            if target.status is TargetStatus.PROTECTED and accepted:
                yield Violation("protected-never-sent", f"{job_id}:{index}",
                                f"{target.login} is protected, but call {accepted[0].call_id} carried it to Box")
            if target.status is not TargetStatus.ACCEPTED or not target.call_ids:
                continue
            sent = accepting.get(target.call_ids[-1])
            for kind, begun, ended in holds:
                if sent is not None and begun + HOLD_SLACK_SECONDS < sent and (ended is None or sent < ended):
                    yield Violation(f"{kind}-never-sent", f"{job_id}:{index}",
                                    f"call {target.call_ids[-1]} was accepted at {sent:.3f}, while the job was "
                                    f"{'cancelled' if kind == 'cancelled' else 'waiting for approval'} (from "
                                    f"{begun:.3f})")


def accepted_ids_were_allowed(world: World) -> Iterable[Violation]:
    """Every id Box accepted was named by a job that allowed it: a target with that id, pointing to a call whose
    ids (with those an earlier round named) cover the request, and that ended accepted (or was dropped from the
    call after Box had seen it: an earlier round's id)."""
    calls = {c.call_id: c for job in world.jobs.values() for c in job.calls}
    pointing: dict[str, list[tuple[Call, bool]]] = {}
    for job in world.jobs.values():
        for target in job.targets:
            for call_id in target.call_ids:
                if call_id in calls and target.box_id:
                    call = calls[call_id]
                    ok = target.status is TargetStatus.ACCEPTED or target.box_id in call.earlier_ids
                    pointing.setdefault(target.box_id, []).append((call, ok))
    for request in _terminate_requests(world.requests):
        if request.get("status") != 202:
            continue
        endpoint, ids = _request_key(request)
        for box_id in ids:
            if not any(ok and c.endpoint == endpoint and set(ids) <= {*c.ids, *c.earlier_ids}
                       for c, ok in pointing.get(box_id, [])):
                yield Violation("accepted-id-allowed", f"request at {request.get('time')}",
                                f"Box accepted id {box_id}, which no accepted target of a call covering the request "
                                "names")


def requests_are_counted(world: World) -> Iterable[Violation]:
    """Every terminate request boxsim saw is counted in a call record (attempts count each request written down
    before it is sent) whose ids, with those an earlier round named, cover the request's and whose rounds span its
    time; no endpoint saw more requests than its calls count; and every accepted target points to an accepted
    call."""
    calls = {c.call_id: c for job in world.jobs.values() for c in job.calls}
    requests = _terminate_requests(world.requests)
    seen = Counter(_request_key(r) for r in requests)
    times: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    for request in requests:
        times.setdefault(_request_key(request), []).append(float(request.get("time") or 0))
    for (endpoint, ids), count in sorted(seen.items()):
        covering = [c for c in calls.values() if c.endpoint == endpoint and set(ids) <= {*c.ids, *c.earlier_ids}
                    and any(_spans(c, t) for t in times[(endpoint, ids)])]
        counted = sum(c.attempts for c in covering)
        if counted < count:
            shown = "; ".join(f"{c.call_id} {c.state.value} HTTP {c.http_status} attempts {c.attempts}: {c.message}"
                              for c in covering)
            yield Violation("requests-counted", f"{endpoint} {','.join(ids)[:80]}",
                            f"boxsim saw {count} requests, call records count {counted} ({shown or 'no call'})")
    for endpoint, count in sorted(Counter(key[0] for key in seen.elements()).items()):
        counted = sum(c.attempts for c in calls.values() if c.endpoint == endpoint)
        if counted < count:
            yield Violation("requests-counted", endpoint, f"boxsim saw {count} requests in all, the call records "
                            f"count {counted}")
    for job_id, job in sorted(world.jobs.items()):
        for index, target in enumerate(job.targets):
            if target.status is not TargetStatus.ACCEPTED:
                continue
            last = calls.get(target.call_ids[-1]) if target.call_ids else None
            if last is None or last.state is not CallState.ANSWERED or last.http_status != 202:
                yield Violation("accepted-points-to-accepted-call", f"{job_id}:{index}",
                                f"accepted, but its last call is {last.call_id if last else 'missing'}"
                                f"{f' (HTTP {last.http_status})' if last else ''}")


def state_changes_are_audited(world: World) -> Iterable[Violation]:
    """Every change of state has its audit entry: the trail's moves chain (each from where the one before went),
    and the last goes where the record is."""
    for job_id, job in sorted(world.jobs.items()):
        moves = [e for e in world.trails.get(job_id, []) if e.get("event") == "state"]
        created = [e for e in world.trails.get(job_id, []) if e.get("event") == "created"]
        if not created:
            yield Violation("state-audited", job_id, "its trail has no `created` entry")
            continue
        for before, after in itertools.pairwise(moves):
            if after["data"].get("from") != before["data"].get("to"):
                yield Violation("state-audited", job_id, f"its trail moves to {before['data'].get('to')}, then from "
                                f"{after['data'].get('from')}: a move between them has no entry")
        last = moves[-1]["data"].get("to") if moves else JobState.QUEUED.value
        if last != job.state.value and not (not moves and job.state is JobState.RECORDED):
            yield Violation("state-audited", job_id, f"record says {job.state.value}, its trail's last move is to "
                            f"{last}")


def jobs_are_notified(world: World) -> Iterable[Violation]:
    """Each job that came to wait for approval or ended is notified as the settings say, to every receiver, and
    no notice reaches a receiver more often than its attempts allow.

    Owed (docs/notifications.md; worker/notify/notice.py, scanner.py): one `boxcut.job.awaiting_approval` per move
    of a job into awaiting_approval, one `boxcut.job.finished` per move into a final state (succeeded, partial,
    failed, refused, dry_run, cancelled; dry runs too), each with the `state` moved into; a job that waits or ends
    again is notified again. None for `recorded` jobs (created final, never moved), none for a move the brake made
    (its `actor` is `brake`): the brake's engagement is told once instead, as `boxcut.job.brake_engaged` (state
    awaiting_approval) for its `brake_engaged` entry. A notice counts when the receiver got it signed and answered
    it 2xx; distinct notices are told apart by the body's `id` (`{job_id}/{audit entry id}`, the same for every
    attempt), matched to the job's moves by `job_id`, `type` and `state`.

    At most BOXCUT_NOTIFY_ATTEMPTS posts of one notice (one `id`) to one receiver, whatever each was answered:
    docs/notifications.md: tried again "for `BOXCUT_NOTIFY_ATTEMPTS` (8) attempts in all ... An attempt is counted in
    the job before it is sent, so a worker killed mid-request still spends it" (worker/notify/delivery.py: "no
    receiver gets more than BOXCUT_NOTIFY_ATTEMPTS"). So a notice may legitimately arrive twice, delivered both
    times (its worker killed, or Redis failing, after the receiver answered and before the record said so; or the
    scanner's documented "sends that one twice rather than never", whose second delivery task shares the first's
    record and count), but never more often than its attempts."""
    notify = world.notify
    if notify is None:
        return
    for receiver in notify.receivers:
        got = [n for n in world.notices if n.get("receiver") == receiver and isinstance(n.get("body"), dict)]
        delivered: dict[tuple[str, str, str], set[str]] = {}
        for notice in got:
            body = notice["body"]
            if notice.get("signed") and 200 <= int(notice.get("status") or 0) < 300:
                key = (str(body.get("job_id")), str(body.get("type")), str(body.get("state")))
                delivered.setdefault(key, set()).add(str(body.get("id")))
        for job_id, job in sorted(world.jobs.items()):
            owed = Counter(_notices_owed(world.trails.get(job_id, []), notify.since))
            for (kind, state), count in sorted(owed.items()):
                have = len(delivered.get((job_id, kind, state), set()))
                if have < count:
                    yield Violation("notified", job_id, f"moved to {state} {count} time(s), {receiver} got {have} "
                                    f"{kind} notice(s) ({_posts_of(got, job_id)}; {_deliveries(job, receiver)})")
        posts = Counter((str(n["body"].get("job_id")), str(n["body"].get("id"))) for n in got)
        for (job_id, notice_id), count in sorted(posts.items()):
            if count > notify.attempts:
                yield Violation("notified-once", job_id, f"notice {notice_id} reached {receiver} {count} times, "
                                f"more than BOXCUT_NOTIFY_ATTEMPTS ({notify.attempts}) ({_posts_of(got, job_id)})")


def _notices_owed(trail: list[dict[str, Any]], since: str) -> list[tuple[str, str]]:
    """The notices a job's trail calls for, as (body type, state): its moves into awaiting_approval or a final
    state other than recorded (the brake's holds excepted), and the brake engaging, from `since` on."""
    owed = []
    for entry in trail:
        if since and str(entry.get("at") or "") < since:
            continue
        data = entry.get("data") or {}
        if entry.get("event") == ENGAGED_EVENT:
            owed.append(("boxcut.job.brake_engaged", JobState.AWAITING_APPROVAL.value))
        elif entry.get("event") == "state" and data.get("actor") != BRAKE_ACTOR:
            try:
                moved_to = JobState(str(data.get("to")))
            except ValueError:
                continue
            if moved_to is JobState.AWAITING_APPROVAL:
                owed.append(("boxcut.job.awaiting_approval", moved_to.value))
            elif moved_to.is_final and moved_to is not JobState.RECORDED:
                owed.append(("boxcut.job.finished", moved_to.value))
    return owed


def _posts_of(got: list[dict[str, Any]], job_id: str) -> str:
    posts = [f"{n['body'].get('type', '?').removeprefix('boxcut.job.')} {n['body'].get('state')} HTTP "
             f"{n.get('status')}{'' if n.get('signed') else ' unsigned'}" for n in got
             if n["body"].get("job_id") == job_id]
    return f"posts: {', '.join(posts)}" if posts else "no post"


def _deliveries(job: Job, receiver: str) -> str:
    """What the job records of its deliveries to `receiver` (told apart by the URL's fingerprint)."""
    mark = NotifyURL(url=receiver).fingerprint
    rows = [f"{r.get('event')} {r.get('state')} {r.get('status')} after {r.get('attempts')} attempts"
            f"{': ' + str(r['last_error']) if r.get('last_error') else ''}"
            for r in job.notifications if r.get("fingerprint") == mark]
    return f"recorded: {', '.join(rows)}" if rows else "no delivery recorded"


def _accepting_requests(world: World) -> dict[str, float]:
    """Call id -> when Box accepted it: the latest 202 request, within the call's rounds, for its exact ids."""
    accepted: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    for request in _terminate_requests(world.requests):
        if request.get("status") == 202:
            accepted.setdefault(_request_key(request), []).append(float(request.get("time") or 0))
    found = {}
    for job in world.jobs.values():
        for call in job.calls:
            if call.http_status == 202:
                key = (call.endpoint, tuple(sorted(call.ids)))
                times = [t for t in accepted.get(key, []) if _spans(call, t)]
                if times:
                    found[call.call_id] = max(times)
    return found


def _spans(call: Call, at: float) -> bool:
    """Whether a request at `at` (epoch seconds) falls within the call's rounds, give or take a second."""
    started = _epoch(call.started_at) if call.started_at else float("-inf")
    finished = _epoch(call.finished_at) if call.finished_at else float("inf")
    return started - 1 <= at <= finished + 1


def _holds(trail: list[dict[str, Any]]) -> list[tuple[str, float, float | None]]:
    """When the job might not be sent, from its trail: (`cancelled`, from, None) after a cancel, and (`held`,
    from, until) for each stay in awaiting_approval."""
    holds: list[tuple[str, float, float | None]] = []
    waiting: float | None = None
    for entry in trail:
        if entry.get("event") != "state":
            continue
        at, to = _epoch(str(entry.get("at"))), entry["data"].get("to")
        if waiting is not None:
            holds.append(("held", waiting, at))
            waiting = None
        if to == JobState.AWAITING_APPROVAL.value:
            waiting = at
        elif to == JobState.CANCELLED.value:
            holds.append(("cancelled", at, None))
    if waiting is not None:
        holds.append(("held", waiting, None))
    return holds


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _terminate_requests(requests: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if r.get("method") == "POST" and r.get("path") in TERMINATE_PATHS]


def _ids(request: dict[str, Any]) -> list[str]:
    body = request.get("body") or {}
    return [str(i) for i in body.get(TERMINATE_PATHS[request["path"]], [])] if isinstance(body, dict) else []


def _request_key(request: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    endpoint = str(request["path"]).removeprefix("/2.0")
    return endpoint, tuple(sorted(_ids(request)))
