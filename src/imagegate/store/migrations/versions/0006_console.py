"""console: members' passwords, invite links, sign-in sessions and failed sign-ins

Revision ID: 0006
Revises: 0005

Secrets are stored as hashes only: a password as an argon2 hash, an invite link's or a
session's token as its SHA-256 (they are 256 random bits, so a fast hash is enough).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "member_passwords",
        sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("login", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_passwords")),
        sa.UniqueConstraint("login", name=op.f("uq_member_passwords_login")),
    )
    op.create_table(
        "console_invites",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        _when("created_at"),
        _when("expires_at"),
        _when("used_at", nullable=True),
        _when("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_invites")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_invites_token_hash")),
    )
    op.create_index("ix_console_invites_workspace_id", "console_invites", ["workspace_id"])
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        _when("created_at"),
        _when("last_seen_at"),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index("ix_console_sessions_member_id", "console_sessions", ["member_id"])
    op.create_table(
        "login_attempts",
        sa.Column("login", sa.String(200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        _when("first_failure_at"),
        _when("locked_until", nullable=True),
        sa.PrimaryKeyConstraint("login", name=op.f("pk_login_attempts")),
    )


def downgrade() -> None:
    op.drop_table("login_attempts")
    op.drop_index("ix_console_sessions_member_id", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_index("ix_console_invites_workspace_id", table_name="console_invites")
    op.drop_table("console_invites")
    op.drop_table("member_passwords")
