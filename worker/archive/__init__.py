"""The archive of finished jobs: a database (PostgreSQL, or SQLite embedded) that keeps job documents, the calls
they made and their audit trail after Redis lets them go. It knows nothing of boxcut's job model."""

from worker.archive.store import (
    Archive,
    ArchiveError,
    AuditRow,
    CallRow,
    Expired,
    JobRow,
    SchemaBehind,
    Summary,
)

__all__ = ["Archive", "ArchiveError", "AuditRow", "CallRow", "Expired", "JobRow", "SchemaBehind", "Summary"]
