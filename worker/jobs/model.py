"""The job record: a job, its targets and the Box calls they point to, as plain typed records.

The JSON shape (`Job.to_dict`) is boxcut's contract: `GET /v1/jobs/{id}` and `boxcut status JOB --json` print
it. Fields may be added, never renamed.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any


def utc_now() -> str:
    """Now, as an ISO 8601 UTC timestamp with milliseconds: the format of every time in a job record."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobState(enum.StrEnum):
    """Where a job is in its life; the last seven are final."""

    QUEUED = "queued"
    RESOLVING = "resolving"
    AWAITING_APPROVAL = "awaiting_approval"
    TERMINATING = "terminating"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    REFUSED = "refused"
    DRY_RUN = "dry_run"
    CANCELLED = "cancelled"
    # Kept for the audit, never acted on: a Box Shield alert that BOXCUT_SHIELD_RULES records only.
    RECORDED = "recorded"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED, JobState.REFUSED, JobState.DRY_RUN, JobState.CANCELLED,
     JobState.RECORDED}
)

# The audit event a run's transient fault (Box or Redis not answering) leaves in the job's trail, so that whoever
# waits for the job reads why it does not move (`boxcut ... --wait`: "picked up and failing").
FAULT_EVENT = "fault"

# Cancelling is allowed until the job is settled: no target still waiting in the send queue is sent after it;
# targets already committed to a call are not called back (that call, and its retries, still name them).
CANCELLABLE_STATES = frozenset({JobState.QUEUED, JobState.RESOLVING, JobState.AWAITING_APPROVAL,
                                JobState.TERMINATING})


class TargetStatus(enum.StrEnum):
    """What became of one target."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    PROTECTED = "protected"
    FAILED = "failed"
    DEAD = "dead"
    WOULD_TERMINATE = "would_terminate"
    RECORDED = "recorded"  # its job records an alert only: nothing is looked up or sent


class TargetType(enum.StrEnum):
    USER = "user"
    GROUP = "group"


@dataclass
class Target:
    """One person or group a job names, what it resolved to, and what became of it."""

    input: dict[str, str]
    type: TargetType
    user_id: str | None = None
    login: str | None = None
    group_id: str | None = None
    group_name: str | None = None
    status: TargetStatus = TargetStatus.PENDING
    detail: str | None = None
    call_ids: list[str] = field(default_factory=list)
    resolved_by: str | None = None
    role: str | None = None
    member_count: int | None = None
    members: list[str] | None = None
    admins: list[str] | None = None
    # When the directory copy a target was resolved from was made (resolved_by "directory").
    directory_as_of: str | None = None

    @property
    def box_id(self) -> str | None:
        """The Box id a terminate call names for this target, once resolved."""
        return self.user_id if self.type is TargetType.USER else self.group_id

    @property
    def is_resolved(self) -> bool:
        return self.box_id is not None

    def to_dict(self) -> dict[str, Any]:
        """`asdict(self)`, built directly: asdict copies every value through a recursion of its own, and a target
        is written on every change to it (the intake writes one per alert)."""
        data = {name: getattr(self, name) for name in _TARGET_FIELDS}
        data["input"] = dict(self.input)
        data["call_ids"] = list(self.call_ids)
        for name in ("members", "admins"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        values = dict(data)
        values["type"] = TargetType(values["type"])
        values["status"] = TargetStatus(values["status"])
        return cls(**values)

    @classmethod
    def from_input(cls, spec: dict[str, str]) -> Target:
        """A pending target from an envelope entry such as `{"type": "user", "login": "a@example.com"}`."""
        kind = TargetType(spec["type"])
        target = cls(input=dict(spec), type=kind)
        if kind is TargetType.USER:
            target.login = spec.get("login")
        else:
            target.group_name = spec.get("name")
        return target


_TARGET_FIELDS = tuple(f.name for f in fields(Target))


class CallState(enum.StrEnum):
    """A call is planned (targets assigned, not yet answered) until Box's final answer is recorded."""

    PLANNED = "planned"
    ANSWERED = "answered"


def target_ref(job_id: str, index: int) -> str:
    """How a call names a target it carries: `<job id>:<index in the job's targets>`."""
    return f"{job_id}:{index}"


def parse_target_ref(ref: str) -> tuple[str, int]:
    job_id, _, index = ref.rpartition(":")
    return job_id, int(index)


@dataclass
class Call:
    """One terminate request to Box (after its retries) and what Box answered.

    A call is shared: it may carry targets of several jobs (`targets`, as `target_ref`s), and each of its `ids`
    once however many of those targets named it.
    """

    call_id: str
    endpoint: str
    ids: list[str]
    state: CallState = CallState.PLANNED
    http_status: int | None = None
    message: str | None = None
    error_code: str | None = None
    request_id: str | None = None
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    exhausted: bool = False
    targets: list[str] = field(default_factory=list)
    # Ids an earlier request of this call named that a later round no longer carries (a target protected,
    # cancelled or held meanwhile): Box may have seen them in that request, which `attempts` counts.
    earlier_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Call:
        values = dict(data)
        values["state"] = CallState(values["state"])
        # Written by a Lua script, whose JSON encoder writes an empty list as `{}`.
        values["ids"] = list(values.get("ids") or [])
        values["targets"] = list(values.get("targets") or [])
        values["earlier_ids"] = list(values.get("earlier_ids") or [])
        return cls(**values)

    def carried(self) -> dict[str, list[int]]:
        """The targets this call carries, by job."""
        jobs: dict[str, list[int]] = {}
        for ref in self.targets:
            job_id, index = parse_target_ref(ref)
            jobs.setdefault(job_id, []).append(index)
        return jobs


@dataclass
class Approval:
    """Whether a job needs a person's approval before any call, why, and who gave it when.

    `required` is None for a job approved as it was submitted (`offboard --approve`), before anyone knew whether
    it would need it; `at_submission` says so in the record.
    """

    required: bool | None
    reasons: list[str] = field(default_factory=list)
    approved_by: str | None = None
    approved_at: str | None = None
    at_submission: bool = False

    @classmethod
    def needed(cls, reasons: list[str]) -> Approval:
        """What a job that must wait (or a dry run that would) records: the reasons, nobody's approval yet."""
        return cls(required=bool(reasons), reasons=list(reasons))

    @classmethod
    def at_submit(cls, actor: str) -> Approval:
        """The approval of an operator who approves a job as they submit it."""
        return cls(required=None, approved_by=actor, approved_at=utc_now(), at_submission=True)

    @property
    def approved(self) -> bool:
        return bool(self.approved_by)

    def given_by(self, actor: str) -> Approval:
        """This approval, given now by `actor`."""
        return replace(self, approved_by=actor, approved_at=utc_now())

    def to_dict(self) -> dict[str, Any]:
        """As the job record prints it (`at_submission` only when true)."""
        data = asdict(self)
        if not self.at_submission:
            del data["at_submission"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Approval:
        return cls(required=data.get("required"), reasons=list(data.get("reasons") or []),
                   approved_by=data.get("approved_by"), approved_at=data.get("approved_at"),
                   at_submission=bool(data.get("at_submission")))


@dataclass
class Job:
    """A job: who asked, why, its state, its targets and the calls made for them."""

    job_id: str
    state: JobState
    source: str
    reason: str
    requested_by: str
    dry_run: bool
    created_at: str
    updated_at: str
    source_event_id: str | None = None
    severity: str | None = None
    link: str | None = None
    expand_groups: bool = False
    approval: Approval | None = None
    blast_radius: int | None = None
    # Why the job is in its state, when its targets do not say it: e.g. "could not be enqueued: ...".
    note: str | None = None
    # While a call carrying its targets waits out Box (5xx, timeouts, a 429 pause): why, since when, when it is
    # tried next, and the calls Box has seen so far. None when nothing waits.
    waiting: dict[str, Any] | None = None
    # Until when the event-stream reader records what its accepted users did after termination (None: no watch).
    watch_until: str | None = None
    # Why the brake across jobs holds it (source, scope, count, limit, window_seconds), when it did.
    brake: dict[str, Any] | None = None
    targets: list[Target] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    # The events Box logged by a target's user after Box accepted the termination, by target index, oldest first.
    activity_after: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # The notifications sent about the job (docs/notifications.md): per event and receiver, its delivery's
    # status, attempts and last answer; receivers shown as `scheme://host/…` and a fingerprint, never whole.
    notifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active_after(self) -> bool:
        """Whether any target's user acted in Box after Box accepted their termination."""
        return any(self.activity_after.values())

    def to_dict(self) -> dict[str, Any]:
        """The job record as the contract prints it; each target carries its `activity_after` (empty when none was
        seen), and `active_after` says whether any target has some."""
        data = asdict(self)
        del data["activity_after"]
        data["approval"] = self.approval.to_dict() if self.approval else None
        data["targets"] = [{**t.to_dict(), "activity_after": self.activity_after.get(i, [])}
                           for i, t in enumerate(self.targets)]
        data["calls"] = [c.to_dict() for c in self.calls]
        data["summary"] = self.summary()
        data["active_after"] = self.active_after
        return data

    def summary(self) -> dict[str, int]:
        """How many targets are in each status (only statuses that occur)."""
        counts: dict[str, int] = {}
        for target in self.targets:
            counts[target.status.value] = counts.get(target.status.value, 0) + 1
        return counts
