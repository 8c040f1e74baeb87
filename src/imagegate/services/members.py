"""Members and their API keys, as workspace admins manage them; every change is audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.errors import Conflict, NotFound
from imagegate.ids import new_id
from imagegate.services.keys import Principal, create_key
from imagegate.services.workspace import Change, lock_workspace, record
from imagegate.store.tables import ApiKey, Member, utcnow

ROLES = ("admin", "member")


async def get_member(session: AsyncSession, workspace_id: str, member_id: str) -> Member:
    member = await session.get(Member, member_id)
    if member is None or member.workspace_id != workspace_id:
        raise NotFound(
            f"No member {member_id!r} in this workspace.",
            code="member_not_found",
            param="member_id",
        )
    return member


async def list_members(session: AsyncSession, workspace_id: str) -> list[tuple[Member, int]]:
    """Members with the number of their active keys, oldest first."""
    active = (
        select(ApiKey.member_id, func.count().label("n"))
        .where(ApiKey.workspace_id == workspace_id, ApiKey.revoked_at.is_(None))
        .group_by(ApiKey.member_id)
        .subquery()
    )
    rows = await session.execute(
        select(Member, func.coalesce(active.c.n, 0))
        .outerjoin(active, active.c.member_id == Member.id)
        .where(Member.workspace_id == workspace_id)
        .order_by(Member.id)
    )
    return [(member, int(count)) for member, count in rows.all()]


def _member_view(member: Member) -> dict[str, Any]:
    return {"name": member.name, "role": member.role}


async def add_member(session: AsyncSession, actor: Principal, name: str, role: str) -> Member:
    await lock_workspace(session, actor.workspace_id)
    member = Member(id=new_id("mem"), workspace_id=actor.workspace_id, name=name, role=role)
    session.add(member)
    await session.flush()
    await record(
        session, actor, actor.workspace_id, "member.created", member.id, None, _member_view(member)
    )
    return member


async def set_member_role(
    session: AsyncSession, actor: Principal, member_id: str, role: str
) -> Change:
    """Change a member's role; the workspace's last admin stays an admin."""
    await lock_workspace(session, actor.workspace_id)
    member = await get_member(session, actor.workspace_id, member_id)
    before = _member_view(member)
    if member.role == "admin" and role != "admin":
        admins = await session.scalar(
            select(func.count())
            .select_from(Member)
            .where(Member.workspace_id == actor.workspace_id, Member.role == "admin")
        )
        if (admins or 0) <= 1:
            raise Conflict(
                f"{member.name!r} is the workspace's last admin; "
                "make another member an admin first.",
                code="last_admin",
                param="role",
            )
    member.role = role
    change = Change(before, _member_view(member))
    if change.changed:
        await record(
            session,
            actor,
            actor.workspace_id,
            "member.role_changed",
            member.id,
            before,
            change.after,
        )
    return change


async def add_key(
    session: AsyncSession, actor: Principal, member_id: str, name: str
) -> tuple[ApiKey, str]:
    """A new key for a member; its secret is returned once and stored only as a hash."""
    await lock_workspace(session, actor.workspace_id)
    member = await get_member(session, actor.workspace_id, member_id)
    key, secret = await create_key(session, member, name)
    after = {"name": key.name, "prefix": key.prefix, "member_id": member.id}
    await record(session, actor, actor.workspace_id, "key.created", key.id, None, after)
    return key, secret


async def list_keys(
    session: AsyncSession, workspace_id: str, member_id: str | None = None
) -> list[tuple[ApiKey, Member]]:
    query = (
        select(ApiKey, Member)
        .join(Member, Member.id == ApiKey.member_id)
        .where(ApiKey.workspace_id == workspace_id)
        .order_by(ApiKey.id)
    )
    if member_id is not None:
        query = query.where(ApiKey.member_id == member_id)
    return [(first, second) for first, second in (await session.execute(query)).all()]


async def revoke_key(session: AsyncSession, actor: Principal, key_id: str) -> tuple[ApiKey, Change]:
    """Revoke a key at once; the last working key of the workspace's admins cannot be revoked."""
    await lock_workspace(session, actor.workspace_id)
    key = await session.get(ApiKey, key_id)
    if key is None or key.workspace_id != actor.workspace_id:
        raise NotFound(
            f"No API key {key_id!r} in this workspace.", code="key_not_found", param="key_id"
        )
    before = {"revoked": key.revoked_at is not None}
    if key.revoked_at is None:
        admin_keys = await session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .join(Member, Member.id == ApiKey.member_id)
            .where(
                ApiKey.workspace_id == actor.workspace_id,
                ApiKey.revoked_at.is_(None),
                Member.role == "admin",
            )
        )
        owner = await session.get(Member, key.member_id)
        if owner is not None and owner.role == "admin" and (admin_keys or 0) <= 1:
            raise Conflict(
                "This is the last working admin key of the workspace; "
                "create another admin key first.",
                code="last_admin_key",
                param="key_id",
            )
        key.revoked_at = utcnow()
    change = Change(before, {"revoked": True})
    if change.changed:
        after = {"revoked": True, "prefix": key.prefix, "member_id": key.member_id}
        await record(session, actor, actor.workspace_id, "key.revoked", key.id, before, after)
    return key, change
