"""members.operator (the instance-wide operator role); files.member_id (whose file it is)

Revision ID: 0007
Revises: 0006

Members see and act on their own jobs and files, admins on all of their workspace's:
files now record the member they belong to (an output: its job's member). The operator
role is instance-wide and separate from workspace admins; the admin created at first
start holds it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN and CREATE INDEX, also on SQLite: a batch copy of ``members``
    # would drop it under the foreign keys that point at it, which fails with rows in it.
    op.add_column(
        "members", sa.Column("operator", sa.Boolean(), nullable=False, server_default="0")
    )
    op.add_column("files", sa.Column("member_id", sa.String(length=40), nullable=True))
    op.create_index(
        "ix_files_workspace_member", "files", ["workspace_id", "member_id", "id"], unique=False
    )
    op.create_index(
        "ix_jobs_workspace_member", "jobs", ["workspace_id", "member_id", "id"], unique=False
    )
    # Outputs belong to their job's member; earlier uploads stay the admins' alone.
    op.execute(
        "UPDATE files SET member_id ="
        " (SELECT jobs.member_id FROM jobs WHERE jobs.id = files.job_id)"
        " WHERE job_id IS NOT NULL"
    )
    # The first admin of the first workspace is the one created at first start.
    op.execute(
        "UPDATE members SET operator = true WHERE id = ("
        " SELECT m.id FROM members m JOIN workspaces w ON w.id = m.workspace_id"
        " WHERE m.role = 'admin' ORDER BY w.created_at, m.created_at LIMIT 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_workspace_member")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_workspace_member")
        batch_op.drop_column("member_id")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("operator")
