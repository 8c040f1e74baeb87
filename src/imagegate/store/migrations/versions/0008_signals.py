"""Signals: triggers that tell every instance of a cancel, a key or member change, and a
governance change (``NOTIFY imagegate``, see ``store/signals.py``)

Revision ID: 0008
Revises: 0007

PostgreSQL only: a notification is sent by the transaction that made the change, when it
commits, whoever made it (an instance, the CLI, an operator by hand). SQLite has no
other instances to tell.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POSTGRES = [
    """
    CREATE FUNCTION imagegate_notify_job_canceled() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('imagegate', 'c - ' || NEW.id);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER jobs_notify_canceled
    AFTER UPDATE ON jobs FOR EACH ROW
    WHEN (NEW.status = 'canceled' AND OLD.status IS DISTINCT FROM 'canceled')
    EXECUTE FUNCTION imagegate_notify_job_canceled()
    """,
    """
    CREATE FUNCTION imagegate_notify_keys_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('imagegate', 'k - ');
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER api_keys_notify_changed
    AFTER UPDATE OF revoked_at, secret_hash, member_id OR DELETE ON api_keys FOR EACH ROW
    EXECUTE FUNCTION imagegate_notify_keys_changed()
    """,
    """
    CREATE TRIGGER members_notify_changed
    AFTER UPDATE OF role, workspace_id OR DELETE ON members FOR EACH ROW
    EXECUTE FUNCTION imagegate_notify_keys_changed()
    """,
    """
    CREATE FUNCTION imagegate_notify_governance_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('imagegate', 'g - ' || NEW.id);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER workspaces_notify_governance
    AFTER UPDATE ON workspaces FOR EACH ROW
    WHEN (OLD.governance_version IS DISTINCT FROM NEW.governance_version)
    EXECUTE FUNCTION imagegate_notify_governance_changed()
    """,
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRES:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER workspaces_notify_governance ON workspaces")
        op.execute("DROP TRIGGER members_notify_changed ON members")
        op.execute("DROP TRIGGER api_keys_notify_changed ON api_keys")
        op.execute("DROP TRIGGER jobs_notify_canceled ON jobs")
        op.execute("DROP FUNCTION imagegate_notify_governance_changed()")
        op.execute("DROP FUNCTION imagegate_notify_keys_changed()")
        op.execute("DROP FUNCTION imagegate_notify_job_canceled()")
