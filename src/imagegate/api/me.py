"""``/v1/me``: the calling member, and the model they have selected in the image generator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from imagegate.api import schemas
from imagegate.api.common import json_object
from imagegate.api.deps import CurrentMember, GatewayDep
from imagegate.api.openapi import AUTHENTICATED, errors, json_body
from imagegate.api.schemas import ok
from imagegate.errors import InvalidParameter, NotFound
from imagegate.services import workspace
from imagegate.store.tables import Member

router = APIRouter(prefix="/v1/me", tags=["me"], responses=errors(*AUTHENTICATED))

_SELECTION = {
    "type": "object",
    "properties": {
        "model": {
            "type": ["string", "null"],
            "minLength": 1,
            "description": "A usable model's slug or alias; null goes back to the default.",
        }
    },
    "additionalProperties": False,
}


def _me(member: Member, state: workspace.Governance, usable: list[str]) -> dict[str, Any]:
    selected = member.selected_model
    effective = selected if selected in usable else state.default_model
    return {
        "id": member.id,
        "object": "member",
        "name": member.name,
        "role": member.role,
        "workspace_id": member.workspace_id,
        "selected_model": selected,
        "model": effective,
        "default_model": state.default_model,
        "image_generation_enabled": state.image_generation_enabled,
    }


@router.get("", response_model=None, responses=ok(schemas.Me))
async def get_me(member: CurrentMember, gateway: GatewayDep) -> dict[str, Any]:
    """Who is calling, and which model a generation that names none would use."""
    async with gateway.db.read_session() as session:
        row = await session.get(Member, member.member_id)
        state = await workspace.governance(session, member.workspace_id)
    assert row is not None
    return _me(row, state, workspace.usable_models(gateway.catalog, state))


@router.put(
    "/selected-model",
    response_model=None,
    responses={**ok(schemas.Me), **errors(403, 404)},
    openapi_extra=json_body(_SELECTION),
)
async def select_model(
    request: Request, member: CurrentMember, gateway: GatewayDep
) -> dict[str, Any]:
    """Remember the member's choice (``{"model": slug}``; null goes back to the default)."""
    body = await json_object(request)
    unknown = sorted(set(body) - {"model"})
    if unknown:
        raise InvalidParameter(f"Unknown field {unknown[0]!r}. Allowed: model.", param=unknown[0])
    name = body.get("model")
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidParameter(
            "Invalid value for 'model': expected a model slug or null.", param="model"
        )
    async with gateway.db.session() as session:
        state = await workspace.governance(session, member.workspace_id)
        slug = None
        if name is not None:
            model = gateway.catalog.resolve(name)
            if model is None:
                raise NotFound(
                    f"The model {name!r} does not exist.", code="model_not_found", param="model"
                )
            workspace.ensure_usable(state, model)
            slug = model.slug
        row = await session.get(Member, member.member_id)
        assert row is not None
        row.selected_model = slug
    return _me(row, state, workspace.usable_models(gateway.catalog, state))
