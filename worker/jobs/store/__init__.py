"""The job store: job records, Box call records and the audit stream, in Redis.

`JobStore` is composed from parts, one noun each, every one on the same keys and connection (base.py):

    jobs.py       job records: create, read whole, fields, targets, transitions, listings
    calls.py      Box call records and the count of requests sent for each
    staging.py    the store's writes inside a sender's guarded write (worker/transactions.py)
    watch.py      the watch after termination: what a terminated user did afterwards
    leases.py     one run at a time per job, and the runs that died holding one
    settled.py    settling a finished job into its packed copy, and letting it go
    retention.py  removing old jobs and old audit entries
    audit.py      the audit stream: appending entries, reading trails
    sweep.py      what the periodic sweep looks for, and its notes

Keys (all under the settings' key prefix `P`):

    P job:{id}            hash   the job's scalar fields (state, source, reason, ...) and `call_seq`
    P job:{id}:targets    hash   target index -> Target JSON
    P job:{id}:lease      string who is running the job now (see `lease`)
    P job:{id}:calls      list   ids of the calls that carried its targets, in the order they were planned
    P call:{call_id}      string Call JSON: a record of its own, carrying targets of any number of jobs
    P jobs                zset   every job id, scored by creation time (µs)
    P jobs:state:{state}  zset   job ids by state, same score
    P jobs:source:{source} zset  job ids by source, same score
    P jobs:dead           zset   jobs holding a target whose retries ran out
    P jobs:running        zset   jobs a run holds, scored by its lease's deadline (ms): one past it died
    P jobs:active_after   zset   jobs whose targets' users acted in Box after Box accepted their termination
    P watch               zset   `{job id}:{index}:{user id}` of users Box accepted, scored by when (ms)
    P job:{id}:activity   hash   `{index}:{event id}` -> one event by that target's user after termination
    P job:{id}:notify     hash   `{audit entry id}#{url index}` -> one notification's delivery (worker/notify)
    P audit               stream append-only: an entry per job state change, target outcome and Box call
    P job:{id}:audit      stream the same entries for that job alone, so its trail reads whole however long the
                                 main stream is (and outlives the main stream's trimming while the job is kept)
    P settled:{id}        string a settled job's packed copy (worker/jobs/document.py): its record, the calls no
                                 other job shares and its audit trail, in one key, for the hot window
    P jobs:settled        zset   settled job ids by creation time (µs): the packed copies, oldest first
    P jobs:settle_wait    zset   finished jobs not quiet yet, scored by when (epoch s) to look at them again

A finished job settles once nothing will change it any more (worker/jobs/archiving.py): its archive row is
committed, then one step replaces its working keys (record, targets, calls list, activity, notifications, audit
stream, index entries) by its packed copy, which leaves Redis when the hot window ends. Reads here see either
form; worker/jobs/history.py adds the archive.

Changes that read before they write (state transitions, leases) are Lua scripts; changes that only write
several keys together are MULTI/EXEC pipelines. Every write that changes what a job says also appends to the
audit stream in the same transaction.
"""

from __future__ import annotations

from worker.jobs.store.base import REPLICA_RETRY_SECONDS, REPLICA_WAIT_MS
from worker.jobs.store.calls import CarriedJob
from worker.jobs.store.jobs import ACTIVE_AFTER, JobRecords, JobSummary
from worker.jobs.store.leases import LeaseRenewer, Leases
from worker.jobs.store.retention import Retention
from worker.jobs.store.staging import Staging
from worker.jobs.store.sweep import SweepQueries
from worker.jobs.store.watch import Watched

__all__ = ["ACTIVE_AFTER", "REPLICA_RETRY_SECONDS", "REPLICA_WAIT_MS", "CarriedJob", "JobStore", "JobSummary",
           "LeaseRenewer", "Watched"]


class JobStore(JobRecords, Staging, SweepQueries, Leases, Retention):
    """Reads and writes job records, call records and the audit stream (its parts: this package's docstring)."""
