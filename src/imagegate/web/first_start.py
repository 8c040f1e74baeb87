"""One-time sign-in links from outside the console: at first start, and from the CLI."""

from __future__ import annotations

import sys

from sqlalchemy import select

from imagegate.errors import NotFound
from imagegate.gateway import Gateway
from imagegate.services import accounts
from imagegate.store.tables import Member, Workspace


async def invite_link(
    gateway: Gateway, member: str | None = None, *, audit: bool = True
) -> tuple[Member, str]:
    """A link for ``member`` (an id or a name) of the first workspace to set a password;
    its first admin when none is named."""
    async with gateway.db.session() as session:
        workspace = (
            await session.execute(select(Workspace).order_by(Workspace.created_at).limit(1))
        ).scalar_one()
        query = select(Member).where(Member.workspace_id == workspace.id).order_by(Member.id)
        if member is None:
            query = query.where(Member.role == "admin")
        else:
            query = query.where((Member.id == member) | (Member.name == member))
        found = (await session.execute(query.limit(1))).scalar_one_or_none()
        if found is None:
            raise NotFound(f"No member {member!r} in the workspace.", code="member_not_found")
        _, token = await accounts.create_invite(session, None, workspace.id, found.id, audit=audit)
    return found, f"{gateway.settings.base_url}/invite/{token}"


async def announce_first_admin_link(gateway: Gateway) -> None:
    """At first start: a one-time link for the first admin to set a console password."""
    _, link = await invite_link(gateway, audit=False)
    print(
        f"  The web console is at {gateway.settings.base_url}/ : sign in with this key\n"
        "  (Sign in with an API key), or set the admin's password with this one-time\n"
        f"  link, valid for {accounts.INVITE_TTL.days} days:\n\n"
        f"    {link}\n",
        file=sys.stderr,
        flush=True,
    )
