"""First start: a workspace, its admin, an admin key, and models enabled."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.catalog import Catalog
from imagegate.ids import new_id
from imagegate.services.keys import create_key
from imagegate.store.tables import Member, Workspace, WorkspaceModel

DEFAULT_MODEL = "mock-image"


async def create_workspace(
    session: AsyncSession, catalog: Catalog, name: str, enabled: list[str] | None = None
) -> Workspace:
    """A workspace with ``enabled`` models on (the mock models when none are named)."""
    slugs = enabled or [m.slug for m in catalog if m.provider == "mock"]
    workspace = Workspace(
        id=new_id("ws"),
        name=name,
        default_model=DEFAULT_MODEL if DEFAULT_MODEL in slugs else slugs[0],
    )
    session.add(workspace)
    await session.flush()
    session.add_all(
        WorkspaceModel(workspace_id=workspace.id, model=slug, enabled=True) for slug in slugs
    )
    await session.flush()
    return workspace


async def create_member(
    session: AsyncSession, workspace: Workspace, name: str, role: str
) -> Member:
    member = Member(id=new_id("mem"), workspace_id=workspace.id, name=name, role=role)
    session.add(member)
    await session.flush()
    return member


async def bootstrap(session: AsyncSession, catalog: Catalog, workspace_name: str) -> str | None:
    """Create the first workspace and an admin key; the key's secret, or None if one exists."""
    existing = (await session.execute(select(Workspace.id).limit(1))).first()
    if existing is not None:
        return None
    workspace = await create_workspace(session, catalog, workspace_name)
    admin = await create_member(session, workspace, "admin", "admin")
    _, secret = await create_key(session, admin, "first admin key")
    return secret
