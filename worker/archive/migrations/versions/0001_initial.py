"""The archive's first schema: finished jobs, their calls, the links between them, and the audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-06-01

Written by hand to match worker/archive/schema.py exactly (a test compares them with autogenerate).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the four tables and their indexes."""
    op.create_table(
        "archived_jobs",
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("dead", sa.Boolean(), nullable=False),
        sa.Column("active_after", sa.Boolean(), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_archived_jobs"),
    )
    op.create_index("ix_archived_jobs_created_us", "archived_jobs", ["created_us"])
    op.create_index("ix_archived_jobs_state_created_us", "archived_jobs", ["state", "created_us"])
    op.create_index("ix_archived_jobs_source_created_us", "archived_jobs", ["source", "created_us"])

    op.create_table(
        "archived_calls",
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="pk_archived_calls"),
    )

    op.create_table(
        "archived_job_calls",
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["archived_jobs.job_id"], ondelete="CASCADE",
                                name="fk_archived_job_calls_job_id_archived_jobs"),
        sa.PrimaryKeyConstraint("job_id", "call_id", name="pk_archived_job_calls"),
    )
    op.create_index("ix_archived_job_calls_call_id", "archived_job_calls", ["call_id"])

    op.create_table(
        "archived_audit",
        sa.Column("entry_id", sa.Text(), nullable=False),
        sa.Column("ms", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("at", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name="pk_archived_audit"),
    )
    op.create_index("ix_archived_audit_ms_seq", "archived_audit", ["ms", "seq"])
    op.create_index("ix_archived_audit_job_id_ms_seq", "archived_audit", ["job_id", "ms", "seq"])


def downgrade() -> None:
    """Drop the four tables (and with them every archived job)."""
    op.drop_table("archived_audit")
    op.drop_table("archived_job_calls")
    op.drop_table("archived_calls")
    op.drop_table("archived_jobs")
