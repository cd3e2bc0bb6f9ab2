"""A finished job as one document: what its packed copy in Redis and its row in the archive both hold.

The document is the job record without its calls (`call_ids` names them, in the order its record listed them);
a call is a document of its own, since one call may carry targets of many jobs, with the requests sent for it
(`requests_sent`). `job_from_document` gives back the same `Job`, field for field: an evidence report made from a
document is the report made from the record it came from.

`pack` makes the compact copy a settled job keeps in Redis for the hot window (BOXCUT_HOT_DAYS): the document,
the calls that carried only its own targets, and its audit trail, as JSON compressed with zlib against a preset
dictionary of the words every job repeats (field names, states, endpoints). A one-user alert packs into about
400 bytes instead of the 9 KB its working keys took.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from worker.jobs.model import Approval, Call, Job, JobState, Target

# The packed form's first byte: which preset dictionary it was compressed against. A new dictionary takes a new
# version and keeps the old one, so every copy already written stays readable.
PACKED_V1 = 1

# Words a packed job repeats, most frequent last (zlib finds matches nearest the end soonest). Never edited: a
# change would make every copy packed with it unreadable; add PACKED_V2 instead.
_DICTIONARY_V1 = (
    b'"earlier_ids":[],"exhausted":false,"message":null,"error_code":null,"http_status":null,"state":"planned",'
    b'"members":null,"admins":null,"member_count":null,"role":"admin","group_name":null,"group_id":null,'
    b'{"type":"group","name":"/groups/terminate_sessions","type":"group","status":"not_found","status":"protected",'
    b'"status":"failed","status":"dead","status":"would_terminate","status":"recorded","resolved_by":"search",'
    b'"state":"partial","state":"failed","state":"refused","state":"dry_run","state":"cancelled","state":"recorded",'
    b'"approval":{"required":true,"reasons":[],"approved_by":null,"approved_at":null},"waiting":null,"brake":null,'
    b'"severity":null,"link":null,"note":null,"source_event_id":null,"blast_radius":1,"expand_groups":false,'
    b'"dry_run":false,"approval":null,"watch_until":"2026-,"notifications":[],"activity":{},'
    b'"created",{"source":"","targets":1,"dry_run":false,"requested_by":""}],'
    b'"state",{"note":"","actor":"boxcut","to":"resolving","from":"queued"}],'
    b'"resolved",{"targets":[{"index":0,"status":"pending","user_id":"","group_id":null,"detail":null}]}],'
    b'"blast_radius",{"blast_radius":"1"}],'
    b'"state",{"note":"","actor":"boxcut","to":"terminating","from":"resolving"}],'
    b'"call_planned",{"call_id":"c-","endpoint":"/users/terminate_sessions","ids":1,'
    b'"targets":[{"index":0,"status":"pending","user_id":"","group_id":null,"detail":null}]}],'
    b'"call",{"call_id":"c-","endpoint":"/users/terminate_sessions","state":"answered",'
    b'"http_status":202,"error_code":null,"request_id":"","attempts":1,"ids":1,'
    b'"targets":[{"index":0,"status":"accepted","user_id":"","group_id":null,"detail":null}]}],'
    b'"state",{"note":"","actor":"boxcut","to":"succeeded","from":"terminating"}]],"audit":[["17'
    b'{"call_id":"c-","endpoint":"/users/terminate_sessions","ids":[""],"state":"answered","http_status":202,'
    b'"message":"Request is successful, please check the admin events for the status of the job",'
    b'"error_code":null,"request_id":"","attempts":1,"started_at":"2026-12-06T00:00:00.000Z",'
    b'"finished_at":"2026-12-06T00:00:00.000Z","exhausted":false,"targets":["j-:0"],"earlier_ids":[],'
    b'"requests_sent":1}],"calls":['
    b'{"job":{"job_id":"j-","state":"succeeded","source":"","reason":"","requested_by":"","dry_run":false,'
    b'"created_at":"2026-12-06T00:00:00.000Z","updated_at":"2026-12-06T00:00:00.000Z","created_us":17,'
    b'"targets":[{"input":{"type":"user","login":"@example.com"},"type":"user","user_id":"","login":"@example.com",'
    b'"group_id":null,"group_name":null,"status":"accepted","detail":null,"call_ids":["c-"],'
    b'"resolved_by":"directory","role":"user","member_count":null,"members":null,"admins":null,'
    b'"directory_as_of":"2026-12-06T00:00:00.000Z"}],"call_ids":["c-"]'
)
_DICTIONARIES = {PACKED_V1: _DICTIONARY_V1}


class UnreadablePacked(ValueError):
    """A packed copy this code cannot read (a version it does not know, or damaged bytes)."""


def job_document(job: Job, *, created_us: int) -> dict[str, Any]:
    """The job as a document: every field of its record, its calls named by id."""
    doc: dict[str, Any] = {
        "job_id": job.job_id, "state": job.state.value, "source": job.source, "reason": job.reason,
        "requested_by": job.requested_by, "dry_run": job.dry_run, "created_at": job.created_at,
        "updated_at": job.updated_at, "created_us": created_us, "source_event_id": job.source_event_id,
        "severity": job.severity, "link": job.link, "expand_groups": job.expand_groups,
        "approval": job.approval.to_dict() if job.approval else None, "blast_radius": job.blast_radius,
        "note": job.note, "waiting": job.waiting, "watch_until": job.watch_until, "brake": job.brake,
        "targets": [t.to_dict() for t in job.targets],
        "call_ids": [c.call_id for c in job.calls],
        "activity": {str(i): list(events) for i, events in job.activity_after.items()},
        "notifications": list(job.notifications),
    }
    return doc


def job_from_document(doc: dict[str, Any], calls: list[Call]) -> Job:
    """The job a document holds, with `calls` (those its `call_ids` name, in that order; any missing is left out)."""
    by_id = {c.call_id: c for c in calls}
    return Job(
        job_id=doc["job_id"], state=JobState(doc["state"]), source=doc["source"], reason=doc["reason"],
        requested_by=doc["requested_by"], dry_run=bool(doc["dry_run"]), created_at=doc["created_at"],
        updated_at=doc["updated_at"], source_event_id=doc["source_event_id"], severity=doc["severity"],
        link=doc["link"], expand_groups=bool(doc["expand_groups"]),
        approval=Approval.from_dict(doc["approval"]) if doc["approval"] else None,
        blast_radius=doc["blast_radius"], note=doc["note"], waiting=doc["waiting"],
        watch_until=doc["watch_until"], brake=doc["brake"],
        targets=[Target.from_dict(t) for t in doc["targets"]],
        calls=[by_id[c] for c in doc["call_ids"] if c in by_id],
        activity_after={int(i): list(events) for i, events in doc["activity"].items()},
        notifications=list(doc["notifications"]),
    )


def call_document(call: Call, *, requests_sent: int) -> dict[str, Any]:
    """A call as a document: its record and how many requests were sent for it."""
    return {**call.to_dict(), "requests_sent": requests_sent}


def call_from_document(doc: dict[str, Any]) -> tuple[Call, int]:
    """The call a document holds, and the requests sent for it."""
    values = dict(doc)
    sent = int(values.pop("requests_sent", 0))
    return Call.from_dict(values), sent


def audit_row(entry: dict[str, Any]) -> list[Any]:
    """An audit entry of one job, as a packed copy keeps it: id, event, time and its data."""
    return [entry["id"], entry["event"], entry["at"], entry["data"]]


def audit_entry(job_id: str, row: list[Any]) -> dict[str, Any]:
    """An audit entry as the store reads it back (`JobStore.audit_entries`), from a packed row."""
    entry_id, event, at, data = row
    return {"id": entry_id, "job_id": job_id, "event": event, "at": at, "data": data}


@dataclass
class Settled:
    """What a settled job keeps in Redis while hot: its document, the calls no other job shares, its audit trail."""

    document: dict[str, Any]
    calls: list[dict[str, Any]] = field(default_factory=list)
    audit: list[list[Any]] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return str(self.document["job_id"])

    def audit_entries(self) -> list[dict[str, Any]]:
        return [audit_entry(self.job_id, row) for row in self.audit]


def pack(settled: Settled) -> bytes:
    """The compact bytes of a settled job (version byte, then zlib against the version's dictionary)."""
    text = _dumps({"job": settled.document, "calls": settled.calls, "audit": settled.audit}).encode()
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _DICTIONARIES[PACKED_V1])
    return bytes([PACKED_V1]) + compressor.compress(text) + compressor.flush()


def unpack(data: bytes) -> Settled:
    """A settled job from its packed bytes."""
    if not data or data[0] not in _DICTIONARIES:
        raise UnreadablePacked(f"packed job of unknown version {data[:1]!r}")
    try:
        decompressor = zlib.decompressobj(-15, _DICTIONARIES[data[0]])
        value = json.loads(decompressor.decompress(data[1:]) + decompressor.flush())
    except (zlib.error, ValueError) as error:
        raise UnreadablePacked(f"packed job damaged: {error}") from None
    return Settled(document=value["job"], calls=value["calls"], audit=value["audit"])


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

