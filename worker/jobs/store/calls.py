"""Box call records: a call's record (a key of its own, carrying targets of any number of jobs), the count of
requests sent for it, and what a sender must know of each job a call carries."""

from __future__ import annotations

import json
from dataclasses import dataclass

from worker.jobs.model import Approval, Call, JobState, Target
from worker.jobs.store.base import StoreBase, as_text


class CallRecords(StoreBase):
    """Call records and their request counts."""

    def note_attempt(self, call_id: str) -> int:
        """Count one more request for the call, before it is sent (a write Redis refuses stops the send): the
        record then counts every request Box may have seen, even one whose answer a crash lost. Returns the
        count."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(self._attempts_key(call_id))
        return int(self._replicated(pipe, f"call {call_id}'s request count")[0])

    def attempts_sent(self, call_id: str) -> int:
        """The requests sent for the call so far, by any sender (`note_attempt`)."""
        return int(self.redis.get(self._attempts_key(call_id)) or 0)

    def load_call(self, call_id: str) -> Call | None:
        raw = self.redis.get(self._call_key(call_id))
        return Call.from_dict(json.loads(raw)) if raw is not None else None

    def load_calls(self, call_ids: list[str]) -> list[Call]:
        if not call_ids:
            return []
        raw = self.redis.mget([self._call_key(c) for c in dict.fromkeys(call_ids)])
        return [Call.from_dict(json.loads(r)) for r in raw if r is not None]

    def load_carried(self, carried: dict[str, list[int]]) -> dict[str, CarriedJob]:
        """What a sender must know of each job a call carries: its state, approval, and those targets."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id, indexes in carried.items():
            pipe.hmget(self._job_key(job_id), ["state", "approval", "source", "requested_by", "created_us"])
            pipe.hmget(f"{self._job_key(job_id)}:targets", [str(i) for i in indexes])
        replies = pipe.execute()
        jobs: dict[str, CarriedJob] = {}
        for n, (job_id, indexes) in enumerate(carried.items()):
            (state, approval, source, requested_by, created_us), raw_targets = replies[2 * n], replies[2 * n + 1]
            if state is None:
                continue
            targets = {i: Target.from_dict(json.loads(raw)) for i, raw in zip(indexes, raw_targets, strict=True)
                       if raw is not None}
            jobs[job_id] = CarriedJob(
                state=JobState(as_text(state)), targets=targets,
                approval=Approval.from_dict(json.loads(approval)) if approval else None,
                source=as_text(source or ""), requested_by=as_text(requested_by or ""),
                approval_raw=as_text(approval or ""), created_us=int(created_us or 0),
            )
        return jobs


@dataclass
class CarriedJob:
    """A job as a sender sees it: the state and approval that decide whether its targets may go, and who sent
    it (the brake's source)."""

    state: JobState
    targets: dict[int, Target]
    approval: Approval | None
    source: str = ""
    requested_by: str = ""
    approval_raw: str = ""  # the approval field as stored, for a guard that it is unchanged
    created_us: int = 0
