"""workspaces: governance_version, changed by every change to what generation checks

Revision ID: 0005
Revises: 0004

On PostgreSQL, triggers give the workspace a new random version whenever one of its
settings that generation reads changes, or any of its ``workspace_models`` rows: changes
made outside the gateway (by hand, by another tool) count too. A submit writes only while
the version is the one its checks were made against (``services/workspace.py``). The
version is random, not a counter, so that a database restored from a backup never
repeats a version that stood for another state. SQLite needs none: there a submit reads
the workspace inside its own write transaction.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW_VERSION = "(random() * 4e18)::bigint"
_SETTINGS = ("default_model", "image_generation_enabled", "billing_mode", "region_policy",
             "margin_percent")  # fmt: skip

_POSTGRES = [
    f"""
    CREATE FUNCTION imagegate_workspace_settings_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        NEW.governance_version := {_NEW_VERSION};
        RETURN NEW;
    END $$
    """,
    f"""
    CREATE TRIGGER workspaces_governance_version
    BEFORE UPDATE ON workspaces FOR EACH ROW
    WHEN (({", ".join(f"OLD.{c}" for c in _SETTINGS)})
          IS DISTINCT FROM ({", ".join(f"NEW.{c}" for c in _SETTINGS)}))
    EXECUTE FUNCTION imagegate_workspace_settings_changed()
    """,
    f"""
    CREATE FUNCTION imagegate_workspace_models_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            UPDATE workspaces SET governance_version = {_NEW_VERSION}
            WHERE id = OLD.workspace_id;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            UPDATE workspaces SET governance_version = {_NEW_VERSION}
            WHERE id = NEW.workspace_id;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER workspace_models_governance_version
    AFTER INSERT OR UPDATE OR DELETE ON workspace_models FOR EACH ROW
    EXECUTE FUNCTION imagegate_workspace_models_changed()
    """,
]


def upgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("governance_version", sa.BigInteger(), server_default="0", nullable=False)
        )
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRES:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER workspace_models_governance_version ON workspace_models")
        op.execute("DROP TRIGGER workspaces_governance_version ON workspaces")
        op.execute("DROP FUNCTION imagegate_workspace_models_changed()")
        op.execute("DROP FUNCTION imagegate_workspace_settings_changed()")
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("governance_version")
