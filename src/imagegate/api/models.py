"""``/v1/models``: the catalog as the caller may use it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.api.deps import CurrentMember, GatewayDep, Session
from imagegate.catalog import ModelSpec
from imagegate.catalog.schema import json_schema
from imagegate.errors import NotFound
from imagegate.money import as_credits
from imagegate.services.generation import enabled_models
from imagegate.store.tables import Workspace

router = APIRouter(prefix="/v1", tags=["models"])

CREATED = 1_700_000_000  # catalog entries carry no creation time; a fixed one keeps lists stable


def allowed_params(model: ModelSpec) -> dict[str, Any]:
    allowed: dict[str, Any] = {
        "supported_sizes": model.sizes.supported_sizes(),
        "output_formats": model.output_formats,
    }
    if model.sizes.style == "aspect_ratio":
        allowed["aspect_ratios"] = list(model.sizes.options)
    if model.sizes.style == "preset":
        allowed["image_size_presets"] = list(model.sizes.options)
    if model.count_field is not None:
        spec = model.params[model.count_field]
        allowed["max_images"] = int(spec.maximum) if spec.maximum is not None else 1
    else:
        allowed["max_images"] = 1
    return allowed


def model_object(model: ModelSpec, enabled: bool, default: bool) -> dict[str, Any]:
    return {
        "id": model.slug,
        "object": "model",
        "created": CREATED,
        "owned_by": model.provider,
        "name": model.name,
        "description": model.description,
        "aliases": model.aliases,
        "modality": model.modality,
        "capabilities": model.actions + (["vector"] if model.vector else []),
        "status": model.status,
        "replacement": model.replacement,
        "region": model.region,
        "tier": model.tier,
        "premium": model.premium,
        "reference_images": model.reference_images,
        "stars": model.stars,
        "mode": model.mode,
        "enabled": enabled,
        "default": default,
        "allowedParams": allowed_params(model),
        "pricing": {"rule": model.price.rule, "credits_per_unit": as_credits(model.price.credits)},
    }


@router.get("/models")
async def list_models(
    member: CurrentMember,
    gateway: GatewayDep,
    session: Session,
    modality: str | None = Query(default=None, description="Only models of this modality (image)."),
    all: bool = Query(default=False, description="Admins: include models not enabled."),
) -> dict[str, Any]:
    enabled = await enabled_models(session, member.workspace_id)
    default = await _default_model(session, member.workspace_id)
    show_all = all and member.is_admin
    data = [
        model_object(model, model.slug in enabled, model.slug == default)
        for model in gateway.catalog
        if (modality is None or model.modality == modality) and (show_all or model.slug in enabled)
    ]
    return {"object": "list", "data": data}


@router.get("/models/{slug}")
async def get_model(
    slug: str, member: CurrentMember, gateway: GatewayDep, session: Session
) -> dict[str, Any]:
    model = gateway.catalog.resolve(slug)
    enabled = await enabled_models(session, member.workspace_id)
    if model is None or (model.slug not in enabled and not member.is_admin):
        raise NotFound(f"The model {slug!r} does not exist.", code="model_not_found", param="model")
    default = await _default_model(session, member.workspace_id)
    body = model_object(model, model.slug in enabled, model.slug == default)
    body["input_schema"] = json_schema(model)
    body["provenance"] = model.provenance
    return body


async def _default_model(session: AsyncSession, workspace_id: str) -> str | None:
    workspace = await session.get(Workspace, workspace_id)
    return workspace.default_model if workspace is not None else None
