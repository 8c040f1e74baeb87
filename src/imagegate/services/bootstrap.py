"""First start: a workspace, its admin, an admin key, and models enabled."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.catalog import Catalog
from imagegate.ids import new_id
from imagegate.services.keys import create_key
from imagegate.services.workspace import first_time_models, pick_default
from imagegate.store.tables import Member, Workspace, WorkspaceModel

DEFAULT_MODEL = "mock-image"


async def create_workspace(
    session: AsyncSession,
    catalog: Catalog,
    name: str,
    enabled: list[str] | None = None,
    configured_providers: list[str] | None = None,
) -> Workspace:
    """A workspace with ``enabled`` models on and a default among them.

    When none are named: the models of the providers with credentials configured, or the
    mock models when no provider but mock is (first-time setup).
    """
    slugs = enabled or first_time_models(catalog, configured_providers or [])
    default = DEFAULT_MODEL if DEFAULT_MODEL in slugs else pick_default(catalog, slugs)
    workspace = Workspace(id=new_id("ws"), name=name, default_model=default)
    session.add(workspace)
    await session.flush()
    session.add_all(
        WorkspaceModel(workspace_id=workspace.id, model=slug, enabled=True) for slug in slugs
    )
    await session.flush()
    return workspace


async def create_member(
    session: AsyncSession, workspace: Workspace, name: str, role: str, *, operator: bool = False
) -> Member:
    """A member of ``workspace``; ``operator``: with the instance-wide operator role too."""
    member = Member(
        id=new_id("mem"), workspace_id=workspace.id, name=name, role=role, operator=operator
    )
    session.add(member)
    await session.flush()
    return member


async def bootstrap(
    session: AsyncSession,
    catalog: Catalog,
    workspace_name: str,
    configured_providers: list[str] | None = None,
) -> str | None:
    """Create the first workspace and an admin key (of the instance's operator); the key's
    secret, or None if one exists."""
    existing = (await session.execute(select(Workspace.id).limit(1))).first()
    if existing is not None:
        return None
    workspace = await create_workspace(
        session, catalog, workspace_name, configured_providers=configured_providers
    )
    # Whoever starts the instance first runs it: its first admin is also its operator.
    admin = await create_member(session, workspace, "admin", "admin", operator=True)
    _, secret = await create_key(session, admin, "first admin key")
    return secret
