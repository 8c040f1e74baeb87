"""Who may do what, beyond a workspace's own admin/member split (docs/admin.md, "Roles").

Inside a workspace a member sees and acts on its own jobs and files and an admin on all
of them (:attr:`Principal.only_member`). Minting credits is a matter for the instance:
an operator (an instance-wide role, apart from workspace admins) grants credits to any
workspace; a workspace admin grants to its own workspace only as far as the setting
``admin_credit_grants`` allows, so that on an instance hosting several workspaces no
workspace can pay itself.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.errors import NotFound, PermissionDenied
from imagegate.services.keys import Principal
from imagegate.store.tables import Workspace

AdminCreditGrants = Literal["single_workspace", "always", "never"]


def _operator_required(message: str) -> PermissionDenied:
    return PermissionDenied(message, code="operator_required")


async def credit_grant_workspace(
    session: AsyncSession,
    principal: Principal,
    workspace_id: str | None,
    admin_grants: AdminCreditGrants,
) -> str:
    """The workspace ``principal`` may grant credits to (``workspace_id``, default its
    own); 403 when it may not, 404 when an operator names no workspace of the instance."""
    target = workspace_id or principal.workspace_id
    if principal.operator:
        found = await session.scalar(select(Workspace.id).where(Workspace.id == target))
        if found is None:
            raise NotFound(
                f"No workspace {target!r} on this instance.",
                code="workspace_not_found",
                param="workspace_id",
            )
        return target
    if not principal.is_admin:
        raise PermissionDenied("This endpoint is for workspace admins.", code="admin_required")
    if target != principal.workspace_id:
        raise _operator_required("Only an operator grants credits to another workspace.")
    if admin_grants == "always":
        return target
    if admin_grants == "single_workspace":
        workspaces = await session.scalar(select(func.count()).select_from(Workspace))
        if workspaces == 1:
            return target
        raise _operator_required(
            "This instance hosts several workspaces: credits are granted by an operator "
            "(IMAGEGATE_ADMIN_CREDIT_GRANTS=single_workspace)."
        )
    raise _operator_required(
        "Credits are granted by an operator on this instance (IMAGEGATE_ADMIN_CREDIT_GRANTS=never)."
    )
