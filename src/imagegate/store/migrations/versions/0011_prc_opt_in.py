"""workspaces: prc_models_allowed, the admin's opt-in to models made by PRC-based companies

Revision ID: 0011
Revises: 0009

Off by default: such models (``prc: true`` in the catalog, e.g. ``qwen-image``) can be
enabled only once an admin opts in. On PostgreSQL the setting joins the columns whose
change gives the workspace a new governance version (see migration 0005).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns as 0009 left them (it added unfiltered_models_allowed).
_BEFORE = ("default_model", "image_generation_enabled", "billing_mode", "region_policy",
           "margin_percent", "unfiltered_models_allowed")  # fmt: skip
_AFTER = (*_BEFORE, "prc_models_allowed")


def _trigger(columns: tuple[str, ...]) -> list[str]:
    return [
        "DROP TRIGGER workspaces_governance_version ON workspaces",
        f"""
        CREATE TRIGGER workspaces_governance_version
        BEFORE UPDATE ON workspaces FOR EACH ROW
        WHEN (({", ".join(f"OLD.{c}" for c in columns)})
              IS DISTINCT FROM ({", ".join(f"NEW.{c}" for c in columns)}))
        EXECUTE FUNCTION imagegate_workspace_settings_changed()
        """,
    ]


def upgrade() -> None:
    # A plain ADD COLUMN, also on SQLite: a batch copy of the table would drop
    # ``workspaces`` under the foreign keys that point at it, which fails with rows in it.
    op.add_column(
        "workspaces",
        sa.Column("prc_models_allowed", sa.Boolean(), server_default="0", nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in _trigger(_AFTER):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _trigger(_BEFORE):
            op.execute(statement)
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("prc_models_allowed")
