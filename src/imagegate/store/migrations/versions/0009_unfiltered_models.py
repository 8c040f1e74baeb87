"""workspaces: unfiltered_models_allowed, whether members may use models without a
provider safety filter (self-hosted ones)

Revision ID: 0009
Revises: 0008

On PostgreSQL the governance-version trigger of migration 0005 is made anew with the new
column among the settings it watches: a submit planned before an admin disallowed such
models must not be written after.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("default_model", "image_generation_enabled", "billing_mode", "region_policy",
           "margin_percent")  # fmt: skip
_AFTER = (*_BEFORE, "unfiltered_models_allowed")


def _trigger(columns: tuple[str, ...]) -> str:
    return f"""
    CREATE TRIGGER workspaces_governance_version
    BEFORE UPDATE ON workspaces FOR EACH ROW
    WHEN (({", ".join(f"OLD.{c}" for c in columns)})
          IS DISTINCT FROM ({", ".join(f"NEW.{c}" for c in columns)}))
    EXECUTE FUNCTION imagegate_workspace_settings_changed()
    """


def upgrade() -> None:
    # A plain ADD COLUMN, also on SQLite: a batch copy of the table would drop
    # ``workspaces`` under the foreign keys that point at it, which fails with rows in it.
    op.add_column(
        "workspaces",
        sa.Column("unfiltered_models_allowed", sa.Boolean(), server_default="0", nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER workspaces_governance_version ON workspaces")
        op.execute(_trigger(_AFTER))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER workspaces_governance_version ON workspaces")
        op.execute(_trigger(_BEFORE))
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("unfiltered_models_allowed")
